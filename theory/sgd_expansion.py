r"""SGD's iterates from a depth-2 gradient flow: the first two terms of its global error expansion.

**The map and its flow.** For a depth-2 net with whitened inputs, in the reduced coordinates of
:func:`theory.state.exact_state`, stack ``Q = [B₁ᵀ; B₂]`` ((C+R) × N_h); ``P = QQᵀ`` has the mode matrix
``M̄ = B₂B₁`` as its R × C block. One SGD step is exactly the Euler step of the flow ``dQ/dh = F(Q)``::

    Q_{k+1} = Q_k + η F(Q_k),      F(Q) = Γ(QQᵀ) Q,      Γ(P) = [[0, Eᵀ], [E, 0]],  E = S̄ − P_RC

(h = t/τ, τ = 1/η epochs). Γ is affine in P: ``Γ(P + X) = Γ(P) − Γ₁(X)``, ``Γ₁(X) = [[0, X_RCᵀ], [X_RC, 0]]``, so
every derivative is a matrix polynomial (S(X, Y) = XYᵀ + YXᵀ)::

    F'[X] = ΓX − Γ₁(S(Q, X)) Q,     F''[X, Y] = −Γ₁(S(X, Y)) Q − Γ₁(S(Q, X)) Y − Γ₁(S(Q, Y)) X.

**The modified equation.** The map is the time-η flow of ``dQ/dh = F + η f₁ + η² f₂ + …`` (Hairer, Lubich &
Wanner, *Geometric Numerical Integration*, §IX.1), matching powers of η in the flow's Taylor series
``Q + ηf + η²/2 f'f + η³/6 (f''(f, f) + f'f'f)`` against the Euler step::

    f₁ = −½ F'[F],      f₂ = −½ F'[f₁] + (F''[F, F] + F'[F'[F]]) / 12.

**The expansion** (Hairer, Nørsett & Wanner, *Solving ODEs I*, Thm II.8.1): ``Q_k = Q(kη) + η δ(kη) + η² ε(kη)
+ O(η³)`` along the flow's own Q(h), from δ(0) = ε(0) = 0::

    dδ/dh = F'[δ] + f₁(Q),
    dε/dh = F'[ε] + ½ F''[δ, δ] + f₁'[δ] + f₂(Q),      f₁'[X] = −½ (F''[X, F] + F'[F'[X]])

integrated with Q itself (DOP853). Hence ``P_k = P(kη) + η (Qδᵀ + δQᵀ) + η² (Qεᵀ + εQᵀ + δδᵀ) + O(η³)``:
``order=1`` returns the η term's coefficient (error O(η²)), ``order=2`` both (error O(η³)). **Why Q, not P:** the
iterates have rank ≤ N_h; an expansion in P-space lets its corrections leave that set, and with a bottleneck
(N_h below the number of modes) the flow's fixed point repels P-perturbations along the unlearned modes (Γ keeps
their residual: rates ≈ 2s) — measured on a 50-item table with N_h = 20, the P-space correction was exact to
1e-5 of s₁ for 350 epochs and then grew to 0.47. In Q-space every perturbation is a weight perturbation, and the
fixed point attracts them (up to the hidden rotations, which leave P unchanged). Both vanish at a stable fixed
point (F = f₁ = f₂ = 0), so t = ∞ is the flow's fixed point. Measured on the tutorial's λ-balanced run (γ 3, λ 7.08),
max |M̄ − M̄_SGD| / s₁: flow 0.31·ηs₁; first order 0.145·(ηs₁)² (η s₁ 1e-3 … 0.39); second order 7.7e-3 at
lr = 100 (η s₁ 0.39), 9.4e-4, 1.2e-4, 1.5e-5 at lr 50, 25, 12.5 (order 3).

**Domain:** an expansion in η δ against s. A long escape from a small init at a large η s makes δ grow secularly
(the escape's timing error) and the expansion fails; so can a lazy init's fast directions over a long run.
:data:`EXPANSION_MAX_GAP` bounds the first-order term of M̄: the integration stops there and refuses.

Glossary: η per-epoch rate (η = 2·lr/(P·N_out)); h = t/τ; S̄ (R, C) the reduced target; C, R the reduced input and
output dimensions; Q (C+R, N_h) the reduced weight stack, P = QQᵀ; δ, ε its first- and second-order corrections
(units of Q per unit η and per unit η²); f₁, f₂ the modified equation's terms.
"""
from __future__ import annotations

import numpy as np

from .modified_equation import derivatives

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


class _Overflow(Exception):
    """Raised inside the integration when a derivative is not finite (carries the τ-time reached)."""


def _rhs(Q: np.ndarray, target: np.ndarray, delta: np.ndarray, eps: np.ndarray | None) -> list[np.ndarray]:
    """dQ/dh and dδ/dh, then dε/dh when ``eps`` is given: the module docstring's equations (F', F'' from
    :func:`theory.modified_equation.derivatives`, the one home of the map's derivatives)."""
    G, fp, fpp, _ = derivatives(Q, target)
    F = G @ Q
    FF = fp(F)
    f1 = -0.5 * FF
    out = [F, fp(delta) + f1]
    if eps is not None:
        f2 = -0.5 * fp(f1) + (fpp(F, F) + fp(FF)) / 12.0
        f1p = -0.5 * (fpp(delta, F) + fp(fp(delta)))
        out.append(fp(eps) + 0.5 * fpp(delta, delta) + f1p + f2)
    return out


