r"""What a sweep run did, from what was measured: ``converged``, ``learning``, ``not_learned`` or ``diverged``.

A small error against a theory means nothing when nothing was learned: a run that stays at the saddle of a small
init (e.g. depth 3, γ = 1e-12: the loss stays at L₀ = mean Y² to 1e-14) agrees with every theory to rounding,
because every theory also predicts a = 0 there. So each run gets a status and the fraction of the reachable loss
decrease it achieved, and an error is read as *agreement* only for runs that learned something.

**Learned fraction** (per run, losses in nn.MSELoss's mean units, row k = after k updates)::

    f = (L₀ − L_T) / (L₀ − L_best),
    L_best(w) = (‖Y − Ŷ‖_F² + Σ_{i > w} σ_i(Ŷ)²) / (P·N_out),      Ŷ = X W*ᵀ, W* = argmin_W ‖Y − X Wᵀ‖_F

L_best is the least loss a network whose narrowest layer has w units can reach (Eckart–Young: a rank-w network
keeps the w strongest modes of the least-squares outputs Ŷ and loses the rest; for one-hot or whitened X the
σ_i(Ŷ) are the singular values s_i of Σʸˣ). w ≥ rank (or depth 1): the loss of the best linear fit. Equal to
:meth:`theory.Prediction.best_loss` (tested); computed from the data alone by
:func:`theory.curvature.reachable_losses`, beside the balanced best fit those widths reach.

**Rules** (in this order; thresholds below with their reasons):

* ``diverged``: the engine flagged the run (or its last loss is not finite);
* ``not_learned``: f < :data:`NOT_LEARNED_FRACTION` — the network is still at (or has gone back to) the saddle;
* ``converged``: f ≥ 1 − :data:`CONVERGED_TOL` and the loss has stopped moving: over the last
  :data:`STALL_WINDOW` of the epochs (at least :data:`STALL_MIN_EPOCHS` updates) ``max L − min L`` is below
  :data:`STALL_TOL` × (L₀ − L_best);
* ``learning``: otherwise — something was learned but the run has not settled: still descending (a plateau
  between stages, weak modes not yet learned) or, above the stable lr, oscillating around the learned state.

Glossary: L₀, L_T the loss before the first and after the last update; P samples; N_out output features; w the
narrowest hidden width (units); σ_i(Ŷ) descending; epochs = SGD updates.

**Stability warnings** (:func:`stability_warnings`): a grid point whose lr exceeds the learned-state stable bound
of its depth and width (:func:`theory.stable_lr`; for whitened X without bottleneck P·N_out/(L s₁^{2−2/L}),
:func:`theory.max_stable_lr`) can never converge; with :func:`theory.divergence_lr` (computed for the depths in
``divergence_depths``) the warning says whether to expect divergence or a bounded oscillation.

References: Saxe, McClelland & Ganguli, arXiv:1312.6120 (saddles, learned state, stable lr); Eckart & Young,
Psychometrika 1:211 (1936) (best rank-w fit).
"""
from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

import theory
from theory.curvature import fit_spectrum, reachable_losses  # the least loss the widths allow

__all__ = ["STATUSES", "LEARNED", "Classification", "classify", "fit_spectrum", "reachable_losses", "agreement",
           "stability_warnings", "NOT_LEARNED_FRACTION", "CONVERGED_TOL", "STALL_TOL", "STALL_WINDOW",
           "STALL_MIN_EPOCHS", "NOTHING_TO_LEARN"]

STATUSES = ("converged", "learning", "not_learned", "diverged")
#: The statuses whose theory errors may be read as agreement (something was learned).
LEARNED = ("converged", "learning")

#: Below 1% of the reachable decrease the run is at the saddle: a learned top mode alone removes s₁²/Σs² ≥ 1/r of
#: it (30% on the tutorial's tree, ≥ 1% for any rank r ≤ 100), while a small init drifts by ~a₀² (≤ 1e-10 at γ ≤ 1e-3).
NOT_LEARNED_FRACTION = 0.01
#: Converged = within 1e-4 of the reachable decrease: a mode of share q = s²/Σs² then lies within √(1e-4/q) of its s
#: (4% for the tree's weakest mode, q = 0.06), far above float64 (1e-16) and float32 (1e-7) loss rounding.
CONVERGED_TOL = 1e-4
#: The loss has stopped moving when it changed (max − min) by less than this fraction of the reachable decrease over
#: the last window: the same scale as CONVERGED_TOL, so a run merely passing through the tolerance band, or
#: oscillating around the learned state (lr above the stable bound), is not called converged.
STALL_TOL = 1e-4
#: The window is this fraction of the run's epochs (the last tenth) ...
STALL_WINDOW = 0.1
#: ... and at least this many updates, so that a period-2 oscillation (the first orbit past the stable lr) is seen.
STALL_MIN_EPOCHS = 2
#: A reachable decrease below this fraction of L₀ is float64 rounding of the loss sums: the init already fits
#: as well as the widths allow, so the learned fraction is 1.
NOTHING_TO_LEARN = 1e-12


@dataclass(frozen=True)
class Classification:
    """``status`` (one of :data:`STATUSES`), ``learned_fraction`` f (NaN if diverged) and ``drift``: max − min of the
    loss over the last window / (L₀ − L_best) (NaN if diverged)."""

    status: str
    learned_fraction: float
    drift: float


