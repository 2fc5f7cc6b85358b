r"""SGD's iterates from a depth-2 gradient-flow solution: the first two terms of its global error expansion.

**The map and its flow.** For a depth-2 net with whitened inputs, in the reduced coordinates of
:func:`theory.state.exact_state`, stack ``Q = [B₁ᵀ; B₂]`` and ``P = QQᵀ`` (``(C+R) × (C+R)``; its R × C block is the
mode matrix ``M̄ = B₂B₁``). One SGD step is exactly ``Q ← (I + ηΓ)Q`` with ``Γ = [[0, Eᵀ], [E, 0]]``,
``E = S̄ − M̄``, so on P::

    P_{k+1} = Φ_η(P_k) = P_k + η g(P_k) + η² q(P_k),      g(P) = ΓP + PΓ,   q(P) = ΓPΓ

(exactly: no higher powers of η), and gradient flow is ``dP/dh = g(P)`` (h = t/τ, τ = 1/η epochs). Γ is affine in
P: ``Γ(P + X) = Γ(P) − Γ₁(X)`` with ``Γ₁(X) = [[0, X_RCᵀ], [X_RC, 0]]``, so every derivative is a matrix
polynomial::

    g'[X] = ΓX + XΓ − Γ₁(X)P − PΓ₁(X),     g''[X, Y] = −Γ₁(X)Y − YΓ₁(X) − Γ₁(Y)X − XΓ₁(Y),
    q'[X] = ΓXΓ − Γ₁(X)PΓ − ΓPΓ₁(X).

**The modified equation.** The map is the time-η flow of ``dP/dh = g + η f₁ + η² f₂ + …`` (Hairer, Lubich &
Wanner, *Geometric Numerical Integration*, §IX.1), matching powers of η in the flow's Taylor series
``P + ηf + η²/2 f'f + η³/6 (f''(f, f) + f'f'f)`` against Φ_η::

    f₁ = q − ½ g'[g],      f₂ = −½ g'[f₁] − ½ q'[g] + (g''[g, g] + g'[g'[g]]) / 12.

**The expansion** (Hairer, Nørsett & Wanner, *Solving ODEs I*, Thm II.8.1): ``P_k = P(kη) + η δ(kη) + η² ε(kη)
+ O(η³)``, with the flow's own P(h) (a closed form) and, from δ(0) = ε(0) = 0::

    dδ/dh = g'[δ] + f₁(P),
    dε/dh = g'[ε] + ½ g''[δ, δ] + f₁'[δ] + f₂(P),      f₁'[X] = q'[X] − ½ (g''[X, g] + g'[g'[X]])

two linear ODEs along a known path, integrated together by DOP853. ``order=1`` returns δ (error O(η²)),
``order=2`` returns δ + ηε (error O(η³)). Both vanish at a stable fixed point (E = 0 there: g = f₁ = f₂ = 0), so
t = ∞ is the flow's fixed point. Measured on the tutorial's λ-balanced run (γ 3, λ 7.08), max |M̄ − M̄_SGD| / s₁:
flow 0.31·ηs₁; first order 0.145·(ηs₁)² (η s₁ 1e-3 … 0.39); second order 7.7e-3 at lr = 100 (η s₁ 0.39), 9.4e-4,
1.2e-4, 1.5e-5 at lr 50, 25, 12.5 (order 3).

**Domain:** an expansion in η δ against s. A long escape from a small init at a large η s makes δ grow secularly
(the escape's timing error) and the expansion fails; so can a lazy init's fast directions over a long run.
:data:`EXPANSION_MAX_GAP` bounds the first-order term: the integration stops there and refuses.

Glossary: η per-epoch rate (η = 2·lr/(P·N_out)); h = t/τ; S̄ (R, C) the reduced target; C, R the reduced input and
output dimensions; P (C+R, C+R) the reduced QQᵀ; δ, ε its first- and second-order corrections (units of P per unit
η and per unit η²); f₁, f₂ the modified equation's terms.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["sgd_correction", "EXPANSION_RTOL", "EXPANSION_MAX_GAP", "EXPANSION_MAX_CALLS", "ORDERS"]

# Largest first-order term η·max|δ_M̄| (in units of s_max) a prediction is given for. The next term of the expansion,
# measured on the tutorial's λ-balanced inits (γ 1e-6 … 3, η s₁ 0.01 … 0.39), is (0.4–1.5) × that term² / s_max,
# so up to 0.5 the corrected form stays below the flow's own gap; beyond it the expansion fails (1.08 of s₁ against
# the flow's 0.89 at η s₁ = 0.39 from γ = 1e-6, where the term is 1.6): the escape's timing error grows secularly.
EXPANSION_MAX_GAP = 0.5
# Most evaluations of the flow the integration may take (~0.25 ms each on the tutorial: ≲ 30 s). The ODE is
# stiff where a lazy init's fast directions (rates ≈ 2·max f) meet a long run: its cost grows as max f × horizon.
EXPANSION_MAX_CALLS = 120_000
# Relative tolerance of the integration: far below the O(η²) term the first order leaves (≥ 1e-7 of s₁ at any η
# worth correcting), far above DOP853's rounding floor.
EXPANSION_RTOL = 1e-10
# The orders of the expansion this module integrates.
ORDERS = (1, 2)


class _TooStiff(Exception):
    """Raised inside the integration when it exceeds EXPANSION_MAX_CALLS (carries the τ-time reached)."""


def _gamma(E: np.ndarray, C: int) -> np.ndarray:
    n = C + E.shape[0]
    G = np.zeros((n, n))
    G[:C, C:] = E.T
    G[C:, :C] = E
    return G


def _rhs(P: np.ndarray, target: np.ndarray, delta: np.ndarray, eps: np.ndarray | None) -> list[np.ndarray]:
    """dδ/dh (and dε/dh when ``eps`` is given) at the flow's P (module docstring's equations)."""
    C = target.shape[1]
    G = _gamma(target - P[C:, :C], C)

    def g1(X: np.ndarray) -> np.ndarray:  # Γ₁(X): Γ(P + X) = Γ(P) − Γ₁(X)
        return _gamma(X[C:, :C], C)

    def gp(X: np.ndarray) -> np.ndarray:  # g'[X]
        d = g1(X)
        return G @ X + X @ G - d @ P - P @ d

    def gpp(X: np.ndarray, Y: np.ndarray) -> np.ndarray:  # g''[X, Y]
        a, b = g1(X), g1(Y)
        return -(a @ Y + Y @ a + b @ X + X @ b)

    def qp(X: np.ndarray) -> np.ndarray:  # q'[X]
        d = g1(X)
        GP = G @ P
        return G @ X @ G - d @ GP.T - GP @ d  # PΓ = (ΓP)ᵀ: P and Γ are symmetric

    g = G @ P
    g = g + g.T
    gg = gp(g)
    f1 = G @ P @ G - 0.5 * gg
    out = [gp(delta) + f1]
    if eps is not None:
        f2 = -0.5 * gp(f1) - 0.5 * qp(g) + (gpp(g, g) + gp(gg)) / 12.0
        f1p = qp(delta) - 0.5 * (gpp(delta, g) + gp(gp(delta)))
        out.append(gp(eps) + 0.5 * gpp(delta, delta) + f1p + f2)
    return out


def sgd_correction(P_at: Callable[[float], np.ndarray], target: np.ndarray, eta: float, h: np.ndarray,
                   s_max: float, order: int = 1) -> np.ndarray:
    r"""SGD's P at epoch t = h·τ is ``P(h) + η c(h) + O(η^{order+1})``; returns c (len(h), C+R, C+R): δ for
    ``order=1``, δ + ηε for ``order=2`` (module docstring).

    ``P_at(h)`` the flow's P at one τ-time h ≥ 0; ``target`` S̄ (R, C); ``eta`` η; ``h`` finite τ-times ≥ 0 (any
    order); ``s_max`` the largest singular value of Σʸˣ. The flow must be the one of these reduced coordinates
    (whitened inputs, depth 2). Raises ``ValueError`` as soon as the first-order term η·|δ_M̄| exceeds
    :data:`EXPANSION_MAX_GAP`·s_max (outside the expansion's domain; the integration stops there, so a correction
    that grows without bound costs no more than reaching the bound), or past :data:`EXPANSION_MAX_CALLS`.
    """
    from scipy.integrate import solve_ivp  # lazy: scipy is imported only where a theory needs it

    if isinstance(order, bool) or order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order=!r}")
    h = np.asarray(h, dtype=np.float64)
    R, C = target.shape
    n = C + R
    m = n * n
    scale = max(float(np.abs(target).max(initial=0.0)), np.finfo(float).tiny)

    calls = [0]

    def rhs(hh: float, y: np.ndarray) -> np.ndarray:
        calls[0] += 1
        if calls[0] > EXPANSION_MAX_CALLS:
            raise _TooStiff(hh)
        parts = _rhs(P_at(hh), target, y[:m].reshape(n, n), y[m:].reshape(n, n) if order == 2 else None)
        return np.concatenate([p.ravel() for p in parts])

    limit = EXPANSION_MAX_GAP * s_max / eta

    def beyond(hh: float, y: np.ndarray) -> float:  # crosses 0 when the term η|δ_M̄| reaches the domain's bound
        return limit - float(np.abs(y[:m].reshape(n, n)[C:, :C]).max(initial=0.0))

    beyond.terminal = True  # type: ignore[attr-defined]
    out = np.zeros((h.size, n, n))
    grid = np.unique(h[h > 0])
    if grid.size:
        # ε is η⁻¹ smaller in P's units than δ: its absolute tolerance is scaled so that η²ε is resolved as ηδ is
        atol = np.full(order * m, EXPANSION_RTOL * scale)
        atol[m:] /= max(eta, np.finfo(float).tiny)
        try:
            sol = solve_ivp(rhs, (0.0, float(grid[-1])), np.zeros(order * m), t_eval=grid, method="DOP853",
                            rtol=EXPANSION_RTOL, atol=atol, events=beyond)
        except _TooStiff as stop:
            raise ValueError(f"SGD's correction (order {order}) needs more than EXPANSION_MAX_CALLS = "
                             f"{EXPANSION_MAX_CALLS} flow evaluations to reach epoch {grid[-1] / eta:.6g} (stopped "
                             f"at epoch {stop.args[0] / eta:.6g}): its ODE is stiff there (a lazy init's fast "
                             "directions over a long run); ask for fewer epochs, or use method='continuous' or "
                             "theory.predictor(..., theory='exact')") from None
        if sol.status == 1:
            raise ValueError(f"SGD's first-order correction reaches EXPANSION_MAX_GAP = {EXPANSION_MAX_GAP} of "
                             f"s_max by epoch {sol.t_events[0][0] / eta:.6g} (η = {eta:.3g}/epoch): outside the "
                             "expansion's domain (a long escape at a large η·s, or a lazy init's fast directions "
                             "over a long run); lower lr, or use method='finite_lr' (exact escape) or "
                             "theory.predictor(..., theory='exact')")
        if not sol.success:
            raise ValueError(f"SGD's correction (order {order}) could not be integrated to h = {grid[-1]:.6g}: "
                             f"{sol.message}")
        vals = sol.y.T
        c = vals[:, :m] if order == 1 else vals[:, :m] + eta * vals[:, m:]
        out[h > 0] = c.reshape(-1, n, n)[np.searchsorted(grid, h[h > 0])]
    return 0.5 * (out + np.swapaxes(out, -1, -2))
