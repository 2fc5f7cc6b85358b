"""Errors raised by :mod:`saxe` and the argument checks shared by its public functions.

Every public function validates its arguments with these helpers, so that bad input raises ``ValueError``
naming the argument, what was expected and what arrived, and never a NaN or a stack trace from deep inside
torch or numpy.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["DivergenceError", "check_lr", "check_n_epochs", "check_positive_int", "check_probability",
           "check_nonnegative", "check_matrix"]


class DivergenceError(RuntimeError):
    """Training stopped because the loss or the weights stopped being finite or exploded.

    Attributes: ``epoch`` (number of updates done when it was detected), ``lr``, ``loss`` (last loss seen),
    ``bounds`` (:class:`theory.StableLR` for this data, depth and initial weights, or ``None`` where it could not be
    computed) and ``max_stable_lr`` (the bound that applies: the smaller of the learned state's and the initial
    weights' stable lr; ``None`` with ``bounds``).
    """

    def __init__(self, epoch: int, lr: float, loss: float, bounds, reason: str):
        self.epoch = epoch
        self.lr = lr
        self.loss = loss
        self.bounds = bounds
        self.max_stable_lr = None if bounds is None else float(bounds.applies)
        self.reason = reason
        text = f"training diverged at epoch {epoch} with lr={lr:g}: {reason} (loss={loss:.4g})"
        if bounds is not None:
            text += "; " + bounds.describe()
            if bounds.init is not None and bounds.init < lr <= bounds.learned:
                text += (" — this lr is above the initial weights' bound: a large init must shed curvature in its "
                         "first steps, and here it did not; lower lr or the init scale")
            elif lr > bounds.learned:
                text += (" — this lr is above the learned state's bound, where SGD cannot settle; "
                         "theory.divergence_lr gives the lr from which it diverges")
        super().__init__(text)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_lr(lr) -> float:
    if not _is_real(lr) or not math.isfinite(float(lr)) or float(lr) <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr=!r}")
    return float(lr)


def check_nonnegative(name: str, value) -> float:
    if not _is_real(value) or not math.isfinite(float(value)) or float(value) < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {name}={value!r}")
    return float(value)


def check_probability(name: str, value) -> float:
    if not _is_real(value) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {name}={value!r}")
    return float(value)


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={value!r} ({type(value).__name__})")
    if int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={value!r}")
    return int(value)


def check_n_epochs(n_epochs) -> int:
    return check_positive_int("n_epochs", n_epochs, minimum=0)


def check_matrix(name: str, value, *, finite: bool = True) -> np.ndarray:
    """``value`` as a 2-D float64 numpy array (accepts numpy arrays, lists and torch tensors)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric 2-D array, got {type(value).__name__}: {exc}") from None
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-dimensional, got shape {arr.shape}")
    if finite and not np.isfinite(arr).all():
        raise ValueError(f"{name} must contain only finite values, got {int((~np.isfinite(arr)).sum())} NaN/inf")
    return arr
