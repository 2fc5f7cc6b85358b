r"""Learning-rate bounds of the discrete (SGD) mode map and the time a mode needs to be learned.

The balanced, decoupled SGD map of one mode (see :func:`theory.modes.mode_strength_discrete`) is

    g(u) = u + η u^{L−1} (s − u^L),      a = u^L,

with the learned fixed point u* = s^{1/L}. Glossary: s > 0 singular value of Σʸˣ (``s_max`` the largest one,
which is the first to go unstable); η the per-epoch rate, η = 2·lr/(P·N_out) for torch's mean MSELoss and
η = 2·lr for the sum (:mod:`theory.correlations`); τ = 1/η in epochs; L = ``depth`` the number of weight
matrices; P = ``n_samples``; N_out = ``n_out``.

References: Saxe, McClelland & Ganguli, arXiv:1312.6120 (2014); PNAS 116:11537 (2019).
"""
from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from ._validate import broadcast, choice, integer, positive
from .correlations import learning_rate_to_eta
from .modes import _mode_args, _scaled_elapsed

__all__ = [
    "max_stable_eta",
    "max_stable_lr",
    "escape_eta",
    "escape_lr",
    "time_to_learn",
    "ESCAPE_ETA_S",
    "DISCRETE_STEP_CAP",
]

# η·s beyond which the depth-2 orbit escapes to infinity (derivation in escape_eta).
ESCAPE_ETA_S = 2.0

# time_to_learn(method="discrete") iterates at most this many SGD steps and reports np.inf beyond: ~1 s of
# vectorised numpy, and far more epochs than any torch run this toolkit models.
DISCRETE_STEP_CAP = 1_000_000


def _lr_per_eta(n_samples, n_out, reduction: str) -> float:
    """lr per unit η under the correlations convention: P·N_out/2 (mean) or 1/2 (sum)."""
    return 1.0 / learning_rate_to_eta(1.0, n_samples, n_out, reduction)


def max_stable_eta(s_max: float, depth: int = 2) -> float:
    r"""Largest η at which the learned fixed point a = s_max of the discrete map is linearly stable.

    Derivation: g(u) = u + η u^{L−1}(s − u^L) has g'(u) = 1 + η[(L−1)u^{L−2}(s − u^L) − L u^{2L−2}]; at
    u* = s^{1/L} the first bracket vanishes, so g'(u*) = 1 − L η s^{2−2/L}. Linear stability ``abs(g'(u*)) < 1`` holds
    iff 0 < L η s^{2−2/L} < 2, i.e.

        η < η_max = 2 / (L s^{2−2/L}).

    Below η_max/2 the approach is monotone (g' > 0), between η_max/2 and η_max it oscillates around s and
    converges; above η_max the fixed point repels (period doubling, see :func:`escape_eta`). Every mode with
    s ≤ s_max is then stable too. Units: η per epoch. Glossary in the module docstring.
    """
    s_max = positive("s_max", s_max)
    depth = integer("depth", depth, minimum=1)
    return 2.0 / (depth * s_max ** (2.0 - 2.0 / depth))


def max_stable_lr(s_max: float, n_samples: int, n_out: int, depth: int = 2, reduction: str = "mean") -> float:
    r"""Largest torch SGD learning rate at which the learned mode a = s_max is linearly stable.

    Equation: L η s^{2−2/L} < 2 (derivative of the map at its fixed point, :func:`max_stable_eta`), converted
    with η = 2·lr/(P·N_out) (mean) or η = 2·lr (sum)::

        lr_max = P·N_out / (L s_max^{2−2/L})      (reduction='mean')
        lr_max = 1 / (L s_max^{2−2/L})            (reduction='sum')

    The tutorial (s_max = 157.7, P = 8, N_out = 10000) gives lr_max ≈ 253.6 at depth 2 and ≈ 31.3 at depth 3,
    so its lr = 100 (η s_max ≈ 0.39) is safely stable. Learning rates in torch's units (per epoch update).
    Glossary in the module docstring. Reference: Saxe et al. arXiv:1312.6120.
    """
    return max_stable_eta(s_max, depth) * _lr_per_eta(n_samples, n_out, choice("reduction", reduction, ("mean", "sum")))


