r"""Closed forms for the *discrete-time* (finite learning rate) balanced mode trajectory.

Saxe's a(t) = s e^{2st/τ}/(e^{2st/τ} − 1 + s/a₀) is the gradient-flow limit η → 0 of the exact balanced SGD map
(:func:`theory.modes.mode_strength_discrete`). In the scaled gain w = (a/s)^{1/L} and the scaled rate
h = η s^{2−2/L} that map reads

    g(w) = w + h w^{L−1} (1 − w^L),        a = s w^L,        (depth 2: x = w² = a/s, x ↦ x (1 + h(1 − x))²)

and its orbit is a_k = s·T⁻¹(T(w₀) + k) for an *Abel function* T (T∘g = T + 1). This module builds T in closed
form from the two ends of the orbit plus a correction of the middle:

* **near a = 0** T is Koenigs' linearising coordinate (depth 2, multiplier λ = (1 + h)²: T ≈ ln x / ln λ) or,
  at depth L ≥ 3 where 0 is parabolic (g(w) = w + h w^{L−1} + …), the Fatou coordinate
  T ≈ −1/((L−2) h w^{L−2}) + ((L−1)/2) ln w, whose log term has no gradient-flow counterpart;
* **near a = s** T is Koenigs' coordinate of the attracting point, multiplier μ = g'(1) = 1 − L h:
  T ≈ −ln(1 − w)/Λ₁, Λ₁ = −ln(1 − L h);
* the gradient-flow time (Saxe; the depth-L H(w) of :mod:`theory.modes`) carries the middle. Together (order 0)

    depth 2:  T₀(x) = ln x / Λ₀ − ln(1 − x) / Λ₁,                          Λ₀ = 2 ln(1 + h), Λ₁ = −ln(1 − 2h)
    depth L:  T₀(w) = [H(w) + (1/L) ln(1 − w)]/h + ((L−1)/2) ln w − ln(1 − w)/Λ₁,
              H(w) = −1/((L−2) w^{L−2}) − (1/L) Σ_j ω_j² ln(w − ω_j)     (ω_j the L-th roots of unity)

  exact at both ends; its defect E(w) = 1 − [T₀(g(w)) − T₀(w)] vanishes at w = 0 and w = 1 and is O(h²) between;
* **order 1** solves T∘g = T + 1 for the remainder R = T − T₀ to first order by Euler–Maclaurin (sum over steps
  ↔ integral over the flow of T₀: R(θ + 1) − R(θ) = E ⇒ R = ∫E dθ − E/2 + O(h³)):

    T₁(w) = T₀(w) + ∫₀^w E(v) T₀'(v) dv − E(w)/2.

  At depth 2 E = −(2/Λ₀) ln(1 − cx) + (1/Λ₁) ln(1 − x/ρ₁) + (1/Λ₁) ln(1 − x/ρ₂), c = h/(1 + h), ρ₁ρ₂ = 1/h²,
  ρ₁ + ρ₂ = (2 + h)/h, and the integral is a sum of dilogarithms Li₂ (below); at depth L ≥ 3 it is integrated
  by a degree-:data:`CHEB_DEGREE` Chebyshev interpolant of the explicit integrand (spectral accuracy).

The time t(a) = T(w) − T(w₀) is closed; a(t) inverts it by vectorised bisection (float64 accuracy). Measured
against the exact map on the tutorial spectrum (bench/finite_lr_table.py), max over the orbit of |Δa|/s₁: depth 2
order 1 ∝ η^4 (0.0031 at lr = 100, ηs₁ = 0.39), order 0 ∝ η²; depth 3/4 order 1 ∝ η^1.9–2.2 at small η
(the O(h) modified-equation term is caught, the O(h²) one is not), order 0 ∝ η.

Domain: the approach to s must be monotone, L h < 1 (g'(1) > 0; g is then increasing on [0, 1]), i.e.
η < 1/(L s^{2−2/L}) = ½·:func:`theory.stability.max_stable_eta`; beyond it the orbit alternates around s and
these forms raise ``ValueError`` (use the exact map). 0 ≤ a₀ ≤ s (a mode decaying from above is refused).

Glossary: t ≥ 0 epochs; s > 0 singular value of Σʸˣ; a₀ initial strength; η = 2·lr/(P·N_out) per epoch;
τ = 1/η epochs; L = depth; h = η s^{2−2/L} (dimensionless); w = (a/s)^{1/L}; θ = T(w) the Abel time (epochs).

References: Saxe, McClelland & Ganguli, arXiv:1312.6120 (2014); G. Koenigs, Ann. Sci. ÉNS 1, 3–41 (1884)
(linearisation at a hyperbolic fixed point); P. Fatou, Bull. SMF 47, 161–271 (1919) and J. Milnor, *Dynamics in
One Complex Variable*, §10 (Fatou coordinates at a parabolic point); N. H. Abel (1826), the functional equation
T∘g = T + 1; E. Hairer, C. Lubich & G. Wanner, *Geometric Numerical Integration*, ch. IX (backward error
analysis: the map as the time-1 flow of a modified equation); Euler–Maclaurin summation.
"""
from __future__ import annotations

