"""Analytical linear regression (the tutorial's bonus section), by least squares."""
from __future__ import annotations

import numpy as np

from .errors import check_matrix

__all__ = ["linear_regression"]


def linear_regression(X, Y) -> np.ndarray:
    """The W (Dy, Dx) minimising ‖Y − W X‖²_F, with the tutorial's shapes X (Dx, M), Y (Dy, M).

    Solved with ``np.linalg.lstsq`` (an SVD-based least-squares solver), not by inverting X Xᵀ. When X Xᵀ is
    singular (fewer samples than inputs, or linearly dependent inputs) the minimiser is not unique and the
    **minimum-norm** solution ``W = Y X⁺`` is returned (X⁺ the Moore–Penrose pseudo-inverse), which is also the
    solution gradient descent from W = 0 converges to. With the tutorial's one-hot inputs X = I and W = Y.
    """
    X = check_matrix("X", X)
    Y = check_matrix("Y", Y)
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"X (Dx, M) and Y (Dy, M) must have the same number of samples M (columns), got "
                         f"X.shape={X.shape}, Y.shape={Y.shape}")
    W_t, *_ = np.linalg.lstsq(X.T, Y.T, rcond=None)
    return W_t.T
