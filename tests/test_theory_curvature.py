"""Sharpness and stable learning rates: against a finite-difference Hessian, the closed form, and training."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import saxe
import theory
from plain_sgd import plain_sgd
from strategies import seeds


def _loss(X, Y, ws):
    W = ws[0]
    for w in ws[1:]:
        W = w @ W
    return 0.5 * np.sum((Y - X @ W.T) ** 2)


def _fd_hessian_top(X, Y, ws, h=1e-4):
    """λ_max of the Hessian of ½‖Y − X W_totᵀ‖² by central differences of the loss (independent of our HVPs)."""
    flat = np.concatenate([w.ravel() for w in ws])
    shapes, splits = [w.shape for w in ws], np.cumsum([w.size for w in ws])[:-1]

    def f(v):
        return _loss(X, Y, [p.reshape(s) for p, s in zip(np.split(v, splits), shapes)])

    n = flat.size
    H = np.empty((n, n))
    E = np.eye(n) * h
    f0 = f(flat)
    for i in range(n):
        for j in range(i, n):
            H[i, j] = H[j, i] = (f(flat + E[i] + E[j]) - f(flat + E[i] - E[j]) - f(flat - E[i] + E[j])
                                 + f(flat - E[i] - E[j])) / (4 * h * h) if i != j else \
                (f(flat + E[i]) - 2 * f0 + f(flat - E[i])) / (h * h)
    return np.linalg.eigvalsh(H)[-1]


@settings(max_examples=8)
@given(seed=seeds(), depth=st.sampled_from([1, 2, 3]), whitened=st.booleans(), scale=st.sampled_from([0.1, 1.0]))
def test_sharpness_equals_finite_difference_hessian(seed, depth, whitened, scale):
    rng = np.random.default_rng(seed)
    X = np.eye(3) if whitened else rng.standard_normal((4, 3))
    Y = rng.standard_normal((X.shape[0], 5))
    sizes = [3] + [2] * (depth - 1) + [5]
    ws = [rng.standard_normal((o, i)) * scale for i, o in zip(sizes[:-1], sizes[1:])]
    assert theory.sharpness(X, Y, ws) == pytest.approx(_fd_hessian_top(X, Y, ws), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_learned_bound_is_the_closed_form_at_the_balanced_minimum(depth):
    X, Y = saxe.generate_hsd(n_features=50, rng=1)
    s = theory.io_svd(X, Y)[1]
    closed = theory.max_stable_lr(s[0], 8, 50, depth=depth)
    assert theory.stable_lr(X, Y, depth=depth).learned == pytest.approx(closed, rel=1e-12)
    # the numerical route (used for bottlenecks and Σˣˣ ≠ I) agrees at the balanced best fit
    ws = theory.balanced_best_fit(X, Y, depth, [8] * (depth - 1))
    per_lr = theory.learning_rate_to_eta(1.0, 8, 50)
    assert 2.0 / (per_lr * theory.sharpness(X, Y, ws)) == pytest.approx(closed, rel=1e-7)


def test_bound_from_the_curvature_of_a_large_init_and_the_error_that_quotes_it():
    """Regression: depth 4, γ = 3 diverges in 3 epochs at 0.4 × the learned bound (3.283, then quoted as 'the
    largest stable lr'); the initial weights' curvature allows only 0.16."""
    X, Y = saxe.generate_hsd(n_features=100, rng=0)
    net = saxe.make_net(8, [30, 30, 30], 100).double()
    saxe.initializer_(net, 3.0, generator=torch.Generator().manual_seed(0))
    w0 = [w.detach().numpy().copy() for w in saxe.weights(net)]
    b = theory.stable_lr(X, Y, depth=4, weights=w0)
    assert b.limited_by == "init" and b.init < 0.1 * b.learned
    lr = 0.4 * b.learned
    with pytest.raises(saxe.DivergenceError) as info:
        saxe.train(net, X, Y, 50, lr)
    err = info.value
    assert err.epoch <= 5 and err.max_stable_lr == pytest.approx(b.init)
    assert f"{b.init:.6g}" in str(err) and "initial weights" in str(err)
    assert plain_sgd(X, Y, w0, lr, 50).diverged_at == err.epoch  # the independent loop agrees
    # ... and a lr a few times the initial bound may still recover (the bound guarantees, it does not forbid)
    assert plain_sgd(X, Y, w0, 4 * b.init, 300).diverged_at < 0


def test_bottleneck_bound_is_numerical_and_separates_settling_from_not():
    X, Y = saxe.generate_hsd(n_features=100, rng=0)
    b = theory.stable_lr(X, Y, hidden=3)
    ws = theory.balanced_best_fit(X, Y, 2, [3])
    best = theory.predictor(X, Y, b.learned, weights=ws).best_loss()
    below = plain_sgd(X, Y, [w * (1 + 1e-6) for w in ws], 0.95 * b.learned, 2000)
    assert below.diverged_at < 0 and below.losses[-1] == pytest.approx(best, rel=1e-9)
    above = plain_sgd(X, Y, [w * (1 + 1e-6) for w in ws], 1.1 * b.learned, 2000)
    assert above.diverged_at >= 0 or np.abs(above.losses[-100:] - best).max() > 1e-3 * best  # never settles


def test_non_whitened_bound_holds_below_and_the_balanced_minimum_repels_above():
    """With Σˣˣ ≠ I the minimum reached from a small init (balanced) is not the flattest: above its bound SGD
    leaves it (the balance W₂ᵀW₂ − W₁W₁ᵀ grows from 0) and may settle on a flatter, unbalanced minimum."""
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((12, 4)), rng.standard_normal((12, 7))
    b = theory.stable_lr(X, Y, depth=2)
    ws = theory.balanced_best_fit(X, Y, 2)
    start = [w * (1 + 1e-6) for w in ws]
    for factor, moves in ((0.95, False), (1.1, True)):
        net = saxe.make_net(4, [4], 7).double()
        with torch.no_grad():
            for p, w in zip(saxe.weights(net), start):
                p.copy_(torch.as_tensor(w))
        rec = saxe.train(net, X, Y, 3000, factor * b.learned, engine="autograd")
        W1, W2 = (w.detach().numpy() for w in saxe.weights(net))
        imbalance = np.abs(W2.T @ W2 - W1 @ W1.T).max() / np.abs(W1 @ W1.T).max()
        assert bool(imbalance > 1e-3) is moves, (factor, imbalance)
        assert np.isfinite(rec.losses).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(depth=3, hidden=[1]), "disagree"), (dict(hidden=0), "hidden must be an integer >= 1"),
    (dict(hidden=-3), "hidden must be an integer >= 1"), (dict(hidden=[2.7]), r"hidden\[0\] must be an integer"),
    (dict(lr=-1.0), "lr must be finite and > 0"),
    (dict(depth=5, weights=[np.ones((3, 4)), np.ones((6, 3))]), "disagree"),
    (dict(weights=[np.ones((0, 4)), np.ones((6, 0))]), r"weights\[0\] must have at least 1 row"),
    (dict(hidden=[3], weights=[np.ones((2, 4)), np.ones((6, 2))]), "disagrees with the widths"),
])
def test_stable_lr_refuses_shapes_that_disagree(kwargs, match):
    """Regression: these gave an IndexError or numpy's 'need at least one array to stack', a truncated width, or a
    negative lr accepted; weights now also set the depth (they were taken at depth 2 unless depth was passed)."""
    X, Y = np.eye(4), np.random.default_rng(0).normal(size=(4, 6))
    with pytest.raises(ValueError, match=match):
        theory.stable_lr(X, Y, **kwargs)


def test_stable_lr_takes_the_depth_from_the_weights():
    X, Y = np.eye(4), np.random.default_rng(0).normal(size=(4, 6))
    ws = [np.full((5, 4), 0.1), np.full((5, 5), 0.1), np.full((6, 5), 0.1)]
    assert theory.stable_lr(X, Y, weights=ws).learned == pytest.approx(theory.stable_lr(X, Y, depth=3).learned,
                                                                       rel=1e-12)
