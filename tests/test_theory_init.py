"""Effective initial mode strength of the tutorial's random init: statistics and real (torch) training."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from strategies import orthogonal
from theory import (
    expected_initial_mode_strength,
    initial_mode_strength,
    learning_rate_to_eta,
    time_to_learn,
)

# Monte-Carlo means over 4000–12000 chi-square-like samples: relative standard error ≲ 0.7% (depth 2) and ≲ 1%
# (depth 1, an rms); the tolerances are ≳ 4 standard errors.
MC_RTOL_DEPTH2 = 0.03
MC_RTOL_DEPTH1 = 0.05
# Depth ≥ 3 averages norms, not squared norms: Jensen lowers the mean by ~1/(4N) per end layer (N = 10 here,
# ~5% in all), and 1000 draws leave a ~1% standard error.
MC_RTOL_DEEP = 0.10
# Depth 2: the per-weight a₀ predicts the top mode's half-learning epoch to a couple of epochs out of ~200;
# the weaker modes are pushed around by the stronger ones (coupling through the shared hidden layer) by ~2%.
TOP_MODE_EPOCHS = 2
LOWER_MODES_RTOL = 0.05
# Depth 3: a₀ is an order-of-magnitude estimate; simulations land within ~1.3× in time (module docstring).
DEEP_TIME_FACTOR = 2.0


def _random_weights(sizes, gamma, rng):
    pairs = zip(sizes[:-1], sizes[1:])
    return [rng.standard_normal((n_out, n_in)) * gamma / np.sqrt(n_in + n_out) for n_in, n_out in pairs]


def _problem(sizes, s, seed):
    P, n_out = sizes[0], sizes[-1]
    V, U = orthogonal(P, seed, len(s)), orthogonal(n_out, seed + 1, len(s))
    return np.eye(P), (U @ np.diag(s) @ V.T).T, U, V  # one-hot items, Σʸˣ = U diag(s) Vᵀ


def _half_learning_epochs(weights, X, Y, U, V, lr, s, n_max):
    """Train float64 torch SGD on MSELoss; the first epoch at which each mode's strength uᵀ W_tot v ≥ s/2."""
    layers = [torch.nn.Linear(w.shape[1], w.shape[0], bias=False).double() for w in weights]
    with torch.no_grad():
        for layer, w in zip(layers, weights):
            layer.weight.copy_(torch.from_numpy(w))
    net = torch.nn.Sequential(*layers)
    opt, loss_fn = torch.optim.SGD(net.parameters(), lr=lr), torch.nn.MSELoss()
    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    hit = np.full(len(s), -1)
    for k in range(n_max):
        with torch.no_grad():
            total = np.eye(X.shape[1])
            for layer in layers:
                total = layer.weight.numpy() @ total
        a = np.einsum("or,oi,ir->r", U, total, V)
        hit[(hit < 0) & (a >= s / 2)] = k
        if np.all(hit >= 0):
            return hit
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()
    raise AssertionError(f"not all modes learned within {n_max} epochs: {hit}")


def test_tutorial_value():
    assert 1.9e-25 < expected_initial_mode_strength(1e-12, [8, 30, 10000]) < 2.1e-25


@pytest.mark.parametrize("sizes, n_draws", [([8, 30, 100], 1000), ([5, 4, 300], 3000)])
def test_depth2_mean_matches_expected(sizes, n_draws):
    rng = np.random.default_rng(0)
    U, V = orthogonal(sizes[-1], 1, 4), orthogonal(sizes[0], 2, 4)
    draws = [initial_mode_strength(_random_weights(sizes, 1e-3, rng), U, V) for _ in range(n_draws)]
    assert np.mean(draws) == pytest.approx(expected_initial_mode_strength(1e-3, sizes), rel=MC_RTOL_DEPTH2)


def test_depth1_rms_matches_expected():
    rng = np.random.default_rng(0)
    U, V = orthogonal(7, 1, 3), orthogonal(5, 2, 3)
    draws = np.array([initial_mode_strength(_random_weights([5, 7], 0.1, rng), U, V) for _ in range(4000)])
    assert np.sqrt(np.mean(draws**2)) == pytest.approx(expected_initial_mode_strength(0.1, [5, 7]), rel=MC_RTOL_DEPTH1)
    assert (draws < 0).any()  # signed, returned as is


