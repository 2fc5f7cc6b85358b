"""saxe.regression.linear_regression, and the tutorial's bonus check: the analytic least-squares map equals
the trained zero-depth network and the trained deep network's W_tot."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tutorial_reference as ref
from saxe import LNNet, LRNet, generate_hsd, initializer_, linear_regression, train, w_tot

# float64 least squares on ≤ 8×8 well-separated (integer-entry) problems: backward-stable solvers agree to a
# few hundred eps relative to the solution's size; 1e-9 leaves a large margin and still fails on any real error.
LSTSQ_RTOL = 1e-9
# Rounding floor of a trained float64 W_tot (entries O(1), a few hundred updates): measured ≈ 1e-12 in the
# Frobenius norm over 8×1000 entries; 1e-10 keeps it out of the convergence bounds below.
TRAINED_FLOOR = 1e-10
# The deep net's residual enters the linear regime a few epochs before the measurement starts; its decay
# rate is asymptotically exactly 1 − 2η s_min, and the residual nonlinearity at ‖E‖/s ≈ 1e-5 changes the
# factor over the window by far less than 5 %.
DEEP_RATE_SLACK = 1.05
# ... and the slowest mode carries most of the residual at the start of the window, so the bound is tight:
# the measured residual is above this fraction of it (it is 0.998 here). A bound that does not bite fails.
DEEP_BOUND_TIGHTNESS = 0.3

integer_entries = st.integers(-3, 3)


# ----------------------------------------------------------------------------------------- least squares


def test_tutorial_exercise_recovers_w_true():
    """The tutorial's exercise data: 37 noisy samples of a 3×3 map; also equals its normal-equation answer."""
    rng = np.random.default_rng(2021)
    W_true = rng.integers(0, 10, size=(3, 3)).astype(float)
    X_train = rng.random((3, 37))
    Y_train = W_true @ X_train + rng.normal(scale=0.01, size=(3, 37))
    W = linear_regression(X_train.T, Y_train.T)  # sample-major; the tutorial's function took (Dx, M), (Dy, M)
    np.testing.assert_allclose(W, ref.linear_regression(X_train, Y_train), rtol=LSTSQ_RTOL)
    assert np.abs(W - W_true).max() < 0.2  # noise 0.01 over 37 samples: the estimate is close to the truth


@given(X=hnp.arrays(np.float64, st.tuples(st.integers(1, 8), st.integers(1, 8)), elements=integer_entries),
       data=st.data())
def test_least_squares_is_the_minimum_norm_solution(X, data):
    """With XᵀX singular (or not) the answer is (X⁺ Y)ᵀ, the minimum-norm minimiser (sample-major X, Y)."""
    M, Dx = X.shape
    Y = data.draw(hnp.arrays(np.float64, (M, data.draw(st.integers(1, 5))), elements=integer_entries))
    W = linear_regression(X, Y)
    expected = (np.linalg.pinv(X) @ Y).T
    assert W.shape == (Y.shape[1], Dx)
    np.testing.assert_allclose(W, expected, rtol=0, atol=LSTSQ_RTOL * max(1.0, np.abs(expected).max()))


