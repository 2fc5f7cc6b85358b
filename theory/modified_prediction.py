r"""SGD's modified equation as a prediction: an initial layer of exact SGD steps, then the flow, with an error estimate.

:mod:`theory.modified_equation` gives the flow whose time-η map is the SGD step to O(η⁴) (order 3, its linear tail
summed). :func:`modified_prediction` turns it into a prediction of SGD's iterates from any depth-2 init:

* **Estimate.** The orders 1, 2 and 3 are integrated over the same times; with g_ab = max |M̄_a − M̄_b| / s_max and
  ρ = g₂₃/g₁₂ the rate at which the terms shrink, the estimate is :data:`ESTIMATE_FACTOR` · g₂₃ ρ/(1 − ρ), the
  remainder of a geometric series, calibrated against the exact map.
* **Initial layer.** A large init's own output is unlearned in a transient of a few steps that changes Q by O(1) of
  itself per step (at half the stable lr SGD's contraction 1 − ηκ starts near 0): no series in η follows it. The
  exact map (:func:`theory.state.sgd_step`) takes those k₀ steps, and the flow starts where its terms shrink again
  (:data:`LOCAL_RATIO_MAX`); the layer is extended while that halves the estimate.
* **Refusal.** Above :data:`MAX_ESTIMATE` of s_max the prediction is refused, never drawn.

Glossary: Q (C+R, N_h) the reduced weight stack, M̄ its mode matrix, S̄ the reduced target; η per-epoch rate
(η = 2·lr/(P·N_out)), h = t/τ = ηt; k₀ the exact steps taken; s_max the largest singular value of S̄. Reference:
Hairer, Lubich & Wanner, *Geometric Numerical Integration*, §IX.1 (modified equations); Hairer, Nørsett & Wanner,
*Solving ODEs I*, §II.4 (error estimates from embedded orders).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .modified_equation import MODIFIED_RTOL, _integrate, _terms
from .state import sgd_step

__all__ = ["modified_prediction", "ModifiedPrediction", "ESTIMATE_FACTOR", "MAX_ESTIMATE", "START_ESTIMATE",
           "LAYER_ESTIMATE", "MAX_EXACT_STEPS", "LOCAL_RATIO_MAX",
           "PROBE_EPOCHS"]

#: The error estimate of :func:`modified_prediction` is this multiple of the geometric-series remainder
#: g₂₃·ρ/(1 − ρ), ρ = g₂₃/g₁₂ (g_ab = max |M̄_a − M̄_b|). Calibrated against the exact SGD map on the tutorial's
#: λ-balanced inits (9 runs: γ 1e-6 … 100, lr 0.3 … 100, 300–1000 epochs): the measured error is 0.67–0.77 of the
#: plain remainder where the terms shrink fast (ρ ≈ 0.3) and 1.1–1.7× it where a large init's transient makes them
#: shrink slowly (ρ 0.37–0.59); 2 keeps the estimate above the measured error on all 9 (on small drawn problems it
#: can overestimate ~5×: an estimate, not a bound).
ESTIMATE_FACTOR = 2.0
#: Largest error estimate (units of s_max) a prediction is given for; beyond it (a lazy init's own output unlearned
#: in O(1) steps, where SGD's contraction 1 − ηκ is near 0 and no truncated series follows it) the form refuses.
MAX_ESTIMATE = 0.05
#: An estimate (units of s_max) at or below which :func:`modified_prediction` starts the flow without more exact
#: steps: the 0.01 of s the closed forms are asked for at the tutorial's lr; a small init at lr = 100 (η s₁ = 0.39),
#: whose error 2.8e-3 is secular (set over its escape, not by a transient), stays just below it and costs nothing.
START_ESTIMATE = 0.01
#: After a transient (an initial layer of k ≥ 1 exact steps) the layer is extended until the estimate is at most
#: this: a tenth of START_ESTIMATE, since after a transient the error is 0.2–2.1× the estimate (tutorial, 9 runs
#: with k₀ ≥ 1: γ 10–100, λ-balanced, random and output-lazy inits, first 400 epochs), and each extension costs only
#: a few exact steps.
LAYER_ESTIMATE = 1e-3
#: Most SGD steps :func:`modified_prediction` takes by the exact map before the flow (its initial layer): a large
#: init's transient at half the stable lr needs 1–10 (tutorial, γ = 10 and 30); the cost is a few ms per step.
MAX_EXACT_STEPS = 64
#: The flow starts only where its terms shrink at least this fast: with ratio ρ the dropped geometric remainder is
#: ρ/(1 − ρ) of the last kept term, as large as it at ρ = ½ (beyond, the truncation is no approximation there).
LOCAL_RATIO_MAX = 0.5
#: Whole epochs after the layer on which each candidate k₀ is judged (its estimate over them): a transient's error
#: peaks within ~15 epochs of the layer on the tutorial (γ 10–100), an output-lazy init's by epoch ~65; the full run
#: is integrated once, for the chosen k₀ (a 2e5-epoch lazy run costs ~20–45 s per order, so not once per candidate).
PROBE_EPOCHS = 256


class ModifiedPrediction(NamedTuple):
    """:func:`modified_prediction`'s answer: ``Q`` at the requested τ-times, ``estimate`` of M̄'s error (units of
    s_max), ``exact_steps`` k₀, the SGD steps taken by the exact map before the flow starts (the initial layer)."""

    Q: np.ndarray
    estimate: float
    exact_steps: int


def _orders(Q0: np.ndarray, target: np.ndarray, eta: float, h: np.ndarray, scale: float) -> tuple[np.ndarray, float]:
    """Order 3's Q at τ-times h (from Q0 at h = 0) and the error estimate from orders 1–3 (inf where ρ ≥ 1)."""
    C = target.shape[1]
    q3, solver = _integrate(Q0, target, eta, h, 3, True, "auto")  # orders 1, 2 on the integrator that order 3 needed
    qs = {order: _integrate(Q0, target, eta, h, order, True, solver)[0] for order in (1, 2)}
    qs[3] = q3
    ms = {order: q[:, C:] @ np.swapaxes(q[:, :C], -1, -2) for order, q in qs.items()}
    g12 = float(np.abs(ms[1] - ms[2]).max(initial=0.0)) / scale
    g23 = float(np.abs(ms[2] - ms[3]).max(initial=0.0)) / scale
    floor = 100.0 * MODIFIED_RTOL  # below this the orders differ by integration error only
    rho = g23 / g12 if g12 > floor else 0.0
    if g23 > floor and rho >= 1.0:
        raise ValueError(f"SGD's modified equation does not converge here: the order-3 term ({g23:.3g} of s_max) is "
                         f"not smaller than the order-2 term ({g12:.3g})")
    return qs[3], max(ESTIMATE_FACTOR * g23 * rho / (1.0 - rho), floor)


