r"""SGD's modified equation at depth 2: the flow whose time-η map is the SGD step, to O(η⁴), integrated.

**The map.** For a depth-2 net with whitened inputs, in the reduced coordinates of :func:`theory.state.exact_state`,
stack ``Q = [B₁ᵀ; B₂]`` ((C+R) × N_h); ``P = QQᵀ`` has the mode matrix ``M̄ = B₂B₁`` as its R × C block. One SGD step
is exactly the Euler step of the gradient flow ``dQ/dh = F(Q)`` (h = t/τ, τ = 1/η epochs)::

    Q_{k+1} = Q_k + η F(Q_k),      F(Q) = Γ(QQᵀ) Q,      Γ(P) = [[0, Eᵀ], [E, 0]],  E = S̄ − P_RC.

Γ is affine in P: ``Γ(P + X) = Γ(P) − Γ₁(X)``, ``Γ₁(X) = [[0, X_RCᵀ], [X_RC, 0]]``, so F is a cubic polynomial and
every derivative is a matrix polynomial (S(X, Y) = XYᵀ + YXᵀ)::

    F'[X] = ΓX − Γ₁(S(Q, X)) Q,     F''[X, Y] = −Γ₁(S(X, Y)) Q − Γ₁(S(Q, X)) Y − Γ₁(S(Q, Y)) X,
    F'''[X, Y, Z] = −Γ₁(S(X, Y)) Z − Γ₁(S(X, Z)) Y − Γ₁(S(Y, Z)) X      (constant: F'''' = 0).

**The modified equation** (backward error analysis; Hairer, Lubich & Wanner, *Geometric Numerical Integration*,
§IX.1; for gradient descent to first order: Barrett & Dherin, "Implicit gradient regularization", ICLR 2021). The
Euler step is the time-η flow of ``dQ/dh = F + η f₁ + η² f₂ + η³ f₃ + …``, found by matching powers of η in the
Taylor series of that flow, ``Q + ηg + η²/2 g'g + η³/6 (g''(g, g) + g'g'g) + η⁴/24 (g'''(g, g, g) + 3g''(g'g, g) +
g'g''(g, g) + g'g'g'g)``, against ``Q + ηF``::

    f₁ = −½ F'F,
    f₂ = −½ F'f₁ + (F''(F, F) + F'F'F) / 12,
    f₃ = −½ (F'f₂ + f₁'f₁ + f₂'F) − ⅙ (f₁''(F, F) + 2F''(f₁, F) + f₁'F'F + F'f₁'F + F'F'f₁)
         − (F'''(F, F, F) + 3F''(F'F, F) + F'F''(F, F) + F'F'F'F) / 24,

with ``f₁'X = −½(F''(X, F) + F'F'X)``, ``f₁''(X, Y) = −½(F'''(X, Y, F) + F''(X, F'Y) + F''(Y, F'X) + F'F''(X, Y))``
and ``f₂'X = −½(F''(X, f₁) + F'f₁'X) + (F'''(F, F, X) + 2F''(F'X, F) + F''(X, F'F) + F'F''(X, F) + F'F'F'X)/12``.
F′ is linear and F″ symmetric and bilinear, so these collapse (F‴ cancels from f₃) to what is evaluated::

    f₂ = ⅓ F'F'F + F''(F, F)/12,      f₃ = −¼ F'F'F'F − (F''(F'F, F) + F'F''(F, F))/12

(for F(q) = λq the series of ln(1 + ηλ)/η = λ − ηλ²/2 + η²λ³/3 − η³λ⁴/4 + … has the same coefficients).
Truncated after f_N, the time-η flow differs from the SGD step by O(η^{N+2}) (tested: N = 3 gives η⁵).

**The linear tail, summed.** The series is asymptotic, and at the learning rates people use (η s₁ = 0.39 for the
tutorial at lr = 100) its truncation error is dominated by one family of terms: with Γ frozen, the step
``Q ← (I + ηΓ)Q`` is the time-η flow of ``dQ/dh = ln(I + ηΓ)/η · Q``, whose series ``Σ_j (−1)^{j+1} η^{j−1} Γ^j Q/j``
is exactly the Γ^jQ part of f_{j−1} above. The terms j > N + 1 are added in closed form::

    dQ/dh = F + Σ_{n ≤ N} ηⁿ fₙ + φ_N(Γ) Q,     φ_N(x) = [ln(1 + ηx) − Σ_{j ≤ N+1} (−1)^{j+1} (ηx)^j / j] / η,

so the escape from a small init grows by exactly (1 + ηs) per step, as SGD's does (a truncated series misses the
rate by O((ηs)^{N+1}) per step, and over a long escape that becomes a timing error: at γ = 1e-6, lr = 100, N = 3
was off by 0.042 of s₁ without the tail, 0.0028 with it). φ_N(x) = O(η^{N+1} x^{N+2}), so the order in η is kept;
at a fixed point Γ(P*)Q* = 0, so the term vanishes there and the fixed points are the flow's. φ_N(Γ)Q is evaluated
from the SVD of E (Γ's eigenvalues are ±σ_i(E) and 0). The prediction built on this flow (its initial layer of exact
steps and its error estimate) is :mod:`theory.modified_prediction`.

**Domain.** The log needs ``1 − η σ_max(E) > 0`` along the way: a direction that SGD flips in sign every step (a
large init's own output unlearned at a large η) has no flow, and the integration refuses there. A large init's
transient at half the stable lr (per-step change O(1) of itself, contraction 1 − ηκ near 0) is outside every
truncated series; :func:`modified_prediction` takes it by a few exact SGD steps (its initial layer, k₀ chosen by the
error estimate) and starts the flow after it. The series needs
ηs small enough to be useful; measured against training on the tutorial at lr = 100 (η s₁ = 0.39), N = 3 with
the tail: 2.4e-3 … 2.8e-3 of s₁ for γ from 1e-6 to 3, λ-balanced and random inits (bench/lazy_rich_table.py).
:data:`MODIFIED_MAX_CALLS` bounds the cost where the ODE is stiff (a lazy init's fast directions over a long run).

Glossary: η per-epoch rate (η = 2·lr/(P·N_out)); h = t/τ; S̄ (R, C) the reduced target; C, R the reduced input and
output dimensions; Q (C+R, N_h) the reduced weight stack, P = QQᵀ; E = S̄ − M̄ the reduced residual; fₙ the
modified equation's terms (units of Q per unit h per unit ηⁿ); N the truncation order.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["modified_field", "modified_flow", "derivatives", "OutsideDomain", "MODIFIED_ORDER", "MODIFIED_RTOL",
           "MODIFIED_MAX_CALLS", "MODIFIED_MAX_WORK", "EXPLICIT_MAX_CALLS", "IMPLICIT_MAX_CALLS", "IMPLICIT_MAX_SIZE"]

#: The truncation order N used by default (the terms f₁ … f₃ plus the linear tail): local error O(η⁵).
MODIFIED_ORDER = 3
#: Relative tolerance of the integration: far below the O(η⁴) the truncation leaves (≥ 1e-9 of s₁ wherever the
#: correction matters) and far above DOP853's rounding floor.
MODIFIED_RTOL = 1e-10
#: Most field evaluations an explicit (DOP853) integration may take (0.42 ms each on the tutorial: ≲ 30 s). The ODE is
#: stiff where a lazy init's fast directions meet a long run, or where 1 − ησ_max(E) approaches 0.
MODIFIED_MAX_CALLS = 60_000
#: ... and at most this many evaluations × entries of Q, as the field's cost grows with Q.size: 20833 evaluations for
#: the tutorial's 16 × 30 = 480 (its runs take ~2.5e3), 2564 for the 50-animal table's 130 × 30 = 3900 (1.8 ms each),
#: whose bottleneck run in `saxe verify` is stiff and is refused after those 2564 (the former limit of 6e4
#: evaluations meant minutes there).
MODIFIED_MAX_WORK = 10_000_000
#: Evaluations the explicit integrator is given before ``method='auto'`` hands a small system to the implicit BDF:
#: a small init's escape and learning take ~2.5e3 on the tutorial at lr = 100, a lazy init's stiff fast directions
#: over 2e5 epochs more than 6e4.
EXPLICIT_MAX_CALLS = 20_000
#: Most evaluations a BDF integration may take (its finite-difference Jacobian included): tutorial, γ = 100, 2e5
#: epochs: 1.9e4 from the λ-balanced init at lr 0.68, 4.4e4 from the output-lazy one, more than 6e4 from the random
#: one at lr 1.04.
IMPLICIT_MAX_CALLS = 120_000
#: Largest Q (entries) that ``method='auto'`` hands to BDF: its dense Jacobian costs Q.size evaluations and an LU of
#: Q.size² (the tutorial's 16 × 30 = 480); the 50-animal table's 130 × 30 = 3900 would cost 3900 evaluations
#: (7 s one at a time at 1.8 ms) and an LU of a 3900 × 3900 matrix per Jacobian, so larger systems stay explicit
#: (and refuse past MODIFIED_MAX_WORK).
IMPLICIT_MAX_SIZE = 1024
#: BDF's finite-difference Jacobian evaluates the field at Q.size points: at most this many are stacked into one
#: evaluation (the stack's temporaries are ~16 × its size: 405 MB for all 1800 columns of an 1800-entry Q at once).
STACK_COLUMNS = 256


class OutsideDomain(ValueError):
    """Raised inside the field when 1 − η σ_max(E) ≤ 0 (carries the reduced time h reached)."""


def _t(A: np.ndarray) -> np.ndarray:
    """Transpose over the last two axes (every function here takes stacks (…, C+R, N_h) of Q as well as one Q)."""
    return A.swapaxes(-1, -2)


def _gamma(E: np.ndarray, C: int) -> np.ndarray:
    """[[0, Eᵀ], [E, 0]] for E (…, R, C): (…, C+R, C+R)."""
    n = C + E.shape[-2]
    G = np.zeros(E.shape[:-2] + (n, n))
    G[..., :C, C:] = _t(E)
    G[..., C:, :C] = E
    return G


def derivatives(Q: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, Callable, Callable, Callable]:
    """(Γ, F′, F″, F‴) at Q: Γ(QQᵀ) and the directional derivatives of F(Q) = Γ(QQᵀ)Q (module docstring). Q may be
    a stack (…, C+R, N_h); Γ is then a stack too and the directions broadcast against Q."""
    C = target.shape[-1]
    G = _gamma(target - Q[..., C:, :] @ _t(Q[..., :C, :]), C)

    def g1(X: np.ndarray, Y: np.ndarray) -> np.ndarray:  # Γ₁(XYᵀ + YXᵀ): only its R × C block is needed
        return _gamma(X[..., C:, :] @ _t(Y[..., :C, :]) + Y[..., C:, :] @ _t(X[..., :C, :]), C)

    def fp(X: np.ndarray) -> np.ndarray:
        return G @ X - g1(Q, X) @ Q

    def fpp(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        return -(g1(X, Y) @ Q + g1(Q, X) @ Y + g1(Q, Y) @ X)

    def fppp(X: np.ndarray, Y: np.ndarray, Z: np.ndarray) -> np.ndarray:
        return -(g1(X, Y) @ Z + g1(X, Z) @ Y + g1(Y, Z) @ X)

    return G, fp, fpp, fppp


def _terms(Q: np.ndarray, target: np.ndarray, order: int) -> list[np.ndarray]:
    """[F, f₁, …, f_order] at Q, in the collapsed forms of the module docstring (f₂ = ⅓F'F'F + F''(F, F)/12,
    f₃ = −¼F'F'F'F − (F''(F'F, F) + F'F''(F, F))/12): four F′ and two F″ evaluations in all."""
    G, fp, fpp, _ = derivatives(Q, target)
    F = G @ Q
    out = [F]
    if order < 1:
        return out
    FF = fp(F)
    out.append(-0.5 * FF)
    if order < 2:
        return out
    FFF, Fpp_FF = fp(FF), fpp(F, F)
    out.append(FFF / 3.0 + Fpp_FF / 12.0)
    if order < 3:
        return out
    out.append(-(fpp(FF, F) + fp(Fpp_FF)) / 12.0 - fp(FFF) / 4.0)
    return out