import numpy as np
from numpy.polynomial import chebyshev as cheb
from numpy.typing import ArrayLike

from ._validate import broadcast, integer, nonnegative_array, positive, times
from .modes import _log_term, _power_part

__all__ = ["mode_strength_finite_lr", "time_to_strength_finite_lr", "max_monotone_eta", "CHEB_DEGREE",
           "ORDERS"]

# Degree of the Chebyshev interpolant of E·T₀' on w ∈ [0, 1] (depth ≥ 3): the integrand is smooth on the closed
# interval and its coefficients fall below 1e-13 of the largest by degree ~30 for L h ≤ 0.95; 48 leaves margin.
CHEB_DEGREE = 48
# Bisection steps on λ ∈ [0, 1] (ψ = (1 − λ)ψ₀, ψ = ln w): 2⁻⁶⁴·|ψ₀| ≤ 2⁻⁶⁴·745 is below one ulp of a.
_BISECTION_STEPS = 64
# Gauss–Legendre points for F_reg's increment over one step (relative error ~ (step)^12, step ≤ 0.3 in w).
_GAUSS_POINTS = 6
# Orders of the closed form: 0 = two-ended (Koenigs/Fatou) form, 1 = plus the Euler–Maclaurin middle correction.
ORDERS = (0, 1)


def max_monotone_eta(s_max: float, depth: int = 2) -> float:
    r"""Largest η for which these closed forms hold: L η s_max^{2−2/L} < 1 (monotone approach to s).

    g'(1) = 1 − L h with h = η s^{2−2/L}; for L h < 1 the map is increasing on [0, 1] (its derivative is smallest
    at w = 1), so the orbit rises monotonically to s and a real Abel function exists on (0, 1). Equals half of
    :func:`theory.stability.max_stable_eta`. Units: η per epoch; s_max the largest singular value of Σʸˣ.
    """
    s_max = positive("s_max", s_max)
    depth = integer("depth", depth, minimum=1)
    return 1.0 / (depth * s_max ** (2.0 - 2.0 / depth))


