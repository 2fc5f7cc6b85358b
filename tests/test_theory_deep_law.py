"""The exact-in-law a priori half-learning distribution (theory.deep_law): the reduced state's initial law against
real inits, the medians against independently iterated seeds, bad input; and the reduced gradient's two
association orders (theory.state.descent_directions) against the plain products."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import ks_2samp
from test_theory_deep_init import _measured

import theory
from theory.deep_law import MAX_EPOCHS, half_learning_exact_law, reduced_initial_law
from theory.errors import OrbitDivergenceError
from theory.state import descent_directions, product

# Two-sample Kolmogorov–Smirnov test of law draws against real inits (fixed seeds, so deterministic): a wrong σ,
# a missing Gram block or a wrong χ² degree moves these statistics by many standard errors at 600 samples each
# (p ≪ 1e-6); 1e-3 keeps a correct law from failing by chance.
KS_P_MIN = 1e-3
# Medians of the law (D draws) and of independently iterated seeds differ by sampling only; the standard error of
# a sample median ≈ IQR/√n. 4 combined standard errors: a false failure per mode has probability ≈ 6e-5.
Z_TOL = 4.0


def _real_reduced_stats(sizes, s, gamma, n):
    """Top singular value of W_tot, ‖W_1‖_F² and ‖W_L‖_F² of n real inits W_l ~ N(0, σ_l²) (full matrices)."""
    rng = np.random.default_rng(123)
    sig = theory.init.layer_sigmas(gamma, sizes)
    out = []
    for _ in range(n):
        ws = [rng.standard_normal((o, i)) * sd for (i, o), sd in zip(zip(sizes[:-1], sizes[1:]), sig)]
        W = product(ws)
        out.append((np.linalg.svd(W, compute_uv=False)[0], np.sum(ws[0] ** 2), np.sum(ws[-1] ** 2)))
    return np.array(out)


@pytest.mark.parametrize("sizes, r", [
    ([6, 5, 7, 40], 3),    # N_out − r > n_{L−1}: Bartlett factor on the output side; N_in − r ≤ n_1: Gaussian block
    ([12, 4, 5, 6], 2),    # N_in − r > n_1: Bartlett on the input side; N_out − r ≤ n_{L−1}: Gaussian block
    ([3, 6, 300], 3),      # depth 2, N_in = r (no input complement)
])
def test_reduced_initial_law_matches_real_inits(sizes, r):
    """The law's reduced layers give W_tot's top singular value and the first and last layers' norms with the law
    of real full-size inits (the reduction keeps W_1W_1ᵀ = B_1B_1ᵀ and W_LᵀW_L = B_LᵀB_L)."""
    s, n = np.linspace(3.0, 1.0, r), 600
    layers, target = reduced_initial_law(np.random.default_rng(7), n, s, sizes, 0.7)
    assert target.shape == (layers[-1].shape[1], layers[0].shape[2])
    np.testing.assert_array_equal(np.diag(target)[:r], s)
    law = np.column_stack([np.linalg.svd(product(layers), compute_uv=False)[:, 0],
                           np.sum(layers[0] ** 2, axis=(1, 2)), np.sum(layers[-1] ** 2, axis=(1, 2))])
    real = _real_reduced_stats(sizes, s, 0.7, n)
    for j in range(3):
        assert ks_2samp(law[:, j], real[:, j]).pvalue > KS_P_MIN, j


def _median_se(x):
    q25, q75 = np.quantile(x, [0.25, 0.75], axis=0)
    return (q75 - q25) / np.sqrt(x.shape[0])


@pytest.mark.parametrize("sizes, gamma", [([4, 10, 10, 60], 0.05), ([4, 8, 8, 8, 50], 0.2),
                                          ([4, 3, 3, 20], 1.0)])  # large init, bottleneck: the model refuses it
def test_exact_law_medians_match_independently_iterated_seeds(sizes, gamma):
    """Half-learning medians of the law against 32 seeds of real (full-size) inits, each iterated by the exact
    theory state (= float64 SGD): equal up to sampling, at depth 3 and 4, near-degenerate modes included."""
    s = np.array([6.0, 4.0, 3.9, 2.0])
    depth = len(sizes) - 1
    eta = 0.4 / (depth * s[0] ** (2 - 2 / depth))
    meas = _measured(sizes, s, gamma, eta, range(32))
    law = half_learning_exact_law(s, sizes, gamma, eta, n_draws=128, seed=3)
    live = min(min(sizes[1:-1]), s.size)  # beyond the narrowest width nothing is learned, measured or predicted
    assert np.isinf(meas[:, live:]).all() and np.isinf(law.samples[:, live:]).all()
    meas, samples = meas[:, :live], law.samples[:, :live]
    assert np.isfinite(meas).all() and np.isfinite(law.quantiles[:, :live]).all()
    assert (np.isinf(samples).sum(axis=0) <= 0.1 * samples.shape[0]).all()  # a few slowest draws left
    z = (law.median[:live] - np.median(meas, axis=0)) / np.hypot(_median_se(meas), _median_se(samples))
    assert np.abs(z).max() <= Z_TOL, z
    if gamma < 1.0:  # the model (theory.half_learning_distribution), small inits only: same ballpark, not exact
        model = theory.half_learning_distribution(s, sizes, gamma, eta, n_draws=64)
        assert np.all(np.abs(model.median[:live] / law.median[:live] - 1) < 0.3)


def test_modes_beyond_the_narrowest_width_never_learn_and_same_seed_same_numbers():
    s = np.array([5.0, 3.0, 2.0])
    sizes, gamma, eta = [3, 2, 6, 20], 0.05, 0.3 / (3 * 5.0 ** (4 / 3))
    a = half_learning_exact_law(s, sizes, gamma, eta, n_draws=16, seed=1)
    b = half_learning_exact_law(s, sizes, gamma, eta, n_draws=16, seed=1)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert np.isinf(a.samples[:, 2]).all() and np.isfinite(a.quantiles[:, :2]).all()
    # at most one draw may be left unfollowed: the 90 % quantile of 16 reads the sorted samples 13 and 14
    assert (np.isinf(a.samples[:, :2]).sum(axis=0) <= 1).all() and a.censored_after < np.inf
    assert np.isinf(a.median[2]) and a.quantiles.shape == (3, 3)
    full = half_learning_exact_law(s, sizes, gamma, eta, n_draws=16, seed=1, levels=(0.5, 1.0))
    assert np.isfinite(full.samples[:, :2]).all() and full.censored_after == np.inf  # the maximum asked: all
    np.testing.assert_array_equal(full.samples[np.isfinite(a.samples)], a.samples[np.isfinite(a.samples)])


def test_samples_are_each_draw_iterated_by_the_exact_map_and_read_as_measured_epochs_are():
    """Row k = after k updates, and the crossing rule of measured runs: each draw's epochs equal those of its own
    reduced layers iterated one by one with theory.state.iterate and read by experiments.metrics."""
    from experiments.metrics import half_learning_epochs
    from theory.state import iterate

    s, sizes, gamma = np.array([5.0, 3.0, 2.9]), [4, 6, 6, 30], 0.05
    eta = 0.3 / (3 * 5.0 ** (4 / 3))
    law = half_learning_exact_law(s, sizes, gamma, eta, n_draws=6, seed=11, levels=(0.5, 1.0))
    layers, target = reduced_initial_law(np.random.default_rng(11), 6, s, sizes, gamma)
    n = int(law.samples.max()) + 1
    for d in range(6):
        prods, _ = iterate(n, [B[d] for B in layers], target, eta)
        curves = np.linalg.svd(prods, compute_uv=False)[:, : s.size]
        np.testing.assert_array_equal(law.samples[d], half_learning_epochs(curves, s))


def test_asking_for_the_leading_modes_only_keeps_their_epochs_and_stops_sooner():
    s, sizes, gamma = np.array([5.0, 3.0, 1.0, 0.4]), [4, 6, 6, 30], 0.05
    eta = 0.3 / (3 * 5.0 ** (4 / 3))
    full = half_learning_exact_law(s, sizes, gamma, eta, n_draws=8, seed=2, levels=(0.5, 1.0))
    two = half_learning_exact_law(s, sizes, gamma, eta, n_draws=8, seed=2, levels=(0.5, 1.0), modes=2)
    np.testing.assert_array_equal(two.samples, full.samples[:, :2])  # the same dynamics: all of s is the target
    assert two.samples.max() < 0.5 * full.samples[:, 3].min()
    with pytest.raises(ValueError, match="modes must be at most the 4 singular values given"):
        half_learning_exact_law(s, sizes, gamma, eta, modes=5)


def test_narrow_hidden_layers_run_with_the_default_cap():
    """Where the balanced a priori epoch is far too early (a hidden layer barely wider than the modes), the default
    cap still lets every asked quantile finish."""
    s = np.array([5.0, 3.9, 3.2, 2.5, 2.0, 1.9, 1.8, 1.7])
    law = half_learning_exact_law(s, [8, 9, 9, 200], 0.03, 0.3 / (3 * 5.0 ** (4 / 3)), n_draws=16)
    assert np.isfinite(law.quantiles).all()


def test_bad_input_is_refused_with_the_argument_named():
    s, sizes = np.array([5.0, 3.0]), [2, 6, 6, 20]
    eta = 0.3 / (3 * 5.0 ** (4 / 3))
    with pytest.raises(ValueError, match=r"max_epochs=5 is too short.*mode 1: 8, mode 2: 8 of 8; at most 0 may be left"):
        half_learning_exact_law(s, sizes, 0.05, eta, n_draws=8, max_epochs=5)
    with pytest.raises(ValueError, match=f"exceeds the default cap MAX_EPOCHS = {MAX_EPOCHS}.*half_learning_distr"):
        half_learning_exact_law(s, sizes, 1e-6, eta, n_draws=8)  # a plateau of ~1e7 epochs
    with pytest.raises(OrbitDivergenceError, match="eta="):
        half_learning_exact_law(s, sizes, 0.05, 40 * eta, n_draws=8, max_epochs=2000)
    with pytest.raises(ValueError, match="max_epochs must be an integer"):
        half_learning_exact_law(s, sizes, 0.05, eta, n_draws=8, max_epochs=2.5)
    with pytest.raises(ValueError, match="gamma=.*small-init domain"):  # the model's domain, not the law's
        theory.half_learning_distribution(s, sizes, 50.0, eta)
    with pytest.raises(ValueError, match="s must be sorted in descending order"):
        half_learning_exact_law(s[::-1], sizes, 0.05, eta)
    with pytest.raises(ValueError, match="n_draws must be an integer >= 1"):
        half_learning_exact_law(s, sizes, 0.05, eta, n_draws=0)


@given(sizes=st.lists(st.integers(1, 7), min_size=2, max_size=5), batch=st.integers(1, 3), seed=st.integers(0, 99))
def test_descent_directions_equal_the_plain_products(sizes, batch, seed):
    """Both association orders (R ≥ C: the residual carried down from the top; R < C: up from the bottom) give
    (B_L⋯B_{l+1})ᵀ G (B_{l−1}⋯B_1)ᵀ."""
    rng = np.random.default_rng(seed)
    layers = [rng.standard_normal((batch, o, i)) for i, o in zip(sizes[:-1], sizes[1:])]
    G = rng.standard_normal((batch, sizes[-1], sizes[0]))
    got = descent_directions(layers, G)
    for l, g in enumerate(got):
        above = product(layers[l + 1:]) if l + 1 < len(layers) else np.broadcast_to(np.eye(sizes[-1]), G.shape[:1]
                                                                                     + (sizes[-1],) * 2)
        below = product(layers[:l]) if l else np.broadcast_to(np.eye(sizes[0]), G.shape[:1] + (sizes[0],) * 2)
        want = above.swapaxes(1, 2) @ G @ below.swapaxes(1, 2)
        np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-12 * np.abs(want).max(initial=1.0))