def _tail(Q: np.ndarray, target: np.ndarray, eta: float, order: int) -> tuple[np.ndarray, np.ndarray]:
    """φ_N(Γ)Q (module docstring) and η σ_max(E) (one per Q of a stack), from the SVD of E = S̄ − M̄ (Γ's
    eigenvalues are ±σ_i(E), 0). Where η σ_max(E) ≥ 1 (inf where E is not finite) that Q's tail is not computed
    (0, or NaN where Q itself is not finite): the caller refuses it."""
    C = target.shape[-1]
    E = target - Q[..., C:, :] @ _t(Q[..., :C, :])
    finite = np.isfinite(E).all(axis=(-2, -1))
    whole = bool(finite.all())
    U, sig, Vt = np.linalg.svd(E if whole else np.where(finite[..., None, None], E, 0.0), full_matrices=False)
    x = eta * sig
    top = x.max(axis=-1, initial=0.0) if whole else np.where(finite, x.max(axis=-1, initial=0.0), np.inf)
    inside = top < 1.0
    everywhere = bool(inside.all())
    if not everywhere:
        x = np.where(inside[..., None], x, 0.0)
    js = np.arange(1, order + 2)
    sign = (-1.0) ** (js + 1)

    def phi(z: np.ndarray) -> np.ndarray:
        return (np.log1p(z) - (sign / js * z[..., None] ** js).sum(axis=-1)) / eta

    plus, minus = phi(x), phi(-x)
    even, odd = 0.5 * (plus + minus), 0.5 * (plus - minus)
    a, b = Vt @ Q[..., :C, :], _t(U) @ Q[..., C:, :]  # Q's parts along the right and left singular vectors of E
    top_rows = _t(Vt) @ (even[..., None] * a + odd[..., None] * b)
    bottom_rows = U @ (odd[..., None] * a + even[..., None] * b)
    out = np.concatenate([top_rows, bottom_rows], axis=-2)
    return (out if everywhere else out * inside[..., None, None]), top