def escape_eta(s_max: float) -> float:
    r"""η beyond which the depth-2 orbit of the mode s_max escapes to infinity: η·s_max > 2.

    Derivation: with r = 1 + ηs and u = x·√(r/η) the depth-2 map u ↦ u + η u (s − u²) becomes the cubic map
    x ↦ r (x − x³). A point escapes (``abs(x)`` grows) iff ``abs(r(x − x³)) > abs(x)`` ⇔ x² > x_e² = 1 + 1/r, so the
    orbit is bounded iff [−x_e, x_e] is invariant. On [0, x_e] the largest image is max(r·2/(3√3), x_e) (at the
    critical point x = 1/√3 and at x_e), so invariance holds iff 4r²/27 ≤ 1 + 1/r ⇔ (r − 3)(2r + 3)² ≤ 0
    ⇔ r ≤ 3 ⇔ η s ≤ 2. Then a = u² ≤ (r/η) x_e² = (2 + η s)/η for all k. Regimes of a mode s from small a₀:

    * η s < 1/2: monotone convergence to s; 1/2 < η s < 1 (= :func:`max_stable_eta`): damped oscillation;
    * 1 < η s ≤ 2: the fixed point repels; a oscillates around s in a period-2 cycle (e.g. η s = 1.2) that
      period-doubles into chaos as η grows; beyond η s = 3√3/2 − 1 ≈ 1.6 the gain u also changes sign
      (the weights flip) while a = u² stays bounded. The loss never settles;
    * η s > 2: the orbit escapes (a → ∞) after a transient of a few to a few hundred steps.
    """
    s_max = positive("s_max", s_max)
    return ESCAPE_ETA_S / s_max


def escape_lr(s_max: float, n_samples: int, n_out: int, reduction: str = "mean") -> float:
    r"""Depth-2 learning rate past which the SGD orbit of the top mode escapes to infinity.

    Equation: η s_max ≤ 2 (:func:`escape_eta`) ⇔ lr ≤ P·N_out/s_max (mean) or lr ≤ 1/s_max (sum), exactly
    twice :func:`max_stable_lr` at depth 2. Between the two bounds the mode neither converges nor escapes: it
    oscillates around s (period doubling, then chaos). The tutorial (s_max = 157.7, P = 8, N_out = 10000)
    gives ≈ 507.3 against lr_max ≈ 253.6. Glossary in the module docstring.
    """
    return escape_eta(s_max) * _lr_per_eta(n_samples, n_out, choice("reduction", reduction, ("mean", "sum")))


def _fraction(fraction) -> float:
    f = positive("fraction", fraction)
    if not f < 1.0:
        raise ValueError(f"fraction must be strictly between 0 and 1, got {fraction=}")
    return f


def _rate(tau, eta) -> tuple[float, float]:
    if (tau is None) == (eta is None):
        raise ValueError(f"give exactly one of tau (epochs) or eta (per epoch, tau = 1/eta), got {tau=}, {eta=}")
    if tau is not None:
        tau = positive("tau", tau)
        return tau, 1.0 / tau
    eta = positive("eta", eta)
    return 1.0 / eta, eta


def _continuous_time(f: float, s: np.ndarray, a0: np.ndarray, tau: float, depth: int) -> np.ndarray:
    out = np.zeros_like(s)
    todo = a0 < f * s
    s, a0 = s[todo], a0[todo]
    with np.errstate(divide="ignore"):
        if depth == 1:
            t = tau * (np.log(s - a0) - np.log(s * (1.0 - f)))
        elif depth == 2:
            t = tau / (2.0 * s) * (np.log(f / (1.0 - f)) + np.log(s - a0) - np.log(a0))
        else:
            psi0 = np.log(a0 / s) / depth
            psi = np.full_like(s, math.log(f) / depth)
            t = tau * s ** (-(2.0 - 2.0 / depth)) * _scaled_elapsed(psi, psi0, depth)
    if depth >= 2:
        t = np.where(a0 == 0, np.inf, t)
    out[todo] = t
    return out


