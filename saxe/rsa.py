"""Representational similarity analysis with rsatoolbox: the network's RSMs over training as RDMs.

An RSM is a Gram matrix of hidden activity, ``G = h hᵀ``; the squared Euclidean distance between the
representations of items i and j is ``d_ij = G_ii + G_jj − 2 G_ij``, which is what :func:`rsm_to_rdm` returns
and :func:`to_rdms` hands to rsatoolbox (``dissimilarity_measure='squared euclidean'``), one RDM per epoch.
:func:`tree_category_rdm` is the ideal RDM of the tutorial's tree: two items are as dissimilar as the number of
levels between them and their lowest common ancestor (0 for the same item, ``n_levels`` across the root), the
structure a network that has learned every mode of the hierarchy represents.

rsatoolbox is optional: ``pip install -e ".[rsa]"``. Only :func:`to_rdms` needs it; the other two are numpy.

Reference: Kriegeskorte, Mur & Bandettini, "Representational similarity analysis", Front. Syst. Neurosci. 2:4
(2008); Saxe, McClelland & Ganguli, PNAS 116:11537 (2019) (the tree and its representations).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import check_positive_int

__all__ = ["rsm_to_rdm", "to_rdms", "tree_category_rdm"]


def rsm_to_rdm(rsms) -> np.ndarray:
    """Squared Euclidean distances ``d_ij = G_ii + G_jj − 2 G_ij`` from Gram matrices G (…, P, P).

    Non-negative with a zero diagonal; RSMs of torch tensors are accepted too.
    """
    G = np.asarray(getattr(rsms, "detach", lambda: rsms)(), dtype=np.float64)
    if G.ndim < 2 or G.shape[-1] != G.shape[-2]:
        raise ValueError(f"rsms must be square in their last two axes (…, P, P), got shape {G.shape}")
    diag = np.diagonal(G, axis1=-2, axis2=-1)
    D = diag[..., :, None] + diag[..., None, :] - 2.0 * G
    D = 0.5 * (D + np.swapaxes(D, -1, -2))
    idx = np.arange(G.shape[-1])
    D[..., idx, idx] = 0.0
    return np.maximum(D, 0.0)  # rounding of a PSD Gram matrix can leave −1e-16·‖G‖


def to_rdms(rsms, item_names: Sequence[str], epochs: Sequence[int] | None = None):
    """rsatoolbox ``RDMs`` (one per epoch, squared Euclidean) from RSMs (T, P, P) or (P, P) of ``saxe.train``.

    ``item_names`` become the pattern descriptor ``item``, ``epochs`` (default 0 … T−1) the RDM descriptor
    ``epoch``. Needs rsatoolbox (the ``[rsa]`` extra).
    """
    try:
        from rsatoolbox.rdm import RDMs
    except ImportError as exc:  # pragma: no cover - exercised where rsatoolbox is absent
        raise ImportError("saxe.rsa.to_rdms needs rsatoolbox: pip install -e \".[rsa]\" (or pip install "
                          f"rsatoolbox) ({exc})") from None
    D = rsm_to_rdm(rsms)
    D = D[None] if D.ndim == 2 else D
    names = [str(n) for n in item_names]
    if len(names) != D.shape[-1]:
        raise ValueError(f"item_names must name the {D.shape[-1]} items of the RSMs, got {len(names)} names")
    epochs = list(range(D.shape[0])) if epochs is None else [int(e) for e in epochs]
    if len(epochs) != D.shape[0]:
        raise ValueError(f"epochs must give one epoch per RSM ({D.shape[0]}), got {len(epochs)}")
    return RDMs(D, dissimilarity_measure="squared euclidean", rdm_descriptors={"epoch": epochs},
                pattern_descriptors={"item": names})


def tree_category_rdm(n_levels: int = 3, n_branches: int = 2) -> np.ndarray:
    """The ideal (P, P) RDM of the tree's leaves: levels from each pair up to their lowest common ancestor."""
    n_levels = check_positive_int("n_levels", n_levels)
    n_branches = check_positive_int("n_branches", n_branches)
    P = n_branches**n_levels
    leaves = np.arange(P)
    D = np.zeros((P, P))
    for up in range(1, n_levels + 1):  # items in different subtrees of size n_branches**up are ≥ up apart
        block = leaves // n_branches ** (up - 1)
        D[block[:, None] != block[None, :]] = up
    return D