def classify(losses: ArrayLike, best_loss: float, diverged: bool = False) -> Classification:
    r"""Status of one run from its loss curve ``losses`` (T,) (row k = after k updates, T ≥ 2) and the least
    reachable loss ``best_loss`` (:func:`reachable_losses`); ``diverged``: the engine's flag. Rules in the module
    docstring."""
    L = np.asarray(losses, dtype=np.float64)
    if L.ndim != 1 or L.size < 2:
        raise ValueError(f"losses must be a 1-d curve of at least 2 epochs (row k = after k updates), got shape "
                         f"{L.shape}")
    if not (math.isfinite(best_loss) and best_loss >= 0):
        raise ValueError(f"best_loss must be finite and >= 0, got {best_loss!r}")
    if diverged or not np.isfinite(L[-1]):
        return Classification("diverged", math.nan, math.nan)
    if not math.isfinite(L[0]) or L[0] < 0:
        raise ValueError(f"losses[0] (the initial loss) must be finite and >= 0, got {L[0]!r}")
    reachable = L[0] - best_loss
    floor = NOTHING_TO_LEARN * max(L[0], np.finfo(float).tiny)
    fraction = 1.0 if reachable <= floor else float((L[0] - L[-1]) / reachable)
    window = L[-(max(STALL_MIN_EPOCHS, math.ceil(STALL_WINDOW * (L.size - 1))) + 1):]
    drift = float((np.max(window) - np.min(window)) / max(reachable, floor))
    if fraction < NOT_LEARNED_FRACTION:
        return Classification("not_learned", fraction, drift)
    if fraction >= 1.0 - CONVERGED_TOL and drift < STALL_TOL:
        return Classification("converged", fraction, drift)
    return Classification("learning", fraction, drift)


def agreement(status: str | Mapping[str, str], learned_fraction: float | str | None = None) -> bool:
    """Whether a theory's error for this run may be read as agreement: status in :data:`LEARNED` and a learned
    fraction ≥ :data:`NOT_LEARNED_FRACTION`. Takes (status, learned_fraction) or a sweep CSV row (strings; a row
    without a ``status`` never counts)."""
    if isinstance(status, Mapping):
        name, learned_fraction = status.get("status", ""), status.get("learned_fraction", "")
    else:
        name = status
    try:
        f = float(learned_fraction) if learned_fraction not in (None, "") else math.nan
    except (TypeError, ValueError):
        return False
    return name in LEARNED and f >= NOT_LEARNED_FRACTION


# ------------------------------------------------------------------------------------------------ warnings
def _bound(X, Y, depth: int, hidden: int) -> float:
    return float(theory.stable_lr(X, Y, depth=depth, hidden=hidden if depth > 1 else None).learned)


def stability_warnings(X: ArrayLike, Y: ArrayLike, runs: Iterable[tuple[int, int, float]], *,
                       divergence_depths: Collection[int] = (2,)) -> list[str]:
    r"""One warning per (depth, lr) of ``runs`` (depth, hidden, lr) whose lr exceeds the learned-state stable bound.

    Bound: :func:`theory.stable_lr` (X, Y, depth, hidden).learned (torch's lr units). For depths in
    ``divergence_depths`` the warning also gives :func:`theory.divergence_lr` (whitened X only; ≈ 0.6 s at depth 2,
    1–2 s at depth 3, computed only where a bound is exceeded). Depth 1 (a quadratic loss) diverges geometrically
    above its bound. Returns the messages in (depth, lr) order; empty if every lr is below its bound.
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    bounds: dict[tuple[int, int], float] = {}
    diverge: dict[tuple[int, int], float] = {}
    over: dict[tuple[int, float], list[int]] = {}
    for depth, hidden, lr in runs:
        depth, hidden, lr = int(depth), int(hidden) if depth > 1 else 0, float(lr)
        key = (depth, hidden)
        if key not in bounds:
            bounds[key] = _bound(X, Y, depth, hidden)
        if lr > bounds[key]:
            widths = over.setdefault((depth, lr), [])
            if hidden not in widths:
                widths.append(hidden)
    messages = []
    for (depth, lr), widths in sorted(over.items()):
        widths.sort()
        b = min(bounds[(depth, h)] for h in widths)
        where = f"depth {depth}" + (f" (hidden {', '.join(map(str, widths))})" if depth > 1 else "")
        text = (f"lr {lr:g} at {where} exceeds the stable lr of the learned state, {b:.4g} (×{lr / b:.3g}): "
                "these runs cannot converge. ")
        if depth == 1:
            messages.append(text + "The loss is quadratic: expect divergence from the first updates (status diverged).")
            continue
        d = math.nan
        if depth in divergence_depths:
            key = (depth, widths[0])
            if key not in diverge:
                try:
                    diverge[key] = float(theory.divergence_lr(X, Y, depth, hidden=widths[0]))
                except ValueError:  # not whitened: no minimal model
                    diverge[key] = math.nan
            d = diverge[key]
        if math.isfinite(d) and lr >= d:
            text += (f"SGD diverges from lr ≈ {d:.4g} (theory.divergence_lr): expect divergence once the top mode "
                     "is learned")
        elif math.isfinite(d):
            text += (f"Below the divergence lr ≈ {d:.4g} (theory.divergence_lr) SGD stays bounded but never settles:"
                     " expect the top modes to oscillate (status learning, never converged)")
        else:
            text += "Expect oscillation or divergence once the top mode is learned"
        messages.append(text + "; a small init can keep a run at its saddle for the whole run (status not_learned), "
                        "and its small theory error is then no agreement.")
    return messages