def _sym(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """ABᵀ + BAᵀ over the last two axes."""
    X = A @ np.swapaxes(B, -1, -2)
    return X + np.swapaxes(X, -1, -2)


def sgd_correction(Q0: np.ndarray, target: np.ndarray, eta: float, h: np.ndarray, s_max: float,
                   order: int = 1) -> np.ndarray:
    r"""SGD's P at epoch t = h·τ is ``P(h) + η c(h) + O(η^{order+1})``; returns c (len(h), C+R, C+R):
    ``Qδᵀ + δQᵀ`` for ``order=1``, plus ``η (Qεᵀ + εQᵀ + δδᵀ)`` for ``order=2`` (module docstring).

    ``Q0`` the reduced weight stack [B₁ᵀ; B₂] at t = 0 ((C+R) × N_h); ``target`` S̄ (R, C); ``eta`` η; ``h`` finite
    τ-times ≥ 0 (any order); ``s_max`` the largest singular value of Σʸˣ. Whitened inputs, depth 2. Raises
    ``ValueError`` as soon as the first-order term of M̄, η·|(Qδᵀ + δQᵀ)_RC|, exceeds :data:`EXPANSION_MAX_GAP`·s_max
    (outside the expansion's domain; the integration stops there, so a correction that grows without bound costs no
    more than reaching the bound), or past :data:`EXPANSION_MAX_CALLS`.
    """
    from scipy.integrate import solve_ivp  # lazy: scipy is imported only where a theory needs it

    if isinstance(order, bool) or order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order=!r}")
    h = np.asarray(h, dtype=np.float64)
    C = target.shape[1]
    n, k = Q0.shape
    m = n * k
    scale = max(float(np.abs(target).max(initial=0.0)), np.finfo(float).tiny)

    calls = [0]

    def rhs(hh: float, y: np.ndarray) -> np.ndarray:
        calls[0] += 1
        if calls[0] > EXPANSION_MAX_CALLS:
            raise _TooStiff(hh)
        with np.errstate(over="ignore", invalid="ignore"):  # a trial step past a fast transient: refused below
            parts = _rhs(y[:m].reshape(n, k), target, y[m:2 * m].reshape(n, k),
                         y[2 * m:].reshape(n, k) if order == 2 else None)
            out = np.concatenate([p.ravel() for p in parts])
        if not np.isfinite(out).all():
            raise _Overflow(hh)
        return out

    limit = EXPANSION_MAX_GAP * s_max / eta

    def beyond(hh: float, y: np.ndarray) -> float:  # crosses 0 when the term η|δ_M̄| reaches the domain's bound
        Q, d = y[:m].reshape(n, k), y[m:2 * m].reshape(n, k)
        return limit - float(np.abs(Q[C:] @ d[:C].T + d[C:] @ Q[:C].T).max(initial=0.0))

    beyond.terminal = True  # type: ignore[attr-defined]
    out = np.zeros((h.size, n, n))
    grid = np.unique(h[h > 0])
    if grid.size:
        # Q's entries grow from the init's size to O(√s): the absolute tolerance is set by the smaller (a small init's
        # escape needs Q resolved relative to itself: its timing error is the correction's); δ's and ε's carry η⁻¹
        # and η⁻² per unit of Q, so that ηδ and η²ε are resolved as Q is
        qscale = min(np.sqrt(scale), max(float(np.abs(Q0).max(initial=0.0)), np.finfo(float).tiny))
        atol = np.concatenate([np.full(m, EXPANSION_RTOL * qscale * max(eta, np.finfo(float).tiny) ** -i)
                               for i in range(order + 1)])
        y0 = np.concatenate([Q0.ravel(), np.zeros(order * m)])
        try:
            sol = solve_ivp(rhs, (0.0, float(grid[-1])), y0, t_eval=grid, method="DOP853", rtol=EXPANSION_RTOL,
                            atol=atol, events=beyond)
        except _Overflow as stop:
            raise ValueError(f"SGD's correction (order {order}) left the finite numbers at epoch "
                             f"{stop.args[0] / eta:.6g}: the flow has a transient too fast for this expansion there "
                             "(e.g. a large init's own output decaying within a few steps); use method='continuous' or "
                             "theory.predictor(..., theory='exact')") from None
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
        Q, d = vals[:, :m].reshape(-1, n, k), vals[:, m:2 * m].reshape(-1, n, k)
        c = _sym(Q, d)
        if order == 2:
            e = vals[:, 2 * m:].reshape(-1, n, k)
            c = c + eta * (_sym(Q, e) + d @ np.swapaxes(d, -1, -2))
        out[h > 0] = c[np.searchsorted(grid, h[h > 0])]
    return out
