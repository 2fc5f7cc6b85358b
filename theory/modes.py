r"""Balanced, decoupled mode strengths of a deep linear network: continuous time and the exact SGD map.

With whitened inputs (Σˣˣ = I) and a balanced, aligned ("decoupled") initialisation, every singular mode α of
Σʸˣ = U diag(s) Vᵀ is learned independently. Each of the L weight matrices carries the same gain u along the
mode, and the network's strength on it is ``a = u^L`` (``a`` is the α-th singular value of W_tot = W_L ⋯ W_1).

Continuous time (gradient flow, t in **epochs**, τ = 1/η, see :mod:`theory.correlations`)::

    τ du/dt = u^{L−1} (s − u^L)      ⇔      τ da/dt = L a^{2−2/L} (s − a)

Discrete time (one full-batch SGD step per epoch, *exact* for the balanced decoupled network)::

    u_{k+1} = u_k + η u_k^{L−1} (s − u_k^L)

Glossary: t epochs since the start of training; s > 0 the mode's singular value of Σʸˣ; a₀ ≥ 0 the initial
mode strength; τ = 1/η the time constant in epochs; η = 2·lr/(P·N_out) the per-epoch rate; L = ``depth`` the
number of weight matrices (1 = linear regression, 2 = one hidden layer as in the tutorial).

References: Saxe, McClelland & Ganguli, arXiv:1312.6120 (2014): the exact solution for one hidden layer and its
extension to deeper (balanced) networks; Saxe, McClelland & Ganguli, PNAS 116:11537 (2019).
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._validate import broadcast, integer, nonnegative_array, positive, times
from .errors import OrbitDivergenceError

__all__ = ["mode_strength", "mode_strength_discrete", "ORBIT_ESCAPE_FACTOR"]

# The discrete orbit counts as diverged once |a| exceeds this multiple of max(s, a₀): a bounded orbit overshoots
# s by at most a factor (2 + ηs)/(ηs) ≤ 1 + 2/(ηs) (depth 2, ηs ≤ 2), i.e. < 1e6 unless ηs < 2e-6, where no
# overshoot happens at all; an escaping orbit passes 1e6 within a few steps and long before overflow.
ORBIT_ESCAPE_FACTOR = 1e6

# Bisection steps on the log-gain for depth ≥ 3: 2⁻⁶⁴·|ln w₀| ≤ 2⁻⁶⁴·745 ≈ 4e-17 is below one float64 ulp of a.
_BISECTION_STEPS = 64


def _mode_args(s, a0) -> tuple[np.ndarray, np.ndarray]:
    s = nonnegative_array("s", s, strict=True)
    a0 = nonnegative_array("a0", a0)
    return s, a0


def _depth2(x: np.ndarray, s: np.ndarray, a0: np.ndarray) -> np.ndarray:
    """Saxe's a = s/(1 + (s/a₀ − 1) e^{−x}), x = 2st/τ, in log space (no overflow for tiny a₀ or huge x)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = np.empty_like(s)
        grow = a0 < s
        # a₀ < s: s/a₀ − 1 = e^{c}, a = s·exp(−softplus(c − x)).
        c = np.log(s[grow] - a0[grow]) - np.log(a0[grow])
        out[grow] = s[grow] * np.exp(-np.logaddexp(0.0, c - x[grow]))
        # a₀ ≥ s: 1 − s/a₀ = e^{c} ∈ [0, 1), a = s/(1 − e^{c − x}) = −s/expm1(c − x).
        dec = ~grow
        c = np.log1p(-s[dec] / a0[dec])
        out[dec] = -s[dec] / np.expm1(c - x[dec])
        out[dec & (a0 == s)] = s[dec & (a0 == s)]
    return out


