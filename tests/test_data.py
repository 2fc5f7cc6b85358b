"""saxe.data: the branching-diffusion tree, its samples, generate_hsd and add_feature."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tutorial_reference as ref
from saxe import add_feature, as_generator, build_tree, generate_hsd, sample_from_tree

# Features per item for the statistical checks: enough that the sampling error of a correlation, at most
# 1/sqrt(N), is small against the gap between two tree levels ((1-2p)^2 apart, ≈ 0.12 or more at p <= 0.2).
N_STAT_FEATURES = 10_000
# Bound on |empirical − expected| for a mean of N_STAT_FEATURES products of ±1 values (variance ≤ 1/N): five
# standard deviations. With ≤ 40 hypothesis examples × ≤ 351 item pairs (≈ 14 000 comparisons) the chance
# that any one exceeds it is ≈ 14 000 · 5.7e-7 < 1 %, and the examples are derandomized (fixed) in CI.
STAT_TOL = 5.0 / math.sqrt(N_STAT_FEATURES)

seeds = st.integers(min_value=0, max_value=2**32 - 1)


def _lca_depth_below(i: int, j: int, n_branches: int, n_levels: int) -> int:
    """Number of levels between the leaves i, j and their lowest common ancestor (0 for i == j)."""
    k = 0
    while i != j:
        i //= n_branches
        j //= n_branches
        k += 1
    assert k <= n_levels
    return k


# --------------------------------------------------------------------------------------------- build_tree


@pytest.mark.parametrize("n_levels,n_branches", [(1, 1), (1, 3), (3, 2), (2, 4)])
def test_build_tree_matches_tutorial_list_form(n_levels, n_branches):
    ours = build_tree(n_levels, n_branches, 0.2, to_np_array=False)
    theirs = ref.build_tree(n_levels, n_branches, 0.2, to_np_array=False)
    assert ours == theirs


def test_build_tree_array_form():
    tree = build_tree(3, 2, 0.15)
    assert tree["level"].tolist() == [0, 1, 1, 2, 2, 2, 2] + [3] * 8
    assert tree["parent"][0] == -1
    assert all(tree["parent"][j] == (j - 1) // 2 for j in range(1, 15))
    np.testing.assert_array_equal(tree["pflip"], np.full(15, 0.15))


# --------------------------------------------------------------------------------------- sample_from_tree


def test_sample_from_tree_equals_tutorial_for_the_same_random_stream():
    """Same random numbers in (an MT19937 stream shared through public numpy API) ⇒ the tutorial's samples."""
    tree = build_tree(3, 2, 0.15)
    tree["pflip"][0] = 0.5
    ref_tree = ref.build_tree(3, 2, 0.15)
    ref_tree["pflip"][0] = 0.5
    bit_gen = np.random.MT19937(1234)
    saved = np.random.get_state()
    try:
        np.random.set_state(np.random.RandomState(bit_gen).get_state())
        theirs = ref.sample_from_tree(ref_tree, 300)
    finally:
        np.random.set_state(saved)
    ours = sample_from_tree(tree, 300, rng=np.random.Generator(bit_gen))  # bit_gen's state is still fresh
    assert ours.shape == theirs.shape == (300, 8)
    np.testing.assert_array_equal(ours, theirs)


@given(n_levels=st.integers(1, 3), n_branches=st.integers(1, 3), n_features=st.integers(1, 40), seed=seeds)
def test_sample_from_tree_shape_and_values(n_levels, n_branches, n_features, seed):
    x = sample_from_tree(build_tree(n_levels, n_branches, 0.3), n_features, rng=seed)
    assert x.shape == (n_features, n_branches**n_levels)
    assert set(np.unique(x)) <= {-1.0, 1.0}


@given(n_levels=st.integers(1, 3), n_branches=st.integers(2, 3),
       p_flip=st.floats(0.0, 0.3, allow_nan=False), seed=seeds)
def test_sample_from_tree_root_not_randomised_has_nonzero_mean(n_levels, n_branches, p_flip, seed):
    """Without generate_hsd's root flip of 0.5, an item's value has mean (1−2p)^(n_levels+1)."""
    x = sample_from_tree(build_tree(n_levels, n_branches, p_flip), N_STAT_FEATURES, rng=seed)
    expected = (1 - 2 * p_flip) ** (n_levels + 1)
    np.testing.assert_allclose(x.mean(axis=0), expected, atol=STAT_TOL)


def test_sample_from_tree_p_flip_zero_and_one():
    x0 = sample_from_tree(build_tree(2, 2, 0.0), 50, rng=0)
    np.testing.assert_array_equal(x0, 1.0)  # no node ever flips
    x1 = sample_from_tree(build_tree(2, 2, 1.0), 50, rng=0)
    np.testing.assert_array_equal(x1, -1.0)  # three flips on every root→leaf path


# ------------------------------------------------------------------------------------------- generate_hsd


@given(n_levels=st.integers(1, 4), n_branches=st.integers(1, 3), p_flip=st.floats(0.0, 1.0, allow_nan=False),
       n_features=st.integers(1, 50), seed=seeds)
def test_generate_hsd_shapes_values_labels(n_levels, n_branches, p_flip, n_features, seed):
    labels, features = generate_hsd(n_levels, n_branches, p_flip, n_features, rng=seed)
    P = n_branches**n_levels
    assert labels.shape == (P, P) and features.shape == (P, n_features)
    np.testing.assert_array_equal(labels, np.eye(P))
    assert np.all((features == 1.0) | (features == -1.0))


