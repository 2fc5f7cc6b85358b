"""Expected spectrum of the branching-diffusion tree, against a brute-force C and against sampled data."""
from __future__ import annotations

import numpy as np
import pytest

from theory import hierarchy_spectrum

# Closed-form eigenvalues against eigvalsh of a ≤ 81 × 81 matrix with entries ≤ 1: rounding only.
EIG_ATOL = 1e-12
# Sampled singular values fluctuate by O(1/√N_f) relative. Over 20 seeds, max_k |ŝ_k − s_k|/s_k · √N_f averaged
# 1.8–2.1 and never exceeded 3.4 (trees (3, 2, 0.15) and (2, 3, 0.3)); the mean over 5 seeds must stay below 4.
SAMPLING_C = 4.0
SAMPLING_SEEDS = 5


def _tutorial_tree(n_levels, n_branches, p_flip, root_p_flip):
    """The tutorial's build_tree: heap-ordered nodes, parent of node i ≥ 1 is (i − 1) // b; leaves last."""
    n_nodes = sum(n_branches**level for level in range(n_levels + 1))
    pflip = np.full(n_nodes, float(p_flip))
    pflip[0] = root_p_flip
    leaves = range(n_nodes - n_branches**n_levels, n_nodes)
    paths = []
    for leaf in leaves:
        path, j = [leaf], leaf
        while j != 0:
            j = (j - 1) // n_branches
            path.append(j)
        paths.append(set(path))
    return pflip, paths


def _brute_force_C(n_levels, n_branches, p_flip, root_p_flip=0.5):
    """E[x_i x_j] = ∏ over the nodes on exactly one of the two root→leaf paths of (1 − 2 p_node)."""
    pflip, paths = _tutorial_tree(n_levels, n_branches, p_flip, root_p_flip)
    P = len(paths)
    C = np.empty((P, P))
    for i in range(P):
        for j in range(P):
            C[i, j] = np.prod([1 - 2 * pflip[k] for k in paths[i] ^ paths[j]])
    return C


def _sample_features(n_levels, n_branches, p_flip, n_features, rng, root_p_flip=0.5):
    """The tutorial's sample_from_tree, vectorised: (P, n_features) products of node signs along paths."""
    pflip, paths = _tutorial_tree(n_levels, n_branches, p_flip, root_p_flip)
    signs = np.where(rng.random((pflip.size, n_features)) < pflip[:, None], -1.0, 1.0)
    return np.stack([np.prod(signs[sorted(path)], axis=0) for path in paths])


def test_tutorial_tree():
    spec = hierarchy_spectrum(3, 2, 0.15, 10000)
    expected = [156.2, 122.5, 100.5, 100.5, 71.4, 71.4, 71.4, 71.4]
    np.testing.assert_allclose(spec.singular_values, expected, atol=0.05)
    np.testing.assert_array_equal(spec.multiplicities, [1, 1, 2, 4])


@pytest.mark.parametrize(
    "n_levels, n_branches, p_flip",
    [(3, 2, 0.15), (2, 3, 0.3), (2, 4, 0.7), (1, 5, 0.1), (4, 2, 0.45), (3, 3, 0.05), (2, 2, 0.5), (2, 2, 1.0)],
)
def test_matches_brute_force_covariance(n_levels, n_branches, p_flip):
    spec = hierarchy_spectrum(n_levels, n_branches, p_flip, 1)
    C = _brute_force_C(n_levels, n_branches, p_flip)
    np.testing.assert_allclose(spec.singular_values**2, np.linalg.eigvalsh(C)[::-1], atol=EIG_ATOL)
    E = spec.eigenvectors
    np.testing.assert_allclose(E.T @ E, np.eye(len(C)), atol=EIG_ATOL)
    np.testing.assert_allclose(C @ E, E * spec.singular_values**2, atol=EIG_ATOL)
    assert spec.multiplicities.sum() == n_branches**n_levels
    np.testing.assert_array_equal(np.repeat(np.sqrt(spec.level_eigenvalues), spec.multiplicities), spec.singular_values)


def test_root_flip_probability_cancels():
    C0 = _brute_force_C(3, 2, 0.2, root_p_flip=0.0)
    np.testing.assert_allclose(C0, _brute_force_C(3, 2, 0.2, root_p_flip=0.5), atol=1e-15)
    np.testing.assert_array_equal(
        hierarchy_spectrum(3, 2, 0.2, 100, root_p_flip=0.0).singular_values,
        hierarchy_spectrum(3, 2, 0.2, 100).singular_values,
    )


def test_single_branch_tree_is_one_item():
    spec = hierarchy_spectrum(4, 1, 0.3, 400)
    np.testing.assert_array_equal(spec.singular_values, [20.0])
    np.testing.assert_array_equal(spec.eigenvectors, [[1.0]])


def test_descending_and_large_trees_skip_eigenvectors():
    spec = hierarchy_spectrum(12, 2, 0.2, 100)
    assert spec.singular_values.size == 4096 and spec.eigenvectors is None
    assert np.all(np.diff(spec.singular_values) <= 0)


@pytest.mark.parametrize("n_levels, n_branches, p_flip", [(3, 2, 0.15), (2, 3, 0.3)])
def test_sampled_spectrum_converges_like_one_over_sqrt_n(n_levels, n_branches, p_flip):
    errors = {}
    for n_features in (2500, 40000):
        predicted = hierarchy_spectrum(n_levels, n_branches, p_flip, n_features).singular_values
        errs = []
        for seed in range(SAMPLING_SEEDS):
            F = _sample_features(n_levels, n_branches, p_flip, n_features, np.random.default_rng(seed))
            errs.append(np.max(np.abs(np.linalg.svd(F, compute_uv=False) - predicted) / predicted))
        errors[n_features] = np.mean(errs)
        assert errors[n_features] < SAMPLING_C / np.sqrt(n_features)
    assert errors[40000] < errors[2500] / 2  # 16× the features: the error shrinks ~4×


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_levels=0), "n_levels must be an integer >= 1"),
        (dict(n_levels=1.5), "n_levels must be an integer"),
        (dict(n_branches=0), "n_branches must be an integer >= 1"),
        (dict(p_flip=-0.1), "p_flip must be finite and >= 0"),
        (dict(p_flip=1.1), "p_flip must be a probability in"),
        (dict(p_flip=np.nan), "p_flip must be finite"),
        (dict(n_features=0), "n_features must be an integer >= 1"),
        (dict(root_p_flip=2.0), "root_p_flip must be a probability in"),
        (dict(n_levels=30, n_branches=10), "the number of items"),
    ],
)
def test_refuses(kwargs, match):
    args = dict(n_levels=3, n_branches=2, p_flip=0.15, n_features=100) | kwargs
    with pytest.raises(ValueError, match=match):
        hierarchy_spectrum(**args)
