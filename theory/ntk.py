r"""The neural tangent kernel (NTK) of a two-layer linear network on P items, and kernel changes over training.

**Definition.** For ``f(x) = W₂W₁x`` (outputs f_i, i < N_out) and parameters θ = (W₁, W₂) the NTK is
``Θ((p,i),(q,j)) = Σ_θ ∂f_i(x_p)/∂θ · ∂f_j(x_q)/∂θ``. From ``∂f_i(x)/∂W₁[a,b] = W₂[i,a] x_b`` and
``∂f_i(x)/∂W₂[k,a] = δ_ik (W₁x)_a``::

    Θ((p,i),(q,j)) = (x_pᵀx_q) (W₂W₂ᵀ)_ij + δ_ij (x_pᵀW₁ᵀW₁x_q)
    Θ = K_x ⊗ W₂W₂ᵀ + K_h ⊗ I_{N_out},     K_x = XXᵀ,  K_h = X W₁ᵀW₁ Xᵀ (the RSM, :func:`theory.observables.gram_rsm`)

as a (P·N_out) × (P·N_out) matrix with row index p·N_out + i (torch's ``out.reshape(-1)`` of the (P, N_out)
outputs). Full-batch gradient flow of ``½‖Y − XW_totᵀ‖²`` moves the outputs by ``τ d vec(F)/dt = Θ vec(Y − F)``.

**Norms without the (P·N_out)² matrix** (N_out = 10000 gives 80000²): with ⟨A⊗B, C⊗D⟩ = ⟨A,C⟩⟨B,D⟩,
A = W₂W₂ᵀ and ΔΘ = K_x ⊗ ΔA + ΔK_h ⊗ I::

    ‖ΔΘ‖²_F = ‖K_x‖²‖ΔA‖² + N_out‖ΔK_h‖² + 2⟨K_x, ΔK_h⟩ tr ΔA,    ‖ΔA‖_F = ‖R₁R₁ᵀ − R₀R₀ᵀ‖_F

where [W₂⁽¹⁾, W₂⁽⁰⁾] = Q [R₁, R₀] (thin QR, N_out × 2N_h): only 2N_h × 2N_h matrices, and no cancellation of
large sums when ΔA is small (the lazy regime).

**Lazy vs rich.** The relative change ``‖Θ(T) − Θ(0)‖_F / ‖Θ(0)‖_F`` is ≈ 0 when the weights barely move (lazy, large
init) and ≫ 1 when they grow from a small init (rich); likewise for the RSM ``K_h``.

Glossary: X (P, N_in) inputs (items); W₁ (N_h, N_in), W₂ (N_out, N_h) torch layout; P items, N_out outputs; K_x, K_h
(P, P); Θ (P·N_out, P·N_out), units of squared weights (like the singular values s); t epochs.

References: Jacot, Gabriel & Hongler, "Neural tangent kernel", NeurIPS 2018; Dominé et al., "From lazy to rich:
exact learning dynamics in deep linear networks", ICLR 2025, arXiv:2409.14623 (the NTK of λ-balanced nets).
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._validate import as_float_array

__all__ = ["ntk_matrix", "ntk_relative_change", "relative_change", "MAX_DENSE_NTK"]

# Largest P·N_out for which ntk_matrix builds the dense kernel: 4096² float64 is 134 MB.
MAX_DENSE_NTK = 4096


def _net(X, W1, W2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = as_float_array("X", X, ndim=2)
    W1 = as_float_array("W1", W1, ndim=2)
    W2 = as_float_array("W2", W2, ndim=2)
    if W1.shape[1] != X.shape[1] or W2.shape[1] != W1.shape[0]:
        raise ValueError(f"shapes must chain: X (P, N_in), W1 (N_h, N_in), W2 (N_out, N_h), got X {X.shape}, "
                         f"W1 {W1.shape}, W2 {W2.shape}")
    return X, W1, W2


def ntk_matrix(X: ArrayLike, W1: ArrayLike, W2: ArrayLike) -> np.ndarray:
    r"""The dense NTK ``Θ = K_x ⊗ W₂W₂ᵀ + K_h ⊗ I_{N_out}`` ((P·N_out)², row p·N_out + i); small nets only.

    Raises ``ValueError`` when P·N_out > :data:`MAX_DENSE_NTK` (use :func:`ntk_relative_change`, which never builds
    it). Equation and glossary in the module docstring. Reference: Jacot et al., NeurIPS 2018.
    """
    X, W1, W2 = _net(X, W1, W2)
    n = X.shape[0] * W2.shape[0]
    if n > MAX_DENSE_NTK:
        raise ValueError(f"P·N_out = {n} > MAX_DENSE_NTK={MAX_DENSE_NTK}: the dense NTK would be {n}²; use "
                         "ntk_relative_change for large nets")
    h = X @ W1.T
    return np.kron(X @ X.T, W2 @ W2.T) + np.kron(h @ h.T, np.eye(W2.shape[0]))


def relative_change(K0: ArrayLike, K1: ArrayLike) -> float:
    """``‖K1 − K0‖_F / ‖K0‖_F`` (``inf`` when K0 = 0 ≠ K1, 0 when both vanish), e.g. for the RSM."""
    K0 = as_float_array("K0", K0)
    K1 = as_float_array("K1", K1)
    if K0.shape != K1.shape:
        raise ValueError(f"K0 and K1 must have the same shape, got {K0.shape} and {K1.shape}")
    num, den = float(np.linalg.norm(K1 - K0)), float(np.linalg.norm(K0))
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return num / den


def ntk_relative_change(X: ArrayLike, W1_0: ArrayLike, W2_0: ArrayLike, W1_1: ArrayLike, W2_1: ArrayLike) -> float:
    r"""``‖Θ₁ − Θ₀‖_F / ‖Θ₀‖_F`` for the NTKs of (W1_0, W2_0) and (W1_1, W2_1) on X, from N_h × N_h Grams only.

    With ``ΔΘ = K_x ⊗ ΔA + ΔK_h ⊗ I`` (ΔA = A₁ − A₀, A = W₂W₂ᵀ): ``‖ΔΘ‖² = ‖K_x‖²‖ΔA‖² + N_out‖ΔK_h‖² +
    2⟨K_x, ΔK_h⟩ tr ΔA``, ‖ΔA‖ from a thin QR of [W₂₁, W₂₀] (module docstring).
    ``inf`` when Θ₀ = 0 ≠ Θ₁. Reference: Dominé et al., ICLR 2025 (NTK over training, lazy vs rich).
    """
    X, W1_0, W2_0 = _net(X, W1_0, W2_0)
    _, W1_1, W2_1 = _net(X, W1_1, W2_1)
    if W2_1.shape != W2_0.shape or W1_1.shape != W1_0.shape:
        raise ValueError(f"both nets must have the same shapes, got W1 {W1_0.shape}/{W1_1.shape}, "
                         f"W2 {W2_0.shape}/{W2_1.shape}")
    n_out = W2_0.shape[0]
    kx = X @ X.T
    h0, h1 = X @ W1_0.T, X @ W1_1.T
    kh0, kh1 = h0 @ h0.T, h1 @ h1.T
    a00 = float(np.sum((W2_0.T @ W2_0) ** 2))
    Rm = np.asarray(np.linalg.qr(np.hstack([W2_1, W2_0]), mode="r"))
    R1, R0 = Rm[:, : W2_1.shape[1]], Rm[:, W2_1.shape[1]:]
    dA = R1 @ R1.T - R0 @ R0.T
    tr0 = float(np.sum(W2_0**2))
    kx2 = float(np.sum(kx * kx))
    dkh = kh1 - kh0
    delta = (kx2 * float(np.sum(dA * dA)) + n_out * float(np.sum(dkh * dkh))
             + 2.0 * float(np.sum(kx * dkh)) * float(np.trace(dA)))
    base = kx2 * a00 + n_out * float(np.sum(kh0 * kh0)) + 2.0 * float(np.sum(kx * kh0)) * tr0
    delta = max(delta, 0.0)  # a difference of sums: rounding can leave −1e-16·scale
    if base <= 0.0:
        return 0.0 if delta == 0.0 else float("inf")
    return float(np.sqrt(delta / base))
