"""Properties over drawn data sets and really trained networks (no function checked against its own copy).

* a network trained to convergence (the fast exact engine) ends at the least-squares map of its data, whatever
  the inputs' statistics, when it is wide enough;
* the RSMs recorded during real training are symmetric PSD Gram matrices of the right rank, equal to the hidden
  activity of the network they were recorded from, and equal to the exact theory's prediction;
* the singular values the engines record are those of an SVD of the network's actual W_tot.
"""
from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import saxe
import theory
from strategies import seeds

# A converged float64 network sits at the least-squares map up to the residual of the slowest mode after the
# epochs run (≤ 1e-8 relative with the epochs chosen below) and rounding (~1e-14): 1e-6 fails on any real error.
CONVERGED_RTOL = 1e-6
# Gram matrices of float64 activity: symmetric and PSD to ~10 eps relative to their largest entry.
GRAM_RTOL = 1e-12
# Theory vs training on these small, quickly learned problems: the float64 floor is ≲ 1e-11.
THEORY_RTOL = 1e-9


@st.composite
def problems(draw):
    """(X, Y): one-hot items, or real-valued inputs (Σˣˣ ≠ I) with more samples than inputs."""
    seed = draw(seeds())
    rng = np.random.default_rng(seed)
    P = draw(st.integers(2, 6))
    n_out = draw(st.integers(2, 12))
    if draw(st.booleans()):
        X = np.eye(P)
    else:
        X = rng.standard_normal((P, draw(st.integers(1, P))))
    return X, rng.standard_normal((P, n_out))


def _net(X, Y, hidden, gamma, seed):
    net = saxe.make_net(X.shape[1], hidden, Y.shape[1]).double()
    saxe.initializer_(net, gamma, generator=torch.Generator().manual_seed(seed))
    return net


@settings(max_examples=15)
@given(data=problems(), depth=st.integers(1, 3), seed=seeds())
def test_trained_network_converges_to_the_least_squares_map(data, depth, seed):
    X, Y = data
    wide = [max(X.shape[1], Y.shape[1])] * (depth - 1)  # no bottleneck
    lr = 0.5 * theory.stable_lr(X, Y, depth=depth, hidden=wide or None).learned
    net = _net(X, Y, wide, 0.3, seed)
    w0 = [w.detach().numpy().copy() for w in saxe.weights(net)]
    # until the exact theory has the loss within 1e-14 of its least value: converged, by the theory's own clock
    pred = theory.predictor(X, Y, lr, weights=w0)
    n = 64
    while pred.loss(n) - pred.best_loss() > 1e-14 * pred.loss(0) and n < 200_000:
        n *= 2
    saxe.train(net, X, Y, n, lr, engine="reduced", record_rsm=False)
    W_star = saxe.linear_regression(X, Y)
    W = saxe.w_tot(net).numpy()
    np.testing.assert_allclose(X @ W.T, X @ W_star.T, rtol=0, atol=CONVERGED_RTOL * np.abs(X @ W_star.T).max())


@settings(max_examples=15)
@given(data=problems(), hidden=st.integers(1, 8), gamma=st.sampled_from([1e-3, 0.5]), n=st.integers(0, 40),
       engine=st.sampled_from(["autograd", "reduced"]), seed=seeds())
def test_recorded_rsms_are_the_hidden_gram_matrices_of_the_network(data, hidden, gamma, n, engine, seed):
    X, Y = data
    lr = 0.5 * theory.stable_lr(X, Y, hidden=hidden).learned
    net = _net(X, Y, [hidden], gamma, seed)
    w0 = [w.detach().numpy().copy() for w in saxe.weights(net)]
    rec = saxe.train(net, X, Y, n, lr, engine=engine)
    scale = max(np.abs(rec.rsms).max(), 1e-300)
    assert np.abs(rec.rsms - np.swapaxes(rec.rsms, 1, 2)).max() <= GRAM_RTOL * scale
    eig = np.linalg.eigvalsh(rec.rsms)
    assert eig.min() >= -GRAM_RTOL * scale * X.shape[0]
    rank = min(hidden, X.shape[0], X.shape[1])  # h = X W_1ᵀ is P × N_h of rank ≤ min(N_h, rank X)
    assert np.all(np.sum(eig > 1e-9 * scale, axis=1) <= rank)
    h = X @ saxe.weights(net)[0].detach().numpy().T  # the last row is the network as it is now
    np.testing.assert_allclose(rec.rsms[-1], h @ h.T, rtol=0, atol=GRAM_RTOL * 10 * scale)
    pred = theory.predictor(X, Y, lr, weights=w0)
    np.testing.assert_allclose(pred.rsm(np.arange(n + 1)), rec.rsms, rtol=0, atol=THEORY_RTOL * scale)


@settings(max_examples=15)
@given(data=problems(), hidden=st.lists(st.integers(1, 8), min_size=0, max_size=2), n=st.integers(0, 30),
       engine=st.sampled_from(["autograd", "reduced"]), seed=seeds())
def test_recorded_singular_values_are_those_of_the_actual_w_tot(data, hidden, n, engine, seed):
    X, Y = data
    lr = 0.5 * theory.stable_lr(X, Y, depth=len(hidden) + 1, hidden=hidden or None).learned
    net = _net(X, Y, hidden, 0.5, seed)
    rec = saxe.train(net, X, Y, n, lr, engine=engine, record_rsm=False)
    W = saxe.w_tot(net, dtype=torch.float64).numpy()
    sv = np.linalg.svd(W, compute_uv=False)
    np.testing.assert_allclose(rec.modes[-1], sv, rtol=0, atol=1e-12 * max(sv.max(), 1e-300))
    assert np.all(np.diff(rec.modes, axis=1) <= 1e-12 * max(rec.modes.max(), 1e-300))  # sorted, descending