def modified_field(Q: np.ndarray, target: np.ndarray, eta: float, order: int = MODIFIED_ORDER,
                   tail: bool = True) -> np.ndarray:
    r"""dQ/dh of SGD's modified equation truncated after f_order (0 … 3), plus the summed linear tail φ_N(Γ)Q when
    ``tail`` (module docstring). ``Q`` the reduced weight stack ((C+R) × N_h), ``target`` S̄ (R, C), ``eta`` η.
    Raises :class:`OutsideDomain` (a ``ValueError``) where the tail needs 1 − η σ_max(E) > 0 and it is not."""
    if isinstance(order, bool) or order not in (0, 1, 2, 3):
        raise ValueError(f"order must be 0, 1, 2 or 3, got {order=!r}")
    return _field(Q, target, eta, order, tail, refuse=True)


def _field(Q: np.ndarray, target: np.ndarray, eta: float, order: int, tail: bool, refuse: bool) -> np.ndarray:
    """:func:`modified_field` on one Q or a stack of them; outside the tail's domain it raises (``refuse``) or
    gives NaN for that Q of the stack (the integrator's vectorised Jacobian probes many Q at once)."""
    terms = _terms(Q, target, order)
    out = terms[0] + sum(eta ** n * f for n, f in enumerate(terms[1:], start=1))
    if tail:
        extra, top = _tail(Q, target, eta, order)
        inside = top < 1.0
        if np.all(inside):
            return out + extra
        if refuse:
            raise OutsideDomain(f"η·σ_max(S̄ − M̄) = {float(np.max(top)):.6g} ≥ 1")
        out = np.where(inside[..., None, None], out + extra, np.nan)
    return out


