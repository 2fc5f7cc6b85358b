r"""The unbalanced scalar gain chain of a deep linear mode, iterated as its exact discrete SGD map, with its
plateaus crossed by the chain's solvable flow (:func:`chain_map_steps`).

A mode of a depth-L linear network whose layers act on it through scalar gains c_1 … c_L (strength ∏c) follows,
under full-batch SGD with per-epoch rate η towards the target strength s::

    c_i ← c_i + η (s − ∏_j c_j) ∏_{j≠i} c_j

With equal gains this is the balanced map of :func:`theory.modes.mode_strength_discrete`; unequal gains carry
the imbalance a random init leaves (its flow conserves c_i² − c_j²). :mod:`theory.deep_init` hands each mode to
this chain after its linear escape.

Glossary: c gains (strength^{1/L} units), s target strength, η per-epoch rate (η = 2·lr/(P·N_out)), t steps
(epochs), u the common shift of every c² along the flow, P = ∏c.

References: Saxe, McClelland & Ganguli, arXiv:1312.6120 (2014) (deep mode dynamics); Arora, Cohen & Hazan,
ICML 2018 (the conserved c_i² − c_j²).
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._validate import as_float_array, integer, positive
from .stability import DISCRETE_STEP_CAP

__all__ = ["chain_map_steps", "FLOW_JUMP_RATE", "CONVERGED_RTOL"]


def chain_map_steps(c0: ArrayLike, s: ArrayLike, eta: float, thresholds: ArrayLike,
                    max_steps: int = DISCRETE_STEP_CAP) -> np.ndarray:
    r"""First time (steps) at which the unbalanced chain's strength ∏c reaches each threshold (∞: never).

    Map (exact discrete SGD of a chain of scalar gains, one per layer)::

        c_i ← c_i + η (s − ∏_j c_j) ∏_{j≠i} c_j

    **Plateaus in one jump.** Where every gain changes by at most :data:`FLOW_JUMP_RATE` (relative) per step and
    the map's stiffness ηP²Σ_i 1/c_i² is below it too, the map is its flow to that accuracy, and the flow is
    solvable: every c_i² moves by the same u (d c_i²/dt = 2η(s − P)P, P = ∏c_j), so P(u) = ∏_j √(c_j² + u) and
    the time is the 1-d integral ``t = ∫ du / (2η (s − P(u)) P(u))`` (Gauss–Legendre; along a jump P at most
    doubles and s − P at most halves, so the integrand varies by ≤ 4×). Jumps end at the next threshold, when P
    has doubled or s − P has halved; the map takes over again wherever a step changes a gain by more, or near s
    where the stiffness is larger (strong modes at a large rate).
    So a small deep init's plateau of millions of steps costs a few dozen jumps, and the time it adds differs
    from the map's by ≲ :data:`FLOW_JUMP_RATE` relative (the map–flow gap per step is ≈ half the relative change).

    Glossary: ``c0`` (n, L) initial gains > 0; ``s`` (n,) target strengths; η per-epoch rate; ``thresholds``
    (n, m) strengths to reach (one above s, or not reached by the time the chain is within
    :data:`CONVERGED_RTOL` of s, is never reached: ∞); ``max_steps`` cap on map steps plus jumps. Returns (n, m)
    float times in steps (integers where no jump was taken).

    Raises ``ValueError`` when a chain leaves the finite numbers (η too large for its gains: the map diverges) or
    has a threshold left at the cap (it would be reported as never reached).
    Reference: Saxe et al. arXiv:1312.6120 (deep linear mode dynamics).
    """
    c = as_float_array("c0", c0, ndim=2).copy()
    if (c <= 0).any():
        raise ValueError(f"c0 must be > 0 everywhere, got min {c.min()!r}")
    n = c.shape[0]
    s = np.broadcast_to(as_float_array("s", s), (n,)).astype(float)
    eta = positive("eta", eta)
    th = as_float_array("thresholds", thresholds, ndim=2)
    if th.shape[0] != n:
        raise ValueError(f"thresholds must have one row per chain ({n}), got shape {th.shape}")
    max_steps = integer("max_steps", max_steps)
    out = np.full(th.shape, np.inf)
    th = np.where(th <= s[:, None], th, np.inf)  # above s: never reached (no overshoot is followed)
    idx = np.arange(n)  # rows of the chains still running; compacted every _COMPACT steps
    cc, ss, tt, now = c, s, th, np.zeros(n)
    for k in range(max_steps + 1):
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging chain is refused just below
            prod = np.prod(cc, axis=1)
        if not np.isfinite(prod).all():
            bad = idx[~np.isfinite(prod)]
            raise ValueError(f"the chain map diverged for {bad.size} chain(s) (first: c0 = {c[bad[0]]!r}, s = "
                             f"{s[bad[0]]!r}, eta = {eta!r}): η is too large for these gains")
        new = (prod[:, None] >= tt) & np.isinf(out[idx])
        if new.any():
            rows, cols = np.nonzero(new)
            out[idx[rows], cols] = now[rows]
        if k % _COMPACT == 0:
            settled = np.abs(ss - prod) <= CONVERGED_RTOL * ss  # at its fixed point: nothing more is reached
            pending = (np.isinf(out[idx]) & np.isfinite(tt)).any(axis=1) & ~settled
            if not pending.all():
                idx, cc, ss, tt, prod, now = (idx[pending], cc[pending], ss[pending], tt[pending], prod[pending],
                                              now[pending])
            if idx.size == 0:
                break
        if k == max_steps:
            raise ValueError(f"{idx.size} chain(s) still below a threshold after max_steps={max_steps} steps and "
                             f"jumps (first: c0 = {c[idx[0]]!r}, s = {s[idx[0]]!r}, eta = {eta!r})")
        c2 = cc**2
        # the largest relative change of a gain in one step, and the map's stiffness η·∂(ΔP)/∂P ≈ ηP²Σ1/c_i²
        # (the relative map–flow gap per step near s, where the change itself vanishes): both small → the flow
        rate = eta * prod * np.maximum(np.abs(ss - prod) / c2.min(axis=1), prod * np.sum(1.0 / c2, axis=1))
        jump = (prod > 0) & (rate <= FLOW_JUMP_RATE) & (prod < ss * (1.0 - CONVERGED_RTOL))
        # ∏_{j≠i} c_j from prefix and suffix products (no division by a tiny gain)
        pre = np.cumprod(np.column_stack([np.ones(idx.size), cc[:, :-1]]), axis=1)
        suf = np.cumprod(np.column_stack([np.ones(idx.size), cc[:, :0:-1]]), axis=1)[:, ::-1]
        with np.errstate(over="ignore", invalid="ignore"):
            cc = cc + eta * (ss - prod)[:, None] * pre * suf
        now = now + 1.0
        if jump.any():
            nxt = np.where(np.isinf(out[idx[jump]]), tt[jump], np.inf).min(axis=1)
            goal = np.minimum(np.minimum(2.0 * prod[jump], 0.5 * (ss[jump] + prod[jump])), nxt)
            u = _flow_shift(c2[jump], goal)
            cc[jump] = np.sqrt(c2[jump] + u[:, None])
            now[jump] = now[jump] - 1.0 + _flow_time(c2[jump], u, ss[jump], eta)
    return out


def _flow_shift(c2: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """The least u ≥ 0 with ∏_j (c_j² + u) ≥ goal² per row: Newton on the concave increasing
    f(u) = Σ_j ln(c_j² + u) − 2 ln goal from u = 0 (f(0) < 0) never passes the root and converges quadratically;
    the last ulps are then added until the product, computed exactly as the map's loop computes it (∏ of the new
    gains √(c_j² + u)), reaches the goal: the threshold test then sees it reached (were the landing test
    ∏(c_j² + u) ≥ goal², rounding could leave ∏√(·) an ulp short and the chain would jump to the same goal
    forever)."""
    u, lg = np.zeros(c2.shape[0]), 2.0 * np.log(goal)
    for _ in range(_NEWTON):
        x = c2 + u[:, None]
        u = np.maximum(u - (np.sum(np.log(x), axis=1) - lg) / np.sum(1.0 / x, axis=1), u)
    step = np.spacing(np.max(c2, axis=1) + u)  # an ulp of the largest c² + u (a rise of u by its own ulps can
    for _ in range(_NEWTON):                    # vanish in every c_j² + u when u ≪ c², as near s), doubled
        short = np.prod(np.sqrt(c2 + u[:, None]), axis=1) < goal
        if not short.any():
            break
        u[short] += step[short]
        step *= 2.0
    return u


def _flow_time(c2: np.ndarray, u: np.ndarray, s: np.ndarray, eta: float) -> np.ndarray:
    """∫_0^u dv / (2η (s − P(v)) P(v)), P(v) = ∏_j √(c_j² + v): the chain flow's time to shift every c² by u."""
    x, w = np.polynomial.legendre.leggauss(_GAUSS)
    v = 0.5 * u[:, None] * (x + 1.0)  # (n, q)
    P = np.sqrt(np.prod(c2[:, None, :] + v[..., None], axis=2))
    return 0.5 * u * np.sum(w / (2.0 * eta * (s[:, None] - P) * P), axis=1)


# The chain map is followed by its flow where no gain changes by more than this fraction per step: the time the
# flow adds then differs from the map's by ≲ this fraction (chain_map_steps), far below the model's few per cent.
FLOW_JUMP_RATE = 1e-3
# Newton steps for a jump's end (quadratic convergence from f(0) ≥ −ln 4 − 2 ln 2: rounding in ≲ 8) and
# Gauss–Legendre nodes for its time (P(v) varies by at most 2× along a jump, a smooth positive integrand: 16 nodes
# are exact to rounding).
_NEWTON = 20
_GAUSS = 16


# A chain within this relative distance of s has converged (the map's fixed point is approached geometrically or
# not at all): the thresholds it has not reached by then are never reached (a threshold equal to s included).
CONVERGED_RTOL = 1e-9
# chain_map_steps drops finished chains every this many steps (cheaper than compacting every step)
_COMPACT = 64
