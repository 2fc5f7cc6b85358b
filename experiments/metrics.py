"""Theory-versus-training gap metrics (pure numpy). Each returns a float; names follow ``saxe verify``.

All take arrays indexed by epoch first (row k = after k updates, as :func:`saxe.train` records).

* ``modes``:    max over epochs and modes of |a_pred − a_meas| / s_max (singular values sorted descending on both
                sides). Normalised by the largest s, not each mode's own: float64 rounding is relative to the
                largest weights, so a weak mode's rounding-level error over its own small s could fail a correct
                theory, while a wrong theory on a weak mode is still off by a visible fraction of s_max;
* ``loss``:     max over epochs of |L_pred − L_meas| / L_meas(0);
* ``rsm``:      max over epochs of ‖RSM_pred − RSM_meas‖_F / ‖RSM_ref‖_F (``saxe verify``: the RSM of the balanced
                learned state, X V S^{2/L} Vᵀ Xᵀ);
* ``illusion``: max over epochs of |pred − meas| (outputs are in the targets' units, e.g. ±1).
"""
from __future__ import annotations

import numpy as np

__all__ = ["modes_error", "loss_error", "rsm_error", "illusion_error", "half_learning_epochs"]


def as_singular_values(strengths) -> np.ndarray:
    """Decoupled mode strengths (…, r) as W_tot's singular values, the layout of every record: magnitudes in
    descending order along the last axis."""
    return -np.sort(-np.abs(np.asarray(strengths, dtype=np.float64)), axis=-1)


def _pair(name: str, pred, meas) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    meas = np.asarray(meas, dtype=np.float64)
    if pred.shape != meas.shape:
        raise ValueError(f"{name}: prediction and measurement must have the same shape, got {pred.shape} and "
                         f"{meas.shape}")
    if pred.size == 0:
        raise ValueError(f"{name}: empty arrays")
    return pred, meas


def modes_error(pred, meas, s) -> float:
    """max_{k,α} |pred[k, α] − meas[k, α]| / s_max for (T, r) arrays of sorted singular values."""
    pred, meas = _pair("modes", pred, meas)
    s = np.asarray(s, dtype=np.float64)
    if s.shape != pred.shape[-1:]:
        raise ValueError(f"modes: s must have one value per mode ({pred.shape[-1]}), got shape {s.shape}")
    if s.max() <= 0:
        raise ValueError("modes: s must have a positive entry")
    return float(np.max(np.abs(pred - meas)) / s.max())


def loss_error(pred, meas) -> float:
    """max_k |pred[k] − meas[k]| / meas[0]."""
    pred, meas = _pair("loss", pred, meas)
    if meas[0] <= 0:
        raise ValueError(f"loss: the initial measured loss must be > 0 to normalise by, got {meas[0]}")
    return float(np.max(np.abs(pred - meas)) / meas[0])


def rsm_error(pred, meas, ref) -> float:
    """max_k ‖pred[k] − meas[k]‖_F / ‖ref‖_F for (T, P, P) stacks."""
    pred, meas = _pair("rsm", pred, meas)
    norm = float(np.linalg.norm(np.asarray(ref, dtype=np.float64)))
    if norm <= 0:
        raise ValueError("rsm: the reference RSM must be non-zero")
    return float(np.max(np.linalg.norm(pred - meas, axis=(-2, -1))) / norm)


def illusion_error(pred, meas) -> float:
    """max_k |pred[k] − meas[k]|."""
    pred, meas = _pair("illusion", pred, meas)
    return float(np.max(np.abs(pred - meas)))


def half_learning_epochs(curves, s, fraction: float = 0.5) -> np.ndarray:
    """Per mode α, the first epoch k with curves[k, α] ≥ fraction·s_α (``inf`` if never; ``nan`` for s_α = 0).

    ``curves`` (T, r) sorted singular values per epoch (measured or predicted), ``s`` (r,).
    """
    curves = np.asarray(curves, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    if curves.ndim != 2 or s.shape != (curves.shape[1],):
        raise ValueError(f"curves must be (T, r) and s (r,), got {curves.shape} and {s.shape}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction=}")
    reached = curves >= fraction * s
    first = np.where(reached.any(axis=0), reached.argmax(axis=0), np.inf).astype(np.float64)
    first[s <= 0] = np.nan
    return first