def test_singular_inputs_give_minimum_norm_not_any_minimiser():
    """Duplicated input rows: any split of the weight between them fits equally well; the answer splits it
    evenly (minimum norm), as gradient descent from zero weights does."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((3, 10))
    X = np.vstack([base, base[:1]])  # input 3 copies input 0: X Xᵀ is singular
    W_true = rng.standard_normal((2, 3))
    Y = W_true @ base
    W = linear_regression(X.T, Y.T)
    np.testing.assert_allclose(W @ X, Y, atol=1e-12)  # a minimiser (exact fit)
    np.testing.assert_allclose(W[:, 0], W[:, 3], atol=1e-12)  # the even split
    np.testing.assert_allclose(W[:, 0] + W[:, 3], W_true[:, 0], atol=1e-12)
    np.testing.assert_allclose(W, Y @ np.linalg.pinv(X), atol=1e-12)
    # more inputs than samples: also singular
    X_wide = rng.standard_normal((6, 4))
    Y_wide = rng.standard_normal((2, 4))
    np.testing.assert_allclose(linear_regression(X_wide.T, Y_wide.T), Y_wide @ np.linalg.pinv(X_wide), atol=1e-12)


@pytest.mark.parametrize("X,Y,name", [
    (np.ones((5, 3)), np.ones((4, 2)), "samples"),
    (np.ones(5), np.ones((5, 2)), "X"),
    (np.ones((5, 3)), np.full((5, 2), np.nan), "Y"),
    (np.full((5, 3), np.inf), np.ones((5, 2)), "X"),
    ("abc", np.ones((5, 2)), "X"),
])
def test_linear_regression_refuses_bad_arguments(X, Y, name):
    with pytest.raises(ValueError, match=name):
        linear_regression(X, Y)


# --------------------------------------------------------------------------- the tutorial's bonus check


@pytest.fixture(scope="module")
def tree_data():
    return generate_hsd(3, 2, 0.15, 1000, rng=2021)


@pytest.mark.parametrize("engine", ["autograd", "reduced"])
def test_zero_depth_network_converges_to_the_analytic_map_at_the_predicted_rate(engine):
    """LRNet, lr = 1000, 250 epochs (the tutorial's bonus section, its 10 000 features), float64.

    With one-hot inputs the SGD step is W ← W − η (W − Yᵀ), η = 2·lr/(P·N_out), so the error after k steps is
    exactly (1 − η)^k (W_0 − W*): the bound is an equality up to rounding, and the test checks both sides.
    """
    labels, features = generate_hsd(3, 2, 0.15, 10_000, rng=7)
    analytic = linear_regression(labels, features)
    np.testing.assert_array_equal(analytic, features.T)  # one-hot inputs: W* = Yᵀ exactly
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2021)
        model = LRNet(8, 10_000).double()  # the tutorial's default nn.Linear initialisation
    W0 = w_tot(model).numpy().copy()
    lr, n_epochs = 1000.0, 250
    P, n_out = features.shape
    eta = 2 * lr / (P * n_out)
    train(model, labels, features, n_epochs, lr, engine=engine)
    W = w_tot(model).numpy()
    predicted = (1 - eta) ** n_epochs * (W0 - analytic)
    bound = np.abs(predicted).max()
    err = np.abs(W - analytic).max()
    assert err <= bound + TRAINED_FLOOR
    assert err >= 0.5 * bound  # the bound is not trivially loose: it is the actual error
    np.testing.assert_allclose(W - analytic, predicted, rtol=0, atol=TRAINED_FLOOR)
    assert np.allclose(analytic, W, atol=1e-2)  # the tutorial's own check


def test_deep_network_converges_to_the_analytic_map_at_the_predicted_rate(tree_data):
    """LNNet 8-30-1000 from gamma = 1e-12 at η s_max = 0.4 (the tutorial's ratio): W_tot → the analytic map.

    Once every mode is learned, the residual E = W_tot − W* of the balanced solution obeys, to first order,
    E ← E − η (U S Uᵀ E + E V S Vᵀ): its slowest component decays by (1 − 2η s_min) per epoch. So from a
    residual r₁ at epoch n₁ the residual at n₁ + Δ is at most r₁ (1 − 2η s_min)^Δ.
    """
    labels, features = tree_data
    analytic = linear_regression(labels, features)
    P, n_out = features.shape
    s = np.linalg.svd(features, compute_uv=False)
    lr = 0.4 * P * n_out / (2 * s[0])  # η s_max = 0.4; the stable bound is η s_max < 1
    eta = 2 * lr / (P * n_out)
    model = LNNet(8, 30, n_out).double()
    initializer_(model, 1e-12, generator=torch.Generator().manual_seed(0))
    n1, window = 220, 20
    train(model, labels, features, n1, lr)
    r1 = np.linalg.norm(w_tot(model).numpy() - analytic)
    assert 1e-7 < r1 < 1e-2 * s[-1]  # every mode learned, residual in the linear regime but well above rounding
    train(model, labels, features, window, lr)
    deep_W = w_tot(model).numpy()
    r2 = np.linalg.norm(deep_W - analytic)
    bound = r1 * (1 - 2 * eta * s[-1]) ** window
    assert r2 <= DEEP_RATE_SLACK * bound + TRAINED_FLOOR
    assert r2 >= DEEP_BOUND_TIGHTNESS * bound
    np.testing.assert_allclose(deep_W, analytic, rtol=0, atol=DEEP_RATE_SLACK * bound + TRAINED_FLOOR)
    assert np.allclose(analytic, deep_W, atol=1e-2)  # the tutorial's own check

