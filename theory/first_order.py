r"""First-order finite-learning-rate correction of a depth-2 gradient-flow solution: SGD's iterates from the flow's.

**The map and its flow.** For a depth-2 net with whitened inputs, in the reduced coordinates of
:func:`theory.state.exact_state`, stack ``Q = [B₁ᵀ; B₂]`` and ``P = QQᵀ`` (``(C+R) × (C+R)``; its R × C block is the
mode matrix ``M̄ = B₂B₁``). One SGD step is exactly ``Q ← (I + ηΓ)Q`` with ``Γ = [[0, Eᵀ], [E, 0]]``,
``E = S̄ − M̄``, so on P::

    P_{k+1} = (I + ηΓ) P_k (I + ηΓ) = P_k + η g(P_k) + η² Γ P_k Γ,      g(P) = ΓP + PΓ

and gradient flow is ``dP/dh = g(P)`` (h = t/τ, τ = 1/η epochs). The map is the flow's Euler-type step with local
error ``η² d(P)``, ``d = ΓPΓ − ½ Dg(P)[g(P)]`` (the flow's Taylor term h²/2 · P̈ subtracted from the map's η² term).

**The correction** (the first term of the global error expansion of a one-step method; Hairer, Nørsett & Wanner,
*Solving ODEs I*, Thm II.8.1): ``P_k = P(kη) + η δ(kη) + O(η²)`` with

    dδ/dh = Dg(P(h))[δ] + d(P(h)),      δ(0) = 0,
    Dg(P)[V] = Γ(−V_{RC}) P + P Γ(−V_{RC}) + ΓV + VΓ

along the flow's own P(h) (here a closed form, so δ is one linear ODE along a known path, integrated by DOP853).
**Domain:** a first-order term η δ small against s. A long escape from a small init at a large η s makes it grow
secularly (the escape's timing error) and the expansion fails; so can a lazy init's fast directions over a long
run. :data:`FIRST_ORDER_MAX_GAP` bounds it: the integration stops there and refuses.
δ → 0 at a stable fixed point (E = 0 there: g = d = 0), so t = ∞ is the flow's fixed point. The corrected
``P(h) + η δ(h)`` is accurate to O(η²) (measured on the tutorial's λ-balanced run, γ 3, λ 7: 0.145·(η s₁)² of s₁
for η s₁ from 1e-3 to 0.39, against 0.31·η s₁ for the flow alone; :mod:`theory.balanced`, method 'first_order').

Glossary: η per-epoch rate (η = 2·lr/(P·N_out)); h = t/τ; S̄ (R, C) the reduced target; C, R the reduced input and
output dimensions; P (C+R, C+R) the reduced QQᵀ; δ its first-order correction (units of P per unit η).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["first_order_correction", "FIRST_ORDER_RTOL", "FIRST_ORDER_MAX_GAP", "FIRST_ORDER_MAX_CALLS"]

# Largest first-order term η·max|δ_M̄| (in units of s_max) a prediction is given for. The next term of the expansion,
# measured on the tutorial's λ-balanced inits (γ 1e-6 … 3, η s₁ 0.01 … 0.39), is (0.4–1.5) × that term² / s_max,
# so up to 0.5 the corrected form stays below the flow's own gap; beyond it the expansion fails (1.08 of s₁ against
# the flow's 0.89 at η s₁ = 0.39 from γ = 1e-6, where the term is 1.6): the escape's timing error grows secularly.
FIRST_ORDER_MAX_GAP = 0.5
# Most evaluations of the flow the δ integration may take (~0.25 ms each on the tutorial: ≲ 30 s). The ODE is
# stiff where a lazy init's fast directions (rates ≈ 2·max f) meet a long run: its cost grows as max f × horizon.
FIRST_ORDER_MAX_CALLS = 120_000
# Relative tolerance of the δ integration: far below the O(η²) term the correction leaves (≥ 1e-7 of s₁ at any η
# worth correcting), far above DOP853's rounding floor.
FIRST_ORDER_RTOL = 1e-10


class _TooStiff(Exception):
    """Raised inside the integration when it exceeds FIRST_ORDER_MAX_CALLS (carries the τ-time reached)."""


def _gamma(E: np.ndarray, C: int) -> np.ndarray:
    n = C + E.shape[0]
    G = np.zeros((n, n))
    G[:C, C:] = E.T
    G[C:, :C] = E
    return G


def first_order_correction(P_at: Callable[[float], np.ndarray], target: np.ndarray, eta: float,
                           h: np.ndarray, s_max: float) -> np.ndarray:
    r"""δ(h) (len(h), C+R, C+R): SGD's P at epoch t = h·τ is ``P(h) + η δ(h) + O(η²)`` (module docstring).

    ``P_at(h)`` the flow's P at one τ-time h ≥ 0; ``target`` S̄ (R, C); ``eta`` η; ``h`` finite τ-times ≥ 0 (any
    order); ``s_max`` the largest singular value of Σʸˣ. The flow must be the one of these reduced coordinates
    (whitened inputs, depth 2). Raises ``ValueError`` as soon as the first-order term η·|δ_M̄| exceeds
    :data:`FIRST_ORDER_MAX_GAP`·s_max (outside the expansion's domain; the integration stops there, so a
    correction that grows without bound costs no more than reaching the bound).
    """
    from scipy.integrate import solve_ivp  # lazy: scipy is imported only where a theory needs it

    h = np.asarray(h, dtype=np.float64)
    R, C = target.shape
    n = C + R
    scale = max(float(np.abs(target).max(initial=0.0)), np.finfo(float).tiny)

    calls = [0]

    def rhs(hh: float, y: np.ndarray) -> np.ndarray:
        calls[0] += 1
        if calls[0] > FIRST_ORDER_MAX_CALLS:
            raise _TooStiff(hh)
        P = P_at(hh)
        G = _gamma(target - P[C:, :C], C)

        def Dg(V: np.ndarray) -> np.ndarray:
            dG = _gamma(-V[C:, :C], C)
            return dG @ P + P @ dG + G @ V + V @ G

        delta = y.reshape(n, n)
        return (Dg(delta) + G @ P @ G - 0.5 * Dg(G @ P + P @ G)).ravel()

    limit = FIRST_ORDER_MAX_GAP * s_max / eta

    def beyond(hh: float, y: np.ndarray) -> float:  # crosses 0 when the term η|δ_M̄| reaches the domain's bound
        return limit - float(np.abs(y.reshape(n, n)[C:, :C]).max(initial=0.0))

    beyond.terminal = True  # type: ignore[attr-defined]
    out = np.zeros((h.size, n, n))
    grid = np.unique(h[h > 0])
    if grid.size:
        try:
            sol = solve_ivp(rhs, (0.0, float(grid[-1])), np.zeros(n * n), t_eval=grid, method="DOP853",
                            rtol=FIRST_ORDER_RTOL, atol=FIRST_ORDER_RTOL * scale, events=beyond)
        except _TooStiff as stop:
            raise ValueError(f"the first-order correction needs more than FIRST_ORDER_MAX_CALLS = "
                             f"{FIRST_ORDER_MAX_CALLS} flow evaluations to reach epoch {grid[-1] / eta:.6g} (stopped "
                             f"at epoch {stop.args[0] / eta:.6g}): its ODE is stiff there (a lazy init's fast "
                             "directions over a long run); ask for fewer epochs, or use method='continuous' or "
                             "theory.predictor(..., theory='exact')") from None
        if sol.status == 1:
            raise ValueError(f"the first-order correction reaches FIRST_ORDER_MAX_GAP = {FIRST_ORDER_MAX_GAP} of "
                             f"s_max by epoch {sol.t_events[0][0] / eta:.6g} (η = {eta:.3g}/epoch): outside the "
                             "expansion's domain (a long escape at a large η·s, or a lazy init's fast directions "
                             "over a long run); lower lr, or use method='finite_lr' (exact escape) or "
                             "theory.predictor(..., theory='exact')")
        if not sol.success:
            raise ValueError(f"the first-order correction could not be integrated to h = {grid[-1]:.6g}: "
                             f"{sol.message}")
        vals = sol.y.T.reshape(-1, n, n)
        out[h > 0] = vals[np.searchsorted(grid, h[h > 0])]
    return 0.5 * (out + np.swapaxes(out, -1, -2))
