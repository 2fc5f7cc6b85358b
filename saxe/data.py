"""Hierarchically structured data: the branching-diffusion tree of the tutorial.

A tree of ``n_levels`` levels below the root, each node with ``n_branches`` children; the P =
n_branches**n_levels leaves are the items. For every feature, each node draws an independent sign, −1 with
probability ``p_flip`` (the root: 0.5 in :func:`generate_hsd`), and an item's feature value is the product of
the signs on its root→leaf path. Items that share more ancestors share more features, which gives the data
its hierarchical singular value spectrum (see :func:`theory.hierarchy_spectrum`).

Randomness is passed in: ``rng`` is a ``np.random.Generator`` (or an int seed, or ``None`` for fresh OS
entropy); no global random state is used.

Reference: Saxe, McClelland & Ganguli (2019), PNAS 116:11537, "A mathematical theory of semantic development
in deep neural networks" (branching diffusion process).
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .errors import check_matrix, check_positive_int, check_probability

__all__ = ["ITEM_NAMES", "FEATURE_NAMES", "build_tree", "sample_from_tree", "generate_hsd", "add_feature",
           "as_generator"]

#: The tutorial's item names, in the order of the one-hot labels.
ITEM_NAMES: tuple[str, ...] = ("Goldfish", "Tuna", "Robin", "Canary", "Rose", "Daisy", "Pine", "Oak")
#: The ten illustrative feature names of the tutorial's first figure.
FEATURE_NAMES: tuple[str, ...] = ("can_grow", "is_mammal", "has_leaves", "can_move", "has_trunk", "can_fly",
                                  "can_swim", "has_stem", "is_warmblooded", "can_flower")


def as_generator(rng) -> np.random.Generator:
    """``rng`` as a ``np.random.Generator``: a Generator is used as is, an int seeds a new one, ``None``
    draws fresh OS entropy."""
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (numbers.Integral, np.integer)) and not isinstance(rng, bool) and int(rng) >= 0:
        return np.random.default_rng(int(rng))
    raise ValueError(f"rng must be a np.random.Generator, a non-negative int seed or None, got {rng!r}")


def build_tree(n_levels, n_branches, p_flip, to_np_array: bool = True) -> dict:
    """The tree as a dict of per-node arrays in breadth-first order (node 0 is the root).

    ``level[j]`` is node j's depth (root 0), ``pflip[j]`` its flip probability (``p_flip`` for every node;
    :func:`generate_hsd` sets the root's to 0.5 as the tutorial does) and ``parent[j]`` its parent's index
    (``-1`` for the root as an array; ``None`` in the list form, as the tutorial). Node j ≥ 1 has parent
    ``(j − 1) // n_branches``.
    """
    n_levels = check_positive_int("n_levels", n_levels)
    n_branches = check_positive_int("n_branches", n_branches)
    p_flip = check_probability("p_flip", p_flip)
    level = [0]
    for i in range(1, n_levels + 1):
        level.extend([i] * n_branches**i)
    n_nodes = len(level)
    parent = [None] + [(j - 1) // n_branches for j in range(1, n_nodes)]
    tree: dict[str, Any] = {"level": level, "pflip": [p_flip] * n_nodes, "parent": parent}
    if to_np_array:
        tree = {"level": np.array(level, dtype=np.int64),
                "pflip": np.array(tree["pflip"], dtype=np.float64),
                "parent": np.array([-1] + parent[1:], dtype=np.int64)}
    return tree


def _tree_arrays(tree) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not isinstance(tree, dict) or not {"level", "pflip", "parent"} <= set(tree):
        raise ValueError("tree must be a dict with keys 'level', 'pflip', 'parent' (from build_tree), "
                         f"got {tree!r:.80}")
    level = np.asarray(tree["level"], dtype=np.int64)
    pflip = np.asarray(tree["pflip"], dtype=np.float64)
    parent = np.array([-1 if p is None else p for p in tree["parent"]], dtype=np.int64)
    if not (len(level) == len(pflip) == len(parent)) or len(level) == 0:
        raise ValueError(f"tree arrays must have one equal, non-zero length, got level={len(level)}, "
                         f"pflip={len(pflip)}, parent={len(parent)}")
    if ((pflip < 0) | (pflip > 1) | ~np.isfinite(pflip)).any():
        raise ValueError(f"tree['pflip'] must be probabilities in [0, 1], got {pflip}")
    if parent[0] != -1 or (parent[1:] >= np.arange(1, len(parent))).any() or (parent[1:] < 0).any():
        raise ValueError("tree['parent'] must list each node's parent before the node (breadth-first order)")
    return level, pflip, parent


def sample_from_tree(tree: dict, n_features: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Sample ``n_features`` features of every leaf; returns (n_features, n_items) of ±1 (tutorial layout).

    Each node draws, per feature, a sign that is −1 with probability ``pflip[node]``; a leaf's value is the
    product of the signs from the root to the leaf.
    """
    level, pflip, parent = _tree_arrays(tree)
    n_features = check_positive_int("n_features", n_features)
    gen = as_generator(rng)
    signs = np.where(gen.random((n_features, len(level))) > pflip, 1.0, -1.0)
    value = np.empty_like(signs)
    value[:, 0] = signs[:, 0]
    for j in range(1, len(level)):  # breadth-first: the parent is always done before the child
        value[:, j] = signs[:, j] * value[:, parent[j]]
    leaves = np.flatnonzero(level == level.max())
    return value[:, leaves]


def generate_hsd(n_levels: int = 3, n_branches: int = 2, p_flip: float = 0.15, n_features: int = 10000,
                 rng: np.random.Generator | int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's hierarchically structured data: ``(labels, features)``.

    ``labels`` is the (P, P) identity (one-hot item inputs), ``features`` (P, n_features) of ±1 values, with
    P = n_branches**n_levels; the root's flip probability is 0.5 (so every feature has zero mean), the other
    nodes' ``p_flip``.
    """
    tree = build_tree(n_levels, n_branches, p_flip)
    tree["pflip"][0] = 0.5
    features = sample_from_tree(tree, n_features, rng=rng).T.copy()
    labels = np.eye(features.shape[0])
    return labels, features


def add_feature(features: ArrayLike, new_feature: Sequence[float]) -> np.ndarray:
    """Return ``features`` with ``new_feature`` appended as a last column (``features`` is not modified).

    ``features`` is (P, N) and ``new_feature`` a sequence of P numbers. (The tutorial's version appended to
    a global ``tree_features`` and ignored its argument.)
    """
    features = check_matrix("features", features)
    col = np.asarray(new_feature, dtype=np.float64) if not hasattr(new_feature, "detach") else \
        new_feature.detach().cpu().numpy().astype(np.float64)
    if col.ndim != 1 or col.shape[0] != features.shape[0]:
        raise ValueError(f"new_feature must be a sequence of {features.shape[0]} numbers (one per item), "
                         f"got shape {col.shape}")
    if not np.isfinite(col).all():
        raise ValueError("new_feature must contain only finite values")
    return np.hstack((features, col[:, None]))