def test_generate_hsd_defaults_are_the_tutorials():
    labels, features = generate_hsd(rng=0)
    assert labels.shape == (8, 8) and features.shape == (8, 10_000)


@given(n_levels=st.integers(1, 3), n_branches=st.integers(2, 3),
       p_flip=st.floats(0.0, 0.4, allow_nan=False), seed=seeds)
def test_generate_hsd_has_the_trees_correlation_structure(n_levels, n_branches, p_flip, seed):
    """E[x_i x_j] = ((1−2p)²)^k with k the levels below the lowest common ancestor; item means ≈ 0."""
    _, features = generate_hsd(n_levels, n_branches, p_flip, N_STAT_FEATURES, rng=seed)
    P = n_branches**n_levels
    empirical = features @ features.T / N_STAT_FEATURES
    expected = np.array([[((1 - 2 * p_flip) ** 2) ** _lca_depth_below(i, j, n_branches, n_levels)
                          for j in range(P)] for i in range(P)])
    np.testing.assert_allclose(empirical, expected, atol=STAT_TOL)
    # root flip 0.5: every item's value is a fair sign, whatever p_flip
    np.testing.assert_allclose(features.mean(axis=1), 0.0, atol=STAT_TOL)


def test_generate_hsd_same_seed_same_data_and_generator_accepted():
    a = generate_hsd(3, 2, 0.15, 500, rng=7)
    b = generate_hsd(3, 2, 0.15, 500, rng=7)
    c = generate_hsd(3, 2, 0.15, 500, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[1], c[1])
    d = generate_hsd(3, 2, 0.15, 500, rng=8)
    assert not np.array_equal(a[1], d[1])


def test_generate_hsd_uses_no_global_random_state():
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    generate_hsd(3, 2, 0.15, 100, rng=1)
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_as_generator():
    g = np.random.default_rng(3)
    assert as_generator(g) is g
    assert isinstance(as_generator(None), np.random.Generator)
    assert as_generator(5).random() == np.random.default_rng(5).random()


# -------------------------------------------------------------------------------------------- add_feature


def test_add_feature_appends_to_its_argument_not_a_global():
    """Regression: the tutorial appended to a global ``tree_features`` and ignored its argument."""
    _, a = generate_hsd(3, 2, 0.15, 20, rng=1)
    _, b = generate_hsd(3, 2, 0.15, 20, rng=2)
    a_copy, b_copy = a.copy(), b.copy()
    new = [-1, 1, 1, 1, -1, -1, -1, -1]
    out_a, out_b = add_feature(a, new), add_feature(b, new)
    assert out_a.shape == out_b.shape == (8, 21)
    np.testing.assert_array_equal(out_a[:, :-1], a)
    np.testing.assert_array_equal(out_b[:, :-1], b)
    np.testing.assert_array_equal(out_a[:, -1], new)
    assert not np.array_equal(out_a, out_b)
    np.testing.assert_array_equal(a, a_copy)  # input not modified
    np.testing.assert_array_equal(b, b_copy)
    assert not np.shares_memory(out_a, a)


def test_add_feature_accepts_arrays_and_tensors():
    torch = pytest.importorskip("torch")
    feats = np.ones((3, 2))
    np.testing.assert_array_equal(add_feature(feats, np.array([1.0, -1.0, 1.0]))[:, -1], [1, -1, 1])
    np.testing.assert_array_equal(add_feature(feats, torch.tensor([1.0, -1.0, 1.0]))[:, -1], [1, -1, 1])


# ------------------------------------------------------------------------------------------ bad arguments


@pytest.mark.parametrize("kwargs,name", [
    (dict(p_flip=-0.1), "p_flip"),
    (dict(p_flip=1.5), "p_flip"),
    (dict(p_flip=float("nan")), "p_flip"),
    (dict(p_flip="0.1"), "p_flip"),
    (dict(n_levels=0), "n_levels"),
    (dict(n_levels=2.0), "n_levels"),
    (dict(n_levels=True), "n_levels"),
    (dict(n_branches=0), "n_branches"),
    (dict(n_branches=-2), "n_branches"),
    (dict(n_features=0), "n_features"),
    (dict(n_features=1.5), "n_features"),
    (dict(rng="seed"), "rng"),
    (dict(rng=-1), "rng"),
    (dict(rng=1.5), "rng"),
    (dict(rng=True), "rng"),
    (dict(rng=np.random.RandomState(0)), "rng"),
])
def test_generate_hsd_refuses_bad_arguments(kwargs, name):
    args = dict(n_levels=2, n_branches=2, p_flip=0.1, n_features=10, rng=0) | kwargs
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        generate_hsd(**args)


@pytest.mark.parametrize("call,name", [
    (lambda: sample_from_tree(build_tree(2, 2, 0.1), 0), "n_features"),
    (lambda: sample_from_tree({"level": [0]}, 5), "tree"),
    (lambda: sample_from_tree(dict(build_tree(1, 2, 0.1), pflip=np.array([0.5, 2.0, 0.1])), 5), "pflip"),
    (lambda: build_tree(2, 2, 1.01), "p_flip"),
    (lambda: add_feature(np.ones((3, 2)), [1, 1]), "new_feature"),
    (lambda: add_feature(np.ones((3, 2)), [1, float("nan"), 1]), "new_feature"),
    (lambda: add_feature(np.ones(3), [1, 1, 1]), "features"),
    (lambda: add_feature([[1, float("inf")]], [1]), "features"),
])
def test_tree_helpers_refuse_bad_arguments(call, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call()
