r"""How far a two-layer init is from λ-balance: the best-fit λ and the relative deviation.

``D = W₂ᵀW₂ − W₁W₁ᵀ`` (N_h × N_h) is conserved by gradient flow with whitened inputs; a λ-balanced init has
``D = λI`` (:mod:`theory.balanced` is exact for it). W₁ (N_h, N_in), W₂ (N_out, N_h) in torch layout, numpy arrays or
torch tensors. Reference: Dominé et al., "From lazy to rich", ICLR 2025, arXiv:2409.14623.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._validate import as_float_array

__all__ = ["measured_lambda", "balance_deviation"]


def _gram_pair(W1, W2) -> tuple[np.ndarray, np.ndarray]:
    W1 = as_float_array("W1", W1.detach().cpu().numpy() if hasattr(W1, "detach") else W1, ndim=2)
    W2 = as_float_array("W2", W2.detach().cpu().numpy() if hasattr(W2, "detach") else W2, ndim=2)
    if W2.shape[1] != W1.shape[0]:
        raise ValueError(f"W2 must have N_h={W1.shape[0]} columns (W1 is (N_h, N_in) = {W1.shape}), got {W2.shape}")
    return W1 @ W1.T, W2.T @ W2


def measured_lambda(W1: ArrayLike, W2: ArrayLike) -> tuple[float, float]:
    r"""Best-fit λ and relative deviation of any two-layer init from λ-balance.

    ``D = W₂ᵀW₂ − W₁W₁ᵀ``; ``λ = tr D / N_h`` minimises ‖D − λI‖_F; the deviation is ``‖D − λI‖_F / ‖λI‖_F``
    (``inf`` if λ = 0 ≠ D, 0 if D = 0). For the tutorial's random init (σ_l = γ/√(n_in + n_out)) the expectation is
    ``λ ≈ γ²(N_out/(N_h+N_out) − N_in/(N_in+N_h))`` and the deviation is γ-independent (every term scales as γ²):
    it measures the shape of D, not its size. W₁ (N_h, N_in), W₂ (N_out, N_h). Reference: Dominé et al., ICLR 2025.
    """
    g1, g2 = _gram_pair(W1, W2)
    D = g2 - g1
    n_h = D.shape[0]
    lam = float(np.trace(D) / n_h)
    rest = float(np.linalg.norm(D - lam * np.eye(n_h)))
    if lam == 0.0:
        return lam, (0.0 if rest == 0.0 else float("inf"))
    return lam, rest / (abs(lam) * np.sqrt(n_h))


def balance_deviation(W1: ArrayLike, W2: ArrayLike, lam: float) -> float:
    """``‖W₂ᵀW₂ − W₁W₁ᵀ − λI‖_F / (‖W₁W₁ᵀ‖_F + ‖W₂ᵀW₂‖_F)`` (0 for zero weights): scale-free, defined at λ = 0."""
    g1, g2 = _gram_pair(W1, W2)
    scale = float(np.linalg.norm(g1) + np.linalg.norm(g2))
    rest = float(np.linalg.norm(g2 - g1 - lam * np.eye(g1.shape[0])))
    return 0.0 if scale == 0.0 else rest / scale