class _TooStiff(Exception):
    """Raised inside the integration past the integrator's evaluation budget (carries the τ-time reached)."""


def modified_flow(Q0: np.ndarray, target: np.ndarray, eta: float, h: np.ndarray, order: int = MODIFIED_ORDER,
                  tail: bool = True, method: str = "auto") -> np.ndarray:
    r"""Q at τ-times ``h`` (finite, ≥ 0, any order) along SGD's modified equation from ``Q0``: (len(h), C+R, N_h).

    SGD's iterate after k steps is this Q at h = kη up to O(η^{order+1}) (the modified equation's truncation). The
    hidden rotation of Q0 does not matter (F and every fₙ are equivariant under Q → QO), so any factor of P(0) may be
    given. ``method`` 'DOP853' (explicit, for the escape and learning phases), 'BDF' (implicit, for stiff stretches:
    a lazy init's fast directions, ηκ ≈ ½–1 per step, over a long run) or 'auto': DOP853 within
    :data:`EXPLICIT_MAX_CALLS` evaluations, else BDF where Q has at most :data:`IMPLICIT_MAX_SIZE` entries
    (tutorial, γ = 100, 2e5 epochs: DOP853 does not finish within 6e4 evaluations, BDF takes 1.9e4; over 2e4 epochs
    BDF, Radau and LSODA are off the exact map by 2.2225e-4, 2.2223e-4 and 2.2224e-4 of s₁: the integrators agree to
    2e-8, far below the truncation). Raises ``ValueError``
    (naming the epoch) where 1 − η σ_max(E) ≤ 0 is reached, where a derivative leaves the finite numbers, or past
    :data:`MODIFIED_MAX_CALLS` (DOP853; fewer for a large Q, :data:`MODIFIED_MAX_WORK`) or
    :data:`IMPLICIT_MAX_CALLS` (BDF) evaluations.
    """
    if method not in ("auto", "DOP853", "BDF"):
        raise ValueError(f"method must be 'auto', 'DOP853' or 'BDF', got {method!r}")
    return _integrate(Q0, target, eta, h, order, tail, method)[0]


