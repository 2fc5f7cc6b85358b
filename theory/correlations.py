r"""Input-output statistics of a data set and the conventions that tie them to SGD in torch.

Conventions (the only place they are defined; everything else in :mod:`theory` uses them):

* Data are stored sample-major, like torch: ``X`` is (P, N_in), ``Y`` is (P, N_out); row p is sample p.
* The network computes ``out = X W_totᵀ`` with ``W_tot = W_L ⋯ W_1`` of shape (N_out, N_in), each
  ``W_l`` stored as torch's ``nn.Linear.weight`` (out_features, in_features).
* Correlations are **sums** over the P samples (no 1/P)::

      Σʸˣ = Yᵀ X   (N_out, N_in)        Σˣˣ = Xᵀ X   (N_in, N_in)

  With the tutorial's one-hot inputs Σˣˣ = I exactly, and the modes saturate at the singular values of Yᵀ.
* One full-batch SGD step with learning rate ``lr`` on ``nn.MSELoss()`` (``reduction='mean'``, i.e. the mean
  over all P·N_out entries) changes the weights by ``η·(−∂/∂W ½‖Y − X W_totᵀ‖²_F)`` with::

      η = 2·lr / (P·N_out)          (reduction='mean')
      η = 2·lr                      (reduction='sum')

  and the continuous-time limit has time constant ``τ = 1/η`` measured in **epochs** (= SGD updates).
  At the tutorial's lr = 100, P = 8, N_out = 10000: η = 1/400, τ = 400 epochs.

Glossary: P samples, N_in inputs, N_out outputs; U (N_out, r), s (r,), V (N_in, r) the SVD of Σʸˣ.

References: A. M. Saxe, J. L. McClelland, S. Ganguli, "Exact solutions to the nonlinear dynamics of learning
in deep linear neural networks", ICLR 2014, arXiv:1312.6120; A. M. Saxe, J. L. McClelland, S. Ganguli,
"A mathematical theory of semantic development in deep neural networks", PNAS 116:11537 (2019).
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._validate import as_float_array, choice, integer, positive

__all__ = [
    "io_correlations",
    "io_svd",
    "learning_rate_to_eta",
    "time_constant",
    "check_whitened",
    "WHITENED_RTOL",
]

# Σˣˣ counts as the identity when it is within this relative distance of it: well above float64 rounding of
# a sum over P samples (P·1e-16), far below any real departure from whitened inputs.
WHITENED_RTOL = 1e-10


def _data_pair(X, Y) -> tuple[np.ndarray, np.ndarray]:
    X = as_float_array("X", X, ndim=2)
    Y = as_float_array("Y", Y, ndim=2)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(
            f"X and Y must have the same number of rows (samples), got X.shape={X.shape}, Y.shape={Y.shape}"
        )
    if X.shape[0] == 0:
        raise ValueError("X and Y must contain at least one sample, got 0 rows")
    return X, Y


def io_correlations(X: ArrayLike, Y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``(Σʸˣ, Σˣˣ) = (Yᵀ X, Xᵀ X)`` in float64, as sums over samples (see module conventions)."""
    X, Y = _data_pair(X, Y)
    return Y.T @ X, X.T @ X


def io_svd(X: ArrayLike, Y: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD ``Σʸˣ = U diag(s) Vᵀ`` of the input-output correlation, float64.

    Returns ``U`` (N_out, r), ``s`` (r,) descending and ≥ 0, ``V`` (N_in, r) with r = min(N_out, N_in).
    Signs are deterministic: each column of ``V`` has its largest-magnitude entry positive (ties go to the
    first such entry), and the matching column of ``U`` is flipped with it, so ``U diag(s) Vᵀ`` is unchanged.
    """
    sigma_yx, _ = io_correlations(X, Y)
    U, s, Vt = np.linalg.svd(sigma_yx, full_matrices=False)
    V = Vt.T
    idx = np.argmax(np.abs(V), axis=0)
    signs = np.sign(V[idx, np.arange(V.shape[1])])
    signs[signs == 0] = 1.0
    return U * signs, s, V * signs


def learning_rate_to_eta(lr: float, n_samples: int, n_out: int, reduction: str = "mean") -> float:
    """η, the per-epoch rate of ``W ← W + η·(Σʸˣ − W_tot Σˣˣ)…`` for torch's SGD on ``nn.MSELoss``.

    ``η = 2·lr/(n_samples·n_out)`` for ``reduction='mean'`` and ``η = 2·lr`` for ``reduction='sum'``.
    """
    lr = positive("lr", lr)
    n_samples = integer("n_samples", n_samples, minimum=1)
    n_out = integer("n_out", n_out, minimum=1)
    choice("reduction", reduction, ("mean", "sum"))
    if reduction == "sum":
        return 2.0 * lr
    return 2.0 * lr / (n_samples * n_out)


def time_constant(lr: float, n_samples: int, n_out: int, reduction: str = "mean") -> float:
    """τ = 1/η in epochs (SGD updates). The tutorial (lr=100, P=8, N_out=10000, mean) gives τ = 400."""
    return 1.0 / learning_rate_to_eta(lr, n_samples, n_out, reduction)


def check_whitened(X: ArrayLike, name: str = "X") -> None:
    """Raise ``ValueError`` unless ``Σˣˣ = Xᵀ X`` is the identity (within ``WHITENED_RTOL``).

    The mode decomposition is exact only for whitened inputs; the tutorial's one-hot items satisfy it.
    """
    X = as_float_array(name, X, ndim=2)
    sxx = X.T @ X
    eye = np.eye(sxx.shape[0])
    err = np.abs(sxx - eye).max() if sxx.size else 0.0
    if err > WHITENED_RTOL:
        raise ValueError(
            f"{name} must be whitened (XᵀX = I, e.g. one-hot items), got max|XᵀX − I| = {err:.3g}; "
            "the exact mode dynamics only hold for whitened inputs"
        )