def _log_term(psi: np.ndarray, depth: int) -> np.ndarray:
    r"""F(w) = ∫ w/(1 − w^L) dw up to a constant, w = e^ψ, for w ≠ 1 (either side), depth L ≥ 3.

    Partial fractions over the L-th roots of unity ω_j = e^{iθ_j}: w/(1 − w^L) = −(1/L) Σ_j ω_j²/(w − ω_j), so
    F(w) = −(1/L) [ln|1 − w| + Re Σ_{j≥1} ω_j² Ln(w − ω_j)]. Each conjugate pair gives, in real arithmetic,
    2 Re[ω² Ln(w − ω)] = cos 2θ · ln(w² − 2w cos θ + 1) − 2 sin 2θ · atan2(−sin θ, w − cos θ), and ω = −1
    (even L) gives ln(1 + w); ln|1 − w| = ln|expm1(ψ)| keeps w → 1 accurate.
    """
    w = np.exp(psi)
    total = np.log(np.abs(np.expm1(psi)))
    for j in range(1, (depth + 1) // 2):  # one root of each conjugate pair, 0 < θ < π
        theta = 2.0 * np.pi * j / depth
        c, s = np.cos(theta), np.sin(theta)
        total += np.cos(2 * theta) * np.log(w * (w - 2 * c) + 1.0) - 2 * np.sin(2 * theta) * np.arctan2(-s, w - c)
    if depth % 2 == 0:
        total += np.log1p(w)
    return -total / depth


def _scaled_elapsed(psi: np.ndarray, psi0: np.ndarray, depth: int) -> np.ndarray:
    r"""H(w) − H(w₀) = s^{2−2/L} (t/τ) for depth L ≥ 3, w = (a/s)^{1/L} = e^ψ, w₀ = e^{ψ₀}, both on one side of 1.

    H(w) = ∫ dw/(w^{L−1}(1 − w^L)) = −1/((L−2) w^{L−2}) + F(w) (partial fractions, see :func:`_log_term`).
    The power-law part is formed as a difference, (1/((L−2) w₀^{L−2}))·(1 − (w₀/w)^{L−2}), in log space, so
    tiny a₀ (w₀^{−(L−2)} up to overflow) costs no accuracy.
    """
    return _power_part(psi, psi0, depth) + _log_term(psi, depth) - _log_term(psi0, depth)


def _power_part(psi: np.ndarray, psi0: np.ndarray, depth: int) -> np.ndarray:
    m = depth - 2
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        diff = -np.expm1(-m * (psi - psi0))  # 1 − (w₀/w)^{L−2}; same sign as ψ − ψ₀
        power = np.sign(diff) * np.exp(-m * psi0 - np.log(m) + np.log(np.abs(diff)))
    return np.where(diff == 0, 0.0, power)


def _deep(T: np.ndarray, s: np.ndarray, a0: np.ndarray, depth: int) -> np.ndarray:
    """Invert H(w) − H(w₀) = T for depth ≥ 3 by vectorised bisection on the log-gain ψ between ψ₀ and 0."""
    psi0 = np.log(a0 / s) / depth
    # λ ∈ [0, 1] parametrises ψ = (1 − λ) ψ₀ from the start (λ = 0) to the fixed point w = 1 (λ = 1); the
    # elapsed time increases with λ whether the mode grows (ψ₀ < 0) or decays (ψ₀ > 0) towards s.
    lo = np.zeros_like(T)
    hi = np.ones_like(T)
    T = T + _log_term(psi0, depth)  # hoisted out of the loop: compare power part + F(w) with T + F(w₀)
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        psi = (1.0 - mid) * psi0
        with np.errstate(invalid="ignore", divide="ignore"):
            early = (psi != 0) & (_power_part(psi, psi0, depth) + _log_term(psi, depth) < T)
        lo = np.where(early, mid, lo)
        hi = np.where(early, hi, mid)
    psi = (1.0 - 0.5 * (lo + hi)) * psi0
    return s * np.exp(depth * psi)


def mode_strength(t: ArrayLike, s: ArrayLike, a0: ArrayLike, tau: ArrayLike, depth: int = 2) -> np.ndarray:
    r"""Strength a(t) of a balanced, decoupled mode under gradient flow, broadcasting over ``t``, ``s``, ``a0``.

    Equations (t in epochs, τ = 1/η)::

        depth 1:  τ da/dt = s − a                 ⇒  a(t) = s + (a₀ − s) e^{−t/τ}
        depth 2:  τ da/dt = 2 a (s − a)           ⇒  a(t) = s e^{2st/τ} / (e^{2st/τ} − 1 + s/a₀)
                                                        = s / (1 + (s/a₀ − 1) e^{−2st/τ})
        depth L:  τ du/dt = u^{L−1}(s − u^L), a = u^L, u₀ = a₀^{1/L}, solved through the exact implicit time
                  t = τ s^{−(2−2/L)} [H(w) − H(w₀)],  w = (a/s)^{1/L},
                  H(w) = ∫ dw/(w^{L−1}(1 − w^L)) = −1/((L−2)w^{L−2}) − (1/L) Σ_j ω_j² ln(w − ω_j)
                  (partial fractions over the L-th roots of unity ω_j), inverted by bisection on ln w to
                  float64 accuracy.

    The depth-2 form is evaluated through e^{−2st/τ} in log space, so s·t/τ = 1e4, a₀ = 1e-300 and t = ∞ are
    all finite. a₀ = 0 is a fixed point for depth ≥ 2 (it stays 0); for depth 1 it is not (a → s). a₀ > s is
    allowed and decays to s. The problem itself is ill-conditioned in t near the sharp rise of a mode that
    starts from a tiny a₀ (a relative error ε in t becomes ~ε·t·(d ln a/dt) in a); away from that the
    result is accurate to ~1e-12 relative.

    Glossary: t ≥ 0 epochs (``np.inf`` allowed: a = s); s > 0 singular value of Σʸˣ (callers handle zero
    singular values themselves; they are refused here); a₀ ≥ 0 initial strength; τ > 0 time constant in epochs
    (an array too, e.g. one per learning rate of a sweep); depth = L ≥ 1 number of weight matrices.

    Returns a float64 array of the broadcast shape of (t, s, a0, tau).

    References: Saxe, McClelland & Ganguli, arXiv:1312.6120 (depth-2 solution; deeper networks);
    PNAS 116:11537 (2019).
    """
    t = times("t", t)
    s, a0 = _mode_args(s, a0)
    tau = nonnegative_array("tau", tau, strict=True)
    depth = integer("depth", depth, minimum=1)
    t, s, a0, tau = broadcast(t=t, s=s, a0=a0, tau=tau)
    if depth == 1:
        with np.errstate(invalid="ignore"):
            out = np.where(a0 == s, s, s + (a0 - s) * np.exp(-t / tau))
    elif depth == 2:
        with np.errstate(invalid="ignore"):
            out = np.where(a0 == 0, 0.0, _depth2(2.0 * s * t / tau, s, a0))
    else:
        out = np.where(a0 == 0, 0.0, s)
        todo = np.isfinite(t) & (a0 != s) & (a0 > 0) & (t > 0)
        if todo.any():
            T = t[todo] / tau[todo] * s[todo] ** (2.0 - 2.0 / depth)
            out[todo] = _deep(T, s[todo], a0[todo], depth)
    return np.where(t == 0, a0, out)


def mode_strength_discrete(n_steps: int, s: ArrayLike, a0: ArrayLike, eta: float, depth: int = 2) -> np.ndarray:
    r"""Exact balanced, decoupled SGD orbit a_k = u_k^L of each mode, k = 0 … ``n_steps`` (one step per epoch).

    Map::

        u_{k+1} = u_k + η u_k^{L−1} (s − u_k^L),    a_k = u_k^L,    u₀ = a₀^{1/L}

    Derivation (depth 2; deeper nets alike). Take whitened inputs (Σˣˣ = I), Σʸˣ = U diag(s) Vᵀ and the
    balanced, aligned weights W1 = R diag(u) Vᵀ, W2 = U diag(u) Rᵀ with orthonormal R (N_h × r). Then
    W_tot = U diag(u²) Vᵀ and one SGD step on ½‖Y − X W_totᵀ‖²_F with rate η changes

        W1 ← W1 + η W2ᵀ (Σʸˣ − W_tot Σˣˣ) = R diag(u + η u (s − u²)) Vᵀ,
        W2 ← W2 + η (Σʸˣ − W_tot Σˣˣ) W1ᵀ = U diag(u + η u (s − u²)) Rᵀ,

    so the weights stay balanced and aligned and each gain obeys u ← u + η u (s − u²) exactly, with no
    O(η²) remainder. For depth L, W_l = R_l diag(u) R_{l−1}ᵀ (R_0 = V, R_L = U) gives u ← u + η u^{L−1}(s − u^L).
    Its continuous-time limit (η → 0, step k ↔ t = k epochs, τ = 1/η) is :func:`mode_strength`; the orbit lags
    it by O(1) epochs (see :func:`theory.stability.time_to_learn`).

    Glossary: n_steps ≥ 0 number of SGD updates (epochs); s > 0 singular value of Σʸˣ; a₀ ≥ 0 initial strength;
    η > 0 per-epoch rate, η = 2·lr/(P·N_out) for torch's mean MSELoss; depth = L ≥ 1.

    Returns an array of shape ``(n_steps + 1, *broadcast(s, a0).shape)``; row k holds a after k updates, row 0 = a₀.
    Raises :class:`theory.OrbitDivergenceError` (a ``ValueError``) if an orbit diverges (non-finite or
    ``abs(a) > ORBIT_ESCAPE_FACTOR·max(s, a₀)``): η is then beyond the stable range of :mod:`theory.stability`.

    References: Saxe, McClelland & Ganguli, arXiv:1312.6120 (the decoupled learning dynamics); PNAS 116:11537.
    """
    n_steps = integer("n_steps", n_steps, minimum=0)
    s, a0 = _mode_args(s, a0)
    eta = positive("eta", eta)
    depth = integer("depth", depth, minimum=1)
    s, a0 = broadcast(s=s, a0=a0)
    out = np.empty((n_steps + 1, *s.shape))
    u = a0 ** (1.0 / depth)
    out[0] = a0
    limit = ORBIT_ESCAPE_FACTOR * np.maximum(s, a0)
    for k in range(1, n_steps + 1):
        with np.errstate(over="ignore", invalid="ignore"):
            u = u + eta * u ** (depth - 1) * (s - u**depth)
            a = u**depth
        bad = ~np.isfinite(a) | (np.abs(a) > limit)
        if bad.any():
            _raise_divergence(k, eta, s[bad].flat[0], depth)
        out[k] = a
    return out


def _raise_divergence(k: int, eta: float, s: float, depth: int) -> None:
    from .stability import escape_eta, max_stable_eta

    bound = f"the fixed point a = s is stable only for eta < 2/(L·s^(2−2/L)) = {max_stable_eta(s, depth):.6g}"
    if depth == 2:
        bound += f", and orbits escape for eta > 2/s = {escape_eta(s):.6g}"
    raise OrbitDivergenceError(
        f"eta is beyond the stable range: the SGD orbit of the mode with s={s!r} diverged at step {k} "
        f"with {eta=}, {depth=}; {bound} (theory.stability.max_stable_lr / escape_lr give the learning rates)"
    )