def _integrate(Q0: np.ndarray, target: np.ndarray, eta: float, h: np.ndarray, order: int, tail: bool,
               method: str) -> tuple[np.ndarray, str]:
    """:func:`modified_flow` and the integrator that answered."""
    from scipy.integrate import solve_ivp  # lazy: scipy is imported only where a theory needs it

    h = np.asarray(h, dtype=np.float64)
    if h.size and not (np.isfinite(h).all() and (h >= 0).all()):
        raise ValueError("h must be finite τ-times ≥ 0 (the modified flow is integrated: ask for finite epochs)")
    n, k = Q0.shape
    out = np.empty((h.size, n, k))
    out[h == 0] = Q0
    grid = np.unique(h[h > 0])
    if not grid.size:
        return out, "DOP853" if method == "auto" else method
    calls, refused, limit = [0], [""], [0]

    def field(hh: float, Q: np.ndarray) -> np.ndarray:
        """The field at one Q or a stack of them, NaN where a Q is outside the domain (noted in ``refused``)."""
        with np.errstate(over="ignore", invalid="ignore"):
            val = _field(Q, target, eta, order, tail, refuse=False)
            bad = ~np.isfinite(val).all(axis=(-2, -1))
            if np.any(bad):
                # a trial stage outside the domain: NaN makes the integrator reject the step and shrink it (its error
                # norm is not < 1); where the solution itself leaves the domain, the step size underflows and the
                # call fails
                top = float(np.max(_tail(Q, target, eta, order)[1])) if tail else 0.0
                refused[0] = (f"at epoch {hh / eta:.6g}, the weights are not finite" if not np.isfinite(Q).all()
                              else f"at epoch {hh / eta:.6g}, η·σ_max(S̄ − M̄) = {top:.6g} ≥ 1" if not top < 1.0
                              else f"at epoch {hh / eta:.6g}, a derivative is not finite")
                val = np.where(bad[..., None, None], np.nan, val)
        return val

    def rhs(hh: float, y: np.ndarray) -> np.ndarray:
        """dQ/dh at one y (n·k,) or, for BDF's finite-difference Jacobian, at the m columns of y (n·k, m), stacked
        :data:`STACK_COLUMNS` at a time (counted as m evaluations)."""
        cols = 1 if y.ndim == 1 else y.shape[1]
        calls[0] += cols
        if calls[0] > limit[0]:
            raise _TooStiff(hh)
        if y.ndim == 1:
            return field(hh, y.reshape(n, k)).ravel()
        out = np.empty((n * k, cols))
        for j in range(0, cols, STACK_COLUMNS):
            part = y[:, j:j + STACK_COLUMNS]
            stack = np.moveaxis(part.reshape(n, k, part.shape[1]), -1, 0)
            out[:, j:j + STACK_COLUMNS] = np.moveaxis(field(hh, stack), 0, -1).reshape(n * k, part.shape[1])
        return out

    scale = max(float(np.abs(target).max(initial=0.0)), np.finfo(float).tiny)
    # Q grows from the init's size to O(√s): resolve it relative to the smaller (a small init's escape time is set
    # by Q relative to itself)
    atol = MODIFIED_RTOL * min(np.sqrt(scale), max(float(np.abs(Q0).max(initial=0.0)), np.finfo(float).tiny))
    explicit = min(MODIFIED_MAX_CALLS, MODIFIED_MAX_WORK // max(Q0.size, 1))
    if method == "auto":
        plan = ([("DOP853", min(EXPLICIT_MAX_CALLS, explicit)), ("BDF", IMPLICIT_MAX_CALLS)]
                if Q0.size <= IMPLICIT_MAX_SIZE
                else [("DOP853", explicit)])
    else:
        plan = [(method, explicit if method == "DOP853" else IMPLICIT_MAX_CALLS)]
    for i, (solver, budget) in enumerate(plan):
        calls[0], limit[0], refused[0] = 0, budget, ""  # a refusal names only this integrator's own trials
        try:
            sol = solve_ivp(rhs, (0.0, float(grid[-1])), Q0.ravel(), t_eval=grid, method=solver,
                            rtol=MODIFIED_RTOL, atol=atol, vectorized=solver == "BDF")
        except _TooStiff as stop:
            if i + 1 < len(plan):
                continue
            raise ValueError(f"SGD's modified equation needs more than {budget} evaluations ({solver}) to reach "
                             f"epoch {grid[-1] / eta:.6g} (stopped at epoch {stop.args[0] / eta:.6g}): it is stiff "
                             "there (a lazy init's fast directions over a long run, or η σ_max(S̄ − M̄) near 1); ask "
                             "for fewer epochs, or use theory.predictor(..., theory='exact')") from None
        if not sol.success:
            why = f" (last trial outside it: {refused[0]})" if refused[0] else ""
            raise ValueError(f"SGD's modified equation could not be integrated past epoch {sol.t[-1] / eta:.6g}{why}: "
                             f"{sol.message} — it needs 1 − η σ_max(S̄ − M̄) > 0 (where SGD flips a direction's sign "
                             "every step, e.g. a large init's own output unlearned at a large lr, no flow follows it); "
                             "lower lr, or use theory.predictor(..., theory='exact')")
        out[h > 0] = sol.y.T.reshape(-1, n, k)[np.searchsorted(grid, h[h > 0])]
        return out, solver
    raise AssertionError("unreachable")  # pragma: no cover
