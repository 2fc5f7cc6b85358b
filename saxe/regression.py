"""Analytical linear regression (the tutorial's bonus section), by least squares."""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .errors import check_matrix

__all__ = ["linear_regression"]


def linear_regression(X: ArrayLike, Y: ArrayLike) -> np.ndarray:
    """The W (N_out, N_in) minimising ‖Y − X Wᵀ‖²_F, sample-major like everything else: X (P, N_in), Y (P, N_out).

    W is in the layout of ``nn.Linear.weight`` and of W_tot, so it compares directly with a trained network.
    (The tutorial's ``linear_regression`` took feature-major X (Dx, M), Y (Dy, M); pass ``X.T, Y.T`` for those.)
    Solved with ``np.linalg.lstsq`` (an SVD-based least-squares solver), not by inverting XᵀX. When XᵀX is
    singular (fewer samples than inputs, or linearly dependent inputs) the minimiser is not unique and the
    **minimum-norm** solution ``W = (X⁺ Y)ᵀ`` is returned (X⁺ the Moore–Penrose pseudo-inverse), which is also the
    solution gradient descent from W = 0 converges to. With the tutorial's one-hot inputs X = I and W = Yᵀ = Σʸˣ.
    """
    X = check_matrix("X", X)
    Y = check_matrix("Y", Y)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X (P, N_in) and Y (P, N_out) must have the same number of samples P (rows), got "
                         f"X.shape={X.shape}, Y.shape={Y.shape}")
    W_t, *_ = np.linalg.lstsq(X, Y, rcond=None)
    return W_t.T
