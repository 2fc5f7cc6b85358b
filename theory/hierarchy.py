r"""Expected singular values of the branching-diffusion ("hierarchical") data set of the tutorial.

The tutorial's ``build_tree``/``sample_from_tree`` grow a tree with ``n_levels`` levels below the root and
``n_branches`` children per node (nodes in heap order, so leaf i lies below the level-ℓ node i // b^{n−ℓ}).
For every feature each node draws an independent sign, −1 with probability ``p_flip`` (the root: ``root_p_flip``);
a leaf's (item's) feature value is the product of the signs on its root→leaf path. With m = 1 − 2p:

* the root's sign multiplies every item, so it cancels in every product x_i x_j: ``root_p_flip`` shifts only
  the mean E[x_i] = (1 − 2 p_root) mᴺ, never the second moments below;
* two items whose lowest common ancestor (LCA) sits at level ℓ share the signs of levels 0…ℓ (which square to
  1) and own independent signs on the n − ℓ levels below, so

      C_ij = E[x_i x_j] = (m²)^{n−ℓ},   c_ℓ := (m²)^{n−ℓ}   (c_n = 1 on the diagonal).

C is constant on the blocks of the tree, so its eigenvectors are Haar-like: level 0 is the uniform vector;
level ℓ ≥ 1 holds the vectors that are constant on each level-ℓ subtree and sum to zero over the b children of
every level-(ℓ−1) node (multiplicity b^{ℓ−1}(b − 1)). With S_ℓ = Σ_{j in i's level-ℓ subtree} C_ij
= 1 + Σ_{k=ℓ}^{n−1} (b − 1) b^{n−k−1} c_k the eigenvalues are

      λ_0 = S_0,     λ_ℓ = S_ℓ − c_{ℓ−1} b^{n−ℓ}   (ℓ = 1 … n),

non-increasing in ℓ (λ_ℓ − λ_{ℓ+1} = b^{n−ℓ}(c_ℓ − c_{ℓ−1}) ≥ 0). The P × N_f feature matrix F (items ×
features) has F Fᵀ = Σ_features x xᵀ with expectation N_f·C, so its singular values are ≈ √(N_f λ_ℓ), with
relative fluctuations O(1/√N_f). These are the singular values of Σʸˣ = Yᵀ X for one-hot items (X = I, Y = F).

References: Saxe, McClelland & Ganguli, PNAS 116:11537 (2019), section "hierarchical structure" and SI;
Kemp & Tenenbaum's branching diffusion as used in the Neuromatch tutorial W1D2 T3.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._validate import integer, positive

__all__ = ["HierarchySpectrum", "hierarchy_spectrum", "MAX_DENSE_ITEMS", "MAX_ITEMS"]

# Largest number of items P = b^n accepted: the (P,) singular-value array stays below ~32 MiB.
MAX_ITEMS = 2**22

# Dense P × P eigenvectors are returned only up to this many items (P² float64 = 32 MiB at 2048); larger
# trees get ``eigenvectors=None`` but their singular values are still exact.
MAX_DENSE_ITEMS = 2048


class HierarchySpectrum(NamedTuple):
    """Expected spectrum of the tree's feature matrix.

    * ``singular_values``: (P,) √(N_f λ) sorted descending, each level repeated per its multiplicity.
    * ``multiplicities``: (n_levels + 1,) int, b^{ℓ−1}(b − 1) for level ℓ ≥ 1 and 1 for level 0 (sum = P).
    * ``level_eigenvalues``: (n_levels + 1,) eigenvalues λ_ℓ of C = E[x xᵀ] per feature, level 0 first.
    * ``eigenvectors``: (P, P) orthonormal columns matching ``singular_values`` (items in the tutorial's leaf
      order), or None when P > MAX_DENSE_ITEMS.
    """

    singular_values: np.ndarray
    multiplicities: np.ndarray
    level_eigenvalues: np.ndarray
    eigenvectors: np.ndarray | None


def _probability(name: str, value) -> float:
    p = positive(name, value, allow_zero=True)
    if p > 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {name}={value!r}")
    return p


def _contrasts(b: int) -> np.ndarray:
    """(b, b − 1) orthonormal basis of the vectors of R^b that sum to zero (Helmert contrasts)."""
    out = np.zeros((b, b - 1))
    for k in range(1, b):
        out[:k, k - 1] = 1.0
        out[k, k - 1] = -float(k)
        out[:, k - 1] /= np.sqrt(k * (k + 1.0))
    return out


def _haar_vectors(n: int, b: int) -> np.ndarray:
    """(P, P) orthonormal Haar-like basis, columns grouped by level 0, 1, …, n (see the module docstring)."""
    P = b**n
    cols = [np.full(P, 1.0 / np.sqrt(P))]
    contrasts = _contrasts(b)
    leaf = np.arange(P)
    for level in range(1, n + 1):
        child = leaf // b ** (n - level)  # index of the item's level-ℓ ancestor
        parent, which = child // b, child % b
        size = b ** (n - level)  # leaves per level-ℓ subtree
        for node in range(b ** (level - 1)):
            inside = parent == node
            for k in range(b - 1):
                v = np.zeros(P)
                v[inside] = contrasts[which[inside], k] / np.sqrt(size)
                cols.append(v)
    return np.stack(cols, axis=1)


def hierarchy_spectrum(n_levels, n_branches, p_flip, n_features, root_p_flip=0.5) -> HierarchySpectrum:
    r"""Expected singular values of the tutorial's P × n_features hierarchical feature matrix, P = b^n.

    Equations (module docstring): c_ℓ = (1 − 2p)^{2(n−ℓ)}, S_ℓ = 1 + Σ_{k=ℓ}^{n−1} (b−1) b^{n−k−1} c_k,
    λ_0 = S_0, λ_ℓ = S_ℓ − c_{ℓ−1} b^{n−ℓ} with multiplicity b^{ℓ−1}(b−1), singular value √(N_f λ_ℓ).

    The tutorial tree (n = 3, b = 2, p = 0.15, N_f = 10000) gives ≈ 156.2, 122.5, 100.5 (×2), 71.4 (×4); one
    sample of it has top singular value ≈ 157.7 (fluctuations ~ 1/√N_f relative). A tree with b = 1 has one
    item and singular value √N_f; p = 1/2 gives C = I; p ∈ {0, 1} gives rank one.

    Glossary: n = ``n_levels`` ≥ 1 levels below the root; b = ``n_branches`` ≥ 1 children per node;
    p = ``p_flip`` ∈ [0, 1] flip probability of every non-root node; N_f = ``n_features`` ≥ 1;
    ``root_p_flip`` ∈ [0, 1] the root's flip probability (0.5 in the tutorial; it does not affect C). No time
    units (this is a property of the data).

    References: Saxe, McClelland & Ganguli, PNAS 116:11537 (2019); Neuromatch W1D2 tutorial 3 (generate_hsd).
    """
    n = integer("n_levels", n_levels, minimum=1)
    b = integer("n_branches", n_branches, minimum=1)
    p = _probability("p_flip", p_flip)
    n_features = integer("n_features", n_features, minimum=1)
    _probability("root_p_flip", root_p_flip)
    if b**n > MAX_ITEMS:
        raise ValueError(
            f"n_branches**n_levels (the number of items) must be <= {MAX_ITEMS}, got {n_branches=}, {n_levels=} "
            f"-> {b**n} items"
        )
    m2 = (1.0 - 2.0 * p) ** 2
    c = m2 ** (n - np.arange(n + 1, dtype=np.float64))  # c_ℓ, ℓ = 0…n (c_n = 1)
    S = np.empty(n + 1)
    S[n] = 1.0
    for ell in range(n - 1, -1, -1):
        S[ell] = S[ell + 1] + (b - 1) * b ** (n - ell - 1) * c[ell]
    lam = S.copy()
    for ell in range(1, n + 1):
        lam[ell] = S[ell] - c[ell - 1] * b ** (n - ell)
    lam = np.maximum(lam, 0.0)  # exact zeros (p ∈ {0, 1}) may round to −1e-16
    mult = np.array([1] + [b ** (ell - 1) * (b - 1) for ell in range(1, n + 1)], dtype=np.int64)
    singular_values = np.repeat(np.sqrt(n_features * lam), mult)
    order = np.argsort(-singular_values, kind="stable")  # already descending up to rounding (λ_ℓ non-increasing)
    eigenvectors = _haar_vectors(n, b)[:, order] if b**n <= MAX_DENSE_ITEMS else None
    singular_values = singular_values[order]
    return HierarchySpectrum(singular_values, mult, lam, eigenvectors)