def _local_ratio(Q: np.ndarray, target: np.ndarray, eta: float) -> float:
    """How fast the modified equation's terms shrink at Q: max(|η²f₂|/|ηf₁|, |η³f₃|/|η²f₂|) (max-norms; 0 at a
    fixed point)."""
    norms = [eta ** n * float(np.abs(f).max(initial=0.0)) for n, f in enumerate(_terms(Q, target, 3))]
    return max((b / a if a > 0 else 0.0) for a, b in zip(norms[1:], norms[2:]))


def _whole_steps(h: np.ndarray, eta: float) -> np.ndarray:
    """h/η rounded where it is a whole number of steps (to 1e-9 relative), −1 elsewhere."""
    j = np.rint(h / eta)
    return np.where(np.abs(h / eta - j) <= 1e-9 * np.maximum(1.0, j), j, -1.0).astype(np.int64)


def modified_prediction(Q0: np.ndarray, target: np.ndarray, eta: float, h: np.ndarray, s_max: float,
                        max_exact_steps: int = MAX_EXACT_STEPS) -> ModifiedPrediction:
    r"""SGD's Q at τ-times ``h`` (finite, ≥ 0) from the order-3 modified equation with its tail
    (:func:`theory.modified_equation.modified_flow`)
    after an initial layer of k₀ exact SGD steps, and an error estimate of its M̄ (units of s_max).

    **Estimate.** From the orders 1, 2 and 3 at the same times: with g_ab = max |M̄_a − M̄_b| / s_max and
    ρ = g₂₃/g₁₂ the rate at which the terms shrink, :data:`ESTIMATE_FACTOR` · g₂₃ ρ/(1 − ρ) (the remainder of a
    geometric series, calibrated).

    **Initial layer.** A large init's own output is unlearned in a transient of a few steps whose per-step change
    is O(1) of itself (at half the stable lr SGD's contraction 1 − ηκ starts near 0): no series in η follows it, but
    the exact map Q ← Q + ηF(Q) (:func:`theory.state.sgd_step`) does, and after it the modified equation converges
    again. The layer first runs until the terms shrink at the flow's start point, max(|η²f₂|/|ηf₁|, |η³f₃|/|η²f₂|)
    ≤ :data:`LOCAL_RATIO_MAX` (tutorial: 0.29 for a small init at lr = 100, 0.87–0.92 at the first step of a large
    one, ≤ 0.50 after it); then k₀ is the first of k, k + 1, k + 2, k + 4, … ≤ ``max_exact_steps`` whose estimate
    is at most :data:`START_ESTIMATE` (k₀ = 0, judged on the whole run) or :data:`LAYER_ESTIMATE` (after a
    transient, judged on the :data:`PROBE_EPOCHS` whole epochs after the layer; the whole run is then integrated
    once, for k₀, unless its probe is already refused: the rest can only raise the estimate); the extension stops
    early where it no longer halves the estimate (a small init's error is secular, set over its long escape, which a
    few exact steps do not change), and the k₀ with the smallest estimate is kept. Measured on the tutorial
    (8-30-10000, λ-balanced, half the stable lr, first 400 epochs) with k₀ fixed by hand: γ = 10, lr 66.6, error
    0.046 (k₀ = 0) → 1.2e-3 (1) → 3.4e-4 (2); γ = 30, lr 7.51, refused (0) → 0.010 (1) → 6.7e-4 (3) → 2.1e-5 (10).
    Epochs before k₀ are SGD's iterates themselves, so they must be whole numbers of steps (a time inside the layer
    that is not caps k₀ below it).

    Raises ``ValueError`` where no k₀ gives an estimate within :data:`MAX_ESTIMATE` (the terms do not shrink,
    ρ ≥ 1, or the integration fails), or where the exact steps leave the finite numbers. Tested against the
    exact map and an independent torch loop (tests/test_theory_modified_equation.py).
    """
    h = np.asarray(h, dtype=np.float64)
    if h.size and not (np.isfinite(h).all() and (h >= 0).all()):
        raise ValueError("h must be finite τ-times ≥ 0 (the modified flow is integrated: ask for finite epochs)")
    if isinstance(max_exact_steps, bool) or not isinstance(max_exact_steps, (int, np.integer)) or max_exact_steps < 0:
        raise ValueError(f"max_exact_steps must be an integer ≥ 0 (0: no initial layer), got {max_exact_steps!r}")
    C = target.shape[1]
    scale = max(s_max, np.finfo(float).tiny)
    whole = _whole_steps(h, eta)
    fractional = h[whole < 0]
    k_cap = min(int(max_exact_steps), int(np.floor(fractional.min() / eta)) if fractional.size else 1 << 62,
                int(np.ceil(h.max(initial=0.0) / eta)))
    iterates: list[np.ndarray] = [Q0]
    best: tuple[int, float] | None = None
    why, last = "", np.inf

    def step_to(k: int) -> None:
        while len(iterates) <= k:
            Q = iterates[-1]
            layers, _ = sgd_step([Q[:C].T, Q[C:]], target, eta)
            nxt = np.vstack([layers[0].T, layers[1]])
            if not np.isfinite(nxt).all():
                raise ValueError(f"SGD's exact map leaves the finite numbers within {len(iterates)} steps: lr is "
                                 "above the stable bound here")
            iterates.append(nxt)

    start = 0  # the series must converge where the flow starts
    while start < k_cap and _local_ratio(iterates[start], target, eta) > LOCAL_RATIO_MAX:
        start += 1
        step_to(start)
    tries = [start] + [start + d for d in (1 << i for i in range(63)) if start + d <= k_cap]
    end = float(h.max(initial=0.0))
    found: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # k → (τ-times after the layer, order 3's Q there)
    for k in tries:
        # k = 0 is judged on the whole run; a layer's k on a dense probe of whole epochs after it, where a
        # transient's error lies (plus the requested times there), the whole run being integrated once, for k₀
        stop = end if k == 0 else min(end, (k + PROBE_EPOCHS) * eta)
        grid = h[(h >= k * eta) & (h <= stop)]
        if k:
            grid = np.union1d(grid, eta * np.arange(k, np.floor(stop / eta) + 1))
        step_to(k)
        try:
            q, est = _orders(iterates[k], target, eta, grid - k * eta, scale)
            found[k] = (grid, q)
        except ValueError as exc:
            why, est = str(exc), np.inf
        if best is None or est < best[1]:
            best = (k, est)
        if est <= (START_ESTIMATE if k == 0 else LAYER_ESTIMATE) or (np.isfinite(last) and est > 0.5 * last):
            break
        if k == 0 and not np.isfinite(est):  # no transient at the init (its terms shrink), yet no flow: a layer
            break                            # of exact steps cannot help (e.g. stiffness over the whole run)
        last = est
    assert best is not None
    k0, estimate = best
    out = np.empty((h.size, *Q0.shape))
    late = h >= k0 * eta
    if (~late).any():
        out[~late] = np.stack(iterates)[whole[~late]]
    if estimate <= MAX_ESTIMATE and late.any():  # (beyond it the whole run cannot lower the estimate: refused)
        grid, q = found[k0]
        if end <= grid[-1]:  # the judged window covers the run
            out[late] = q[np.searchsorted(grid, h[late])]
        else:
            try:
                out[late], full = _orders(iterates[k0], target, eta, h[late] - k0 * eta, scale)
                estimate = max(estimate, full)
            except ValueError as exc:
                why, estimate = str(exc), np.inf
    if not estimate <= MAX_ESTIMATE:
        detail = (f"estimated off by {estimate:.3g} of s_max at best, above MAX_ESTIMATE = {MAX_ESTIMATE}"
                  if np.isfinite(estimate) else why)
        capped = ""
        if fractional.size and fractional.min() / eta < max_exact_steps:
            capped = (f"; the epoch {fractional.min() / eta:.6g} is not a whole SGD step, and epochs inside the "
                      "initial layer must be (ask for whole epochs)")
        raise ValueError(f"SGD's modified equation does not follow SGD here ({detail}; after up to "
                         f"{len(iterates) - 1} exact SGD steps{capped}): e.g. a large init's "
                         "output unlearned over more steps than the initial layer takes, or an lr near the stable "
                         "bound; lower lr, or use theory.predictor(..., theory='exact')")
    return ModifiedPrediction(out, estimate, k0)