def _discrete_time(f: float, s: np.ndarray, a0: np.ndarray, eta: float, depth: int) -> np.ndarray:
    out = np.full(s.shape, np.inf)
    out[a0 >= f * s] = 0.0
    live = np.flatnonzero((a0 < f * s) & (a0 > 0 if depth >= 2 else True))
    u = a0.ravel()[live] ** (1.0 / depth)
    target = f * s.ravel()[live]
    sl = s.ravel()[live]
    flat = out.reshape(-1)
    k = 0
    # Below f·s the orbit increases monotonically (the map's factor 1 + η u^{L−2}(s − u^L) exceeds 1), so the
    # first crossing is well defined whatever happens after it.
    while live.size and k < DISCRETE_STEP_CAP:
        k += 1
        u = u + eta * u ** (depth - 1) * (sl - u**depth)
        done = u**depth >= target
        if done.any():
            flat[live[done]] = float(k)
            live, u, target, sl = live[~done], u[~done], target[~done], sl[~done]
    return out


def time_to_learn(fraction: float, s: ArrayLike, a0: ArrayLike, tau: float | None = None, eta: float | None = None,
                  depth: int = 2, method: str = "continuous") -> np.ndarray:
    r"""Epochs until a balanced, decoupled mode first reaches ``fraction``·s (fraction = 0.5: half-learning time).

    Continuous (gradient flow, exact inverse of :func:`theory.modes.mode_strength`), f = ``fraction``::

        depth 1:  t = τ ln((s − a₀) / (s (1 − f)))
        depth 2:  t = (τ / 2s) ln( (f / (1 − f)) · (s/a₀ − 1) )
        depth L:  t = τ s^{−(2−2/L)} [H(f^{1/L}) − H((a₀/s)^{1/L})],
                  H(w) = −1/((L−2)w^{L−2}) − (1/L) Σ_j ω_j² ln(w − ω_j)   (ω_j the L-th roots of unity)

    Discrete (``method="discrete"``): the first integer k with a_k ≥ f·s for the exact SGD map
    u_{k+1} = u_k + η u_k^{L−1}(s − u_k^L), returned as a float; ``np.inf`` if not reached within
    ``DISCRETE_STEP_CAP`` steps. The crossing is well defined even for η beyond the stable range (below f·s the
    orbit rises monotonically). No interpolation: the answer is an epoch count.

    A mode already at or above f·s gives 0; a₀ = 0 (depth ≥ 2) never grows and gives ``np.inf``.

    Glossary: 0 < f < 1; s > 0 singular value of Σʸˣ; a₀ ≥ 0 initial strength; give exactly one of τ > 0
    (epochs) or η > 0 (per epoch), τ = 1/η; depth = L ≥ 1. Broadcasts over ``s`` and ``a0``; returns a float64
    array of epochs. At depth 2 the discrete orbit lags the continuous one by
    δ = ln(f s/a₀)/4 + ln(1 − f)/2 epochs as η → 0 (modified equation du/dt = η φ(u)(1 − η φ'(u)/2),
    φ = u(s − u²)): O(1) epochs against times O(1/η), i.e. a relative gap O(η s). The tutorial (s = 157.7,
    τ = 400, a₀ ≈ 2e-25) reaches s/2 at t ≈ 78.5 (continuous) and k = 93 (discrete).

    References: Saxe, McClelland & Ganguli, arXiv:1312.6120 (depth-2 learning time); PNAS 116:11537 (2019).
    """
    f = _fraction(fraction)
    s, a0 = _mode_args(s, a0)
    depth = integer("depth", depth, minimum=1)
    choice("method", method, ("continuous", "discrete"))
    tau, eta = _rate(tau, eta)
    s, a0 = broadcast(s=s, a0=a0)
    if method == "continuous":
        return _continuous_time(f, s, a0, tau, depth)
    return _discrete_time(f, s, a0, eta, depth)