@pytest.mark.parametrize("sizes", [[4, 10, 10, 50], [6, 20, 15, 10, 30]])
def test_deep_mean_matches_expected(sizes):
    rng = np.random.default_rng(0)
    U, V = orthogonal(sizes[-1], 1, 3), orthogonal(sizes[0], 2, 3)
    draws = [initial_mode_strength(_random_weights(sizes, 0.5, rng), U, V) for _ in range(1000)]
    assert np.mean(draws) == pytest.approx(expected_initial_mode_strength(0.5, sizes), rel=MC_RTOL_DEEP)


def test_depth2_per_weight_a0_predicts_torch_training():
    sizes, s, gamma = [4, 10, 50], np.array([3.0, 2.0, 1.0]), 1e-6
    X, Y, U, V = _problem(sizes, s, 0)
    weights = _random_weights(sizes, gamma, np.random.default_rng(0))
    eta = 0.1 / s[0]
    lr = eta / learning_rate_to_eta(1.0, sizes[0], sizes[-1])
    measured = _half_learning_epochs(weights, X, Y, U, V, lr, s, 2000)
    predicted = time_to_learn(0.5, s, initial_mode_strength(weights, U, V), eta=eta, method="discrete")
    assert abs(measured[0] - predicted[0]) <= TOP_MODE_EPOCHS
    np.testing.assert_allclose(measured, predicted, rtol=LOWER_MODES_RTOL)


@pytest.mark.parametrize("seed", [0, 1])
def test_depth3_estimate_predicts_torch_training_within_a_factor(seed):
    sizes, s, gamma = [4, 10, 10, 50], np.array([3.0]), 0.3
    X, Y, U, V = _problem(sizes, s, seed)
    weights = _random_weights(sizes, gamma, np.random.default_rng(seed))
    eta = 0.02 / s[0]
    lr = eta / learning_rate_to_eta(1.0, sizes[0], sizes[-1])
    measured = _half_learning_epochs(weights, X, Y, U, V, lr, s, 3000)[0]
    for a0 in (expected_initial_mode_strength(gamma, sizes), initial_mode_strength(weights, U, V)[0]):
        predicted = time_to_learn(0.5, s[0], a0, eta=eta, depth=3, method="discrete")
        assert 1 / DEEP_TIME_FACTOR < measured / predicted < DEEP_TIME_FACTOR


@pytest.mark.parametrize(
    "gamma, sizes, match",
    [
        (0.0, [2, 3], "gamma must be finite and > 0"),
        (-1.0, [2, 3], "gamma must be finite and > 0"),
        (1.0, [2], "at least"),
        (1.0, 5, "layer_sizes must be a sequence"),
        (1.0, "23", "layer_sizes must be a sequence"),
        (1.0, [2, 0, 3], r"layer_sizes\[1\] must be an integer >= 1"),
        (1.0, [2, 2.5, 3], r"layer_sizes\[1\] must be an integer"),
    ],
)
def test_expected_refuses(gamma, sizes, match):
    with pytest.raises(ValueError, match=match):
        expected_initial_mode_strength(gamma, sizes)


_W = [np.ones((3, 2)), np.ones((4, 3))]
_U, _V = np.ones((4, 2)), np.ones((2, 2))


@pytest.mark.parametrize(
    "weights, U, V, match",
    [
        ([], _U, _V, "weights must be a non-empty list"),
        (np.ones((3, 2)), _U, _V, "weights must be a non-empty list"),
        ([np.ones((3, 2)), np.ones((4, 5))], _U, _V, "weights must chain"),
        ([np.ones(3)], _U, _V, r"weights\[0\] must be 2-dimensional"),
        ([np.ones((3, 2)), np.full((4, 3), np.nan)], _U, _V, r"weights\[1\] must not contain NaN"),
        (_W, np.ones((5, 2)), _V, "U must have N_out"),
        (_W, _U, np.ones((3, 2)), "V must have N_in"),
        (_W, np.ones((4, 1)), _V, "U and V must have the same number of columns"),
        (_W, np.ones(4), _V, "U must be 2-dimensional"),
    ],
)
def test_initial_refuses(weights, U, V, match):
    with pytest.raises(ValueError, match=match):
        initial_mode_strength(weights, U, V)