# ------------------------------------------------------------------------------------------------ depth 2
def _rates(h: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """(Λ₀, Λ₁): log-multipliers at a = 0 (depth 2 only; 0 otherwise) and a = s."""
    lam0 = 2.0 * np.log1p(h) if depth == 2 else np.zeros_like(h)
    return lam0, -np.log1p(-depth * h)


def _li2(z: np.ndarray) -> np.ndarray:
    """Dilogarithm Li₂(z) = −∫₀^z ln(1 − u)/u du for real z ≤ 1 (scipy's spence(1 − z))."""
    from scipy.special import spence  # imported when first needed

    return spence(1.0 - z)


def _roots2(h: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Depth-2 defect E(x) = Σ_i c_i ln(1 − x/ρ_i) as (c_i, ρ_i, ρ_i − 1), the ρ_i − 1 formed without cancellation."""
    lam0, lam1 = _rates(h, 2)
    root = np.sqrt(h * (h + 4.0))
    rho2 = (2.0 + h + root) / (2.0 * h)
    return [(-2.0 / lam0, (1.0 + h) / h, 1.0 / h),
            (1.0 / lam1, 1.0 / (h * h * rho2), 2.0 * (1.0 - 2.0 * h) / (h * (2.0 - h + root))),
            (1.0 / lam1, rho2, (2.0 - h + root) / (2.0 * h))]


def _defect2(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """E(x) = 1 − [T₀(f(x)) − T₀(x)] at depth 2 (x = a/s): ln(f/x) = 2 ln(1 + h(1 − x)), (1 − f)/(1 − x) = q(x)."""
    lam0, lam1 = _rates(h, 2)
    return -2.0 / lam0 * np.log1p(-h / (1.0 + h) * x) + np.log1p(-h * x * (2.0 + h * (1.0 - x))) / lam1


def _middle2(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    r"""R₁(x) = ∫₀^x E (1/(v Λ₀) + 1/((1 − v) Λ₁)) dv − E(x)/2 in dilogarithms.

    ∫₀^x ln(1 − v/ρ)/v dv = −Li₂(x/ρ); ∫₀^x ln(1 − v/ρ)/(1 − v) dv = Li₂(−(1 − x)/(ρ − 1)) − Li₂(−1/(ρ − 1))
    − ln(1 − 1/ρ) ln(1 − x). The ln(1 − x) terms sum to −E(1) ln(1 − x)/Λ₁ = 0 and are dropped exactly.
    """
    lam0, lam1 = _rates(h, 2)
    total = -0.5 * _defect2(x, h)
    for c, rho, rho_m1 in _roots2(h):
        total += c * (-_li2(x / rho) / lam0 + (_li2(-(1.0 - x) / rho_m1) - _li2(-1.0 / rho_m1)) / lam1)
    return total


def _abel2(psi: np.ndarray, psi0: np.ndarray, h: np.ndarray, order: int, mid0: np.ndarray | None = None
           ) -> np.ndarray:
    """T(x) − T(x₀) at depth 2, x = e^{2ψ}; ``mid0`` R₁(x₀) when already known (:func:`_start_term`)."""
    lam0, lam1 = _rates(h, 2)
    with np.errstate(divide="ignore"):
        out = 2.0 * (psi - psi0) / lam0 - (np.log(-np.expm1(2 * psi)) - np.log(-np.expm1(2 * psi0))) / lam1
    if order >= 1:
        out += _middle2(np.exp(2 * psi), h) - (_middle2(np.exp(2 * psi0), h) if mid0 is None else mid0)
    return out


# ------------------------------------------------------------------------------------------------ depth L ≥ 3
def _freg(psi: np.ndarray, depth: int) -> np.ndarray:
    """F(w) + ln(1 − w)/L: the gradient-flow time's log part without its singular term at w = 1."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return _log_term(psi, depth) + np.log(np.abs(np.expm1(psi))) / depth


def _freg_step(w: np.ndarray, step: np.ndarray, depth: int) -> np.ndarray:
    """F_reg(w + step) − F_reg(w) = ∫ [v/(1 − v^L) − 1/(L(1 − v))] dv by Gauss–Legendre (no O(1) cancellation).

    The difference of two O(1) values would lose ~1e-16 absolutely, which the order-1 integrand multiplies by
    T₀' ~ 1/(h² w^{L−1}) near w = 0; the quadrature's error is O(step^{2n}) relative instead.
    """
    nodes, weights = np.polynomial.legendre.leggauss(_GAUSS_POINTS)
    total = np.zeros(np.broadcast(w, step).shape)
    for x, wt in zip(nodes, weights):
        v = w + 0.5 * (1.0 + x) * step
        total = total + wt * (v / -np.expm1(depth * np.log(v)) - 1.0 / (depth * (1.0 - v)))
    return 0.5 * step * total


def _defect_deep(w: np.ndarray, h: np.ndarray, depth: int) -> np.ndarray:
    """E(w) = 1 − [T₀(g(w)) − T₀(w)] at depth L ≥ 3, each term as a difference formed without cancellation."""
    m, (_, lam1) = depth - 2, _rates(h, depth)
    delta = h * w**m * (1.0 - w**depth)  # g(w)/w − 1
    power = -np.expm1(-m * np.log1p(delta)) / (m * h * w**m)
    log_w = 0.5 * (depth - 1) * np.log1p(delta)
    flow = _freg_step(w, w * delta, depth) / h
    geom = np.polyval(np.ones(depth), w)  # (1 − w^L)/(1 − w)
    end = -np.log1p(-h * w ** (depth - 1) * geom) / lam1
    return 1.0 - (power + log_w + flow + end)


def _dT0_deep(w: np.ndarray, h: np.ndarray, depth: int) -> np.ndarray:
    """T₀'(w) = 1/(h w^{L−1}) + (L−1)/(2w) + [w/(1 − w^L) − 1/(L(1 − w))]/h + 1/(Λ₁(1 − w))."""
    _, lam1 = _rates(h, depth)
    regular = (w / (1.0 - w**depth) - 1.0 / (depth * (1.0 - w))) / h
    return 1.0 / (h * w ** (depth - 1)) + 0.5 * (depth - 1) / w + regular + 1.0 / (lam1 * (1.0 - w))


def _middle_coeffs(h: np.ndarray, depth: int) -> np.ndarray:
    """Chebyshev coefficients (in 2w − 1) of R₁(w) = ∫₀^w E T₀' dv, one column per entry of ``h`` (1-d)."""
    nodes = cheb.chebpts1(CHEB_DEGREE + 1)
    w = 0.5 * (nodes[:, None] + 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = _defect_deep(w, h[None, :], depth) * _dT0_deep(w, h[None, :], depth)
    coef = np.linalg.solve(cheb.chebvander(nodes, CHEB_DEGREE), values)
    return cheb.chebint(coef, lbnd=-1.0, scl=0.5, axis=0)


def _abel_deep(psi: np.ndarray, psi0: np.ndarray, h: np.ndarray, depth: int, order: int,
               coef: np.ndarray | None, mid0: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """T(w) − T(w₀) at depth L ≥ 3, w = e^ψ; the power part as a difference (no cancellation for tiny w₀);
    ``mid0`` the middle correction's value at w₀ when already known (:func:`_start_term`)."""
    _, lam1 = _rates(h, depth)
    with np.errstate(divide="ignore", invalid="ignore"):
        flow = (_power_part(psi, psi0, depth) + _freg(psi, depth) - _freg(psi0, depth)) / h
        ends = 0.5 * (depth - 1) * (psi - psi0) - (np.log(-np.expm1(psi)) - np.log(-np.expm1(psi0))) / lam1
    out = flow + ends
    if order >= 1 and coef is not None:
        w = np.exp(psi)
        r0, half_e0 = _deep_middle(psi0, h, depth, coef) if mid0 is None else mid0
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            mid = cheb.chebval(2 * w - 1, coef, tensor=False) - 0.5 * _defect_deep(w, h, depth) - r0 + half_e0
        out = out + np.where(psi == psi0, 0.0, mid)
    return out


def _deep_middle(psi: np.ndarray, h: np.ndarray, depth: int, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R₁(w), E(w)/2) at w = e^ψ (depth L ≥ 3), from the Chebyshev coefficients of R₁ (kept apart so that the
    difference is summed in the same order whether or not they were precomputed)."""
    w = np.exp(psi)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return cheb.chebval(2 * w - 1, coef, tensor=False), 0.5 * _defect_deep(w, h, depth)


# ------------------------------------------------------------------------------------------------ public
def _prepare(s, a0, eta, depth, order) -> tuple[np.ndarray, np.ndarray, float, int, np.ndarray]:
    s = nonnegative_array("s", s, strict=True)
    a0 = nonnegative_array("a0", a0)
    eta = positive("eta", eta)
    depth = integer("depth", depth, minimum=1)
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS} (0: two-ended form, 1: plus middle correction), "
                         f"got {order!r}")
    s, a0 = broadcast(s=s, a0=a0)
    if (a0 > s).any():
        bad = np.flatnonzero((a0 > s).ravel())[0]
        raise ValueError(f"a0 must be <= s (the finite-lr closed form covers modes growing towards s), got "
                         f"a0={a0.flat[bad]!r} > s={s.flat[bad]!r}")
    h = eta * s ** (2.0 - 2.0 / depth)
    if (depth * h >= 1.0).any():
        s_max = float(s.max())
        raise ValueError(
            f"eta={eta!r} is beyond the monotone range of the finite-lr closed form: it needs "
            f"eta < 1/(L·s^(2−2/L)) = {max_monotone_eta(s_max, depth):.6g} for s={s_max:.6g}, {depth=} (there the "
            "approach to s alternates, g'(s) = 1 − L·eta·s^(2−2/L) < 0); use theory.mode_strength_discrete")
    return s, a0, eta, depth, h


def _elapsed(psi, psi0, h, depth, order, coef, mid0=None) -> np.ndarray:
    if depth == 2:
        return _abel2(psi, psi0, h, order, mid0)
    return _abel_deep(psi, psi0, h, depth, order, coef, mid0)


def _start_term(psi0, h, depth, order, coef):
    """The middle correction's value at the start w₀, which every step of an inversion by bisection would
    otherwise recompute (half of its cost); None at order 0."""
    if order < 1:
        return None
    if depth == 2:
        return _middle2(np.exp(2 * psi0), h)
    return None if coef is None else _deep_middle(psi0, h, depth, coef)


def _coefficients(h: np.ndarray, depth: int, order: int) -> np.ndarray | None:
    """Per-entry Chebyshev coefficients of the depth-L middle correction (computed once per distinct h)."""
    if depth < 3 or order < 1 or h.size == 0:
        return None
    uniq, inverse = np.unique(h.ravel(), return_inverse=True)
    return _middle_coeffs(uniq, depth)[:, inverse].reshape((-1, *h.shape))


def time_to_strength_finite_lr(a: ArrayLike, s: ArrayLike, a0: ArrayLike, eta: float, depth: int = 2,
                               order: int = 1) -> np.ndarray:
    r"""Epochs t(a) for a balanced mode to grow from a₀ to a under SGD at rate η: t = T(w) − T(w₀).

    Depth 2 (x = a/s, Λ₀ = 2 ln(1 + ηs), Λ₁ = −ln(1 − 2ηs); compare Saxe's t = (τ/2s) ln[x(1 − x₀)/(x₀(1 − x))])::

        t = [ln x − ln x₀]/Λ₀ − [ln(1 − x) − ln(1 − x₀)]/Λ₁ + R₁(x) − R₁(x₀)       (R₁ = 0 at order 0)

    Depth L: T = [H(w) + ln(1 − w)/L]/h + ((L−1)/2) ln w − ln(1 − w)/Λ₁ + R₁(w), w = (a/s)^{1/L}, h = η s^{2−2/L};
    depth 1 is exact: t = ln[(s − a)/(s − a₀)] / ln(1 − η). Derivation and R₁ in the module docstring.

    Glossary: a ∈ [a₀, s] strength reached (a = s gives ``np.inf``); s > 0; 0 ≤ a₀ ≤ s; η > 0 per epoch with
    L η s^{2−2/L} < 1 (:func:`max_monotone_eta`); depth = L ≥ 1; order ∈ :data:`ORDERS`. Returns epochs (float64,
    broadcast shape of a, s, a0), continuous in a: the exact orbit reaches a at the first integer k ≥ t
    up to the error of the form. Reference: Saxe et al. arXiv:1312.6120 eq. 11 (η → 0); module docstring.
    """
    a = nonnegative_array("a", a)
    s, a0, eta, depth, h = _prepare(s, a0, eta, depth, order)
    a, s, a0, h = broadcast(a=a, s=s, a0=a0, h=h)
    if ((a < a0) | (a > s)).any():
        raise ValueError("a must lie in [a0, s] (the orbit rises monotonically from a0 to s), got a outside, e.g. "
                         f"a={a[(a < a0) | (a > s)].flat[0]!r}")
    if depth == 1:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(a == a0, 0.0, np.log((s - a) / (s - a0)) / np.log1p(-eta))
    with np.errstate(divide="ignore"):
        psi, psi0 = np.log(a / s) / depth, np.log(a0 / s) / depth
    out = np.full(a.shape, np.inf)
    live = (a0 > 0) & (a < s) & (a > a0)
    out[a == a0] = 0.0
    if live.any():
        coef = _coefficients(h[live], depth, order)
        out[live] = _elapsed(psi[live], psi0[live], h[live], depth, order, coef)
    return out


def mode_strength_finite_lr(t: ArrayLike, s: ArrayLike, a0: ArrayLike, eta: float, depth: int = 2,
                            order: int = 1) -> np.ndarray:
    r"""Strength a(t) of a balanced, decoupled mode under full-batch SGD at a finite rate η, in closed form.

    a(t) = s·w^L with T(w) − T(w₀) = t (:func:`time_to_strength_finite_lr`), inverted by vectorised bisection on
    ln w to float64 accuracy; a₀ ≈ 1e-25 or 1e-300 is handled in log space. At integer t = k it approximates the
    exact orbit a_k of :func:`theory.modes.mode_strength_discrete`; as η → 0 (Λ₀, Λ₁ → 2ηs, R₁ → 0) it becomes
    Saxe's :func:`theory.modes.mode_strength` with τ = 1/η. Depth 1 is exact: a = s + (a₀ − s)(1 − η)^t.

    Measured against the exact map on the tutorial spectrum (a₀ = 1.98e-25, 250 epochs; bench/finite_lr_table.py):
    order 1 at lr = 100 (η s₁ = 0.39) is within 0.0031 s₁ (Saxe's form: 0.99 s₁); its error scales as h⁴ at depth
    2 and ~h² at depth 3 and 4 (h = η s^{2−2/L}).

    Glossary: t ≥ 0 epochs (``np.inf`` → s); s > 0; 0 ≤ a₀ ≤ s; η per epoch with L η s^{2−2/L} < 1 (else
    ``ValueError``: the approach to s alternates and no monotone closed form exists); depth = L ≥ 1; order 0 or 1.
    Returns float64, broadcast shape of (t, s, a0). Reference: Saxe et al. arXiv:1312.6120; module docstring.
    """
    t = times("t", t)
    s, a0, eta, depth, h = _prepare(s, a0, eta, depth, order)
    t, s, a0, h = broadcast(t=t, s=s, a0=a0, h=h)
    if depth == 1:
        with np.errstate(invalid="ignore"):
            return np.where(t == 0, a0, s + (a0 - s) * np.exp(t * np.log1p(-eta)))
    out = np.where(a0 == 0, 0.0, s)
    todo = np.isfinite(t) & (t > 0) & (a0 > 0) & (a0 < s)
    if todo.any():
        T, sv, hv = t[todo], s[todo], h[todo]
        psi0 = np.log(a0[todo] / sv) / depth
        coef = _coefficients(hv, depth, order)
        with np.errstate(invalid="ignore", divide="ignore"):
            mid0 = _start_term(psi0, hv, depth, order, coef)
        lo, hi = np.zeros_like(T), np.ones_like(T)
        for _ in range(_BISECTION_STEPS):
            mid = 0.5 * (lo + hi)
            with np.errstate(invalid="ignore", divide="ignore"):
                early = (mid < 1.0) & (_elapsed((1.0 - mid) * psi0, psi0, hv, depth, order, coef, mid0) < T)
            lo, hi = np.where(early, mid, lo), np.where(early, hi, mid)
        out[todo] = sv * np.exp(depth * (1.0 - 0.5 * (lo + hi)) * psi0)
    return np.where(t == 0, a0, out)
