"""Observables predicted from a mode trajectory: W_tot, torch's loss, hidden RSMs and selected outputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from theory import io_svd, loss_from_modes, outputs_from_modes, rsm_from_modes, w_tot_from_modes

# float64 sums of O(P·N_out) terms: rounding ~1e-15 relative; 1e-10 is loose for that and tight for any bug.
RTOL = 1e-10


def _whitened_problem(seed, n_items, n_in, n_out):
    """X (n_items, n_in) with orthonormal columns (XᵀX = I; n_items > n_in leaves an unfittable part of Y)."""
    rng = np.random.default_rng(seed)
    X = np.linalg.qr(rng.standard_normal((n_items, n_in)))[0]
    Y = rng.standard_normal((n_items, n_out))
    return X, Y, *io_svd(X, Y)


def _torch_loss(X, Y, weights, reduction):
    layers = [nn.Linear(w.shape[1], w.shape[0], bias=False, dtype=torch.float64) for w in weights]
    with torch.no_grad():
        for layer, w in zip(layers, weights):
            layer.weight.copy_(torch.tensor(w))
    return nn.MSELoss(reduction=reduction)(nn.Sequential(*layers)(torch.tensor(X)), torch.tensor(Y)).item()


@settings(max_examples=20)
@given(seed=st.integers(0, 2**31), shape=st.sampled_from([(6, 6, 9), (9, 4, 7), (7, 5, 3), (8, 8, 200)]),
       reduction=st.sampled_from(["mean", "sum"]), scale=st.floats(0.0, 3.0))
def test_loss_equals_torch_loss_of_network_with_that_w_tot(seed, shape, reduction, scale):
    X, Y, U, s, V = _whitened_problem(seed, *shape)
    rng = np.random.default_rng(seed + 1)
    M = scale * rng.standard_normal((s.size, s.size))  # any mode matrix, coupled or not
    W_tot = w_tot_from_modes(M, U, V)
    # a two-layer net whose product is W_tot: W2 = W_tot Q, W1 = Qᵀ-ish with Q (N_in, N_in) orthogonal
    Q = np.linalg.qr(rng.standard_normal((X.shape[1], X.shape[1])))[0]
    want = _torch_loss(X, Y, [Q.T, W_tot @ Q], reduction)
    got = loss_from_modes(M, s, np.sum(Y**2), X.shape[0], Y.shape[1], reduction)
    assert got == pytest.approx(want, rel=RTOL)


def test_loss_is_batched_and_fixed_point_leaves_the_unfittable_part():
    X, Y, U, s, V = _whitened_problem(0, 9, 4, 7)
    unfittable = np.sum((Y - X @ np.linalg.lstsq(X, Y, rcond=None)[0]) ** 2) / Y.size
    Ms = np.stack([np.zeros((4, 4)), np.diag(s), np.diag(s / 2)])
    losses = loss_from_modes(Ms, s, np.sum(Y**2), 9, 7)
    assert losses.shape == (3,)
    assert losses[0] == pytest.approx(np.mean(Y**2), rel=RTOL)
    assert losses[1] == pytest.approx(unfittable, rel=RTOL)
    assert losses[0] > losses[2] > losses[1]


def _balanced_weights(M, U, V, n_hidden, depth, rng):
    """Independent construction of balanced weights with W_L⋯W_1 = U M Vᵀ (W_{l+1}ᵀW_{l+1} = W_l W_lᵀ)."""
    Q, sig, Wt = np.linalg.svd(M)
    root = np.diag(sig ** (1.0 / depth))
    R = [V @ Wt.T] + [np.linalg.qr(rng.standard_normal((n_hidden, M.shape[0])))[0] for _ in range(depth - 1)]
    R.append(U @ Q)
    return [R[l + 1] @ root @ R[l].T for l in range(depth)]


@settings(max_examples=25)
@given(seed=st.integers(0, 2**31), depth=st.integers(2, 4), psd=st.booleans(), one_hot=st.booleans())
def test_rsm_is_the_hidden_similarity_of_balanced_weights(seed, depth, psd, one_hot):
    rng = np.random.default_rng(seed)
    X, Y, U, s, V = _whitened_problem(seed, 6, 6, 10) if not one_hot else (np.eye(5), None, None, None, None)
    if one_hot:
        U, s, V = io_svd(X, rng.standard_normal((5, 10)))
    M = rng.standard_normal((s.size, s.size))
    M = M @ M.T if psd else M
    ws = _balanced_weights(M, U, V, 8, depth, rng)
    assert np.allclose(ws[1].T @ ws[1], ws[0] @ ws[0].T, atol=1e-12)  # really balanced
    h = X @ ws[0].T
    rsm = rsm_from_modes(M, V, None if one_hot else X, depth)
    assert np.allclose(rsm, h @ h.T, rtol=1e-9, atol=1e-11 * np.abs(h @ h.T).max())
    assert np.array_equal(rsm, rsm.T)
    assert np.linalg.eigvalsh(rsm).min() >= -1e-12 * np.abs(rsm).max()
    if psd and depth == 2:  # the coupled map's W1 = Z Vᵀ gives exactly X V M Vᵀ Xᵀ
        assert np.allclose(rsm, X @ V @ M @ V.T @ X.T, rtol=1e-9, atol=1e-12 * np.abs(rsm).max())


def test_outputs_are_entries_of_x_w_tot_and_permute_with_items():
    X, Y, U, s, V = _whitened_problem(3, 8, 5, 12)
    rng = np.random.default_rng(4)
    M = rng.standard_normal((6, 5, 5))
    full = X @ np.swapaxes(w_tot_from_modes(M, U, V), 1, 2)  # (T, P, N_out)
    assert np.allclose(outputs_from_modes(M, U, V, X), full, rtol=RTOL, atol=1e-13)
    items, feats = np.array([7, 0, 3]), np.array([11, 2])
    assert np.allclose(outputs_from_modes(M, U, V, X, items, feats), full[:, items][:, :, feats], rtol=RTOL, atol=1e-13)
    one = outputs_from_modes(M, U, V, X, items=0, features=-1)  # the tutorial's illusory-correlation trace
    assert one.shape == (6,) and np.allclose(one, full[:, 0, -1], rtol=RTOL, atol=1e-13)
    assert outputs_from_modes(M, U, V, X, items=2).shape == (6, 12)
    assert outputs_from_modes(M[0], U, V, X, features=[1]).shape == (8, 1)
    perm = rng.permutation(8)  # permuting the items permutes the output rows
    assert np.allclose(outputs_from_modes(M, U, V, X[perm]), full[:, perm], rtol=RTOL, atol=1e-13)
    p = rng.permutation(5)  # relabelling the modes consistently changes nothing
    relabelled = outputs_from_modes(M[:, p][:, :, p], U[:, p], V[:, p], X)
    assert np.allclose(relabelled, full, rtol=RTOL, atol=1e-13)


def test_outputs_default_one_hot_items():
    U, s, V = io_svd(np.eye(4), np.random.default_rng(5).standard_normal((4, 6)))
    M = np.diag(s)
    assert np.allclose(outputs_from_modes(M, U, V), w_tot_from_modes(M, U, V).T, atol=1e-13)


@pytest.mark.parametrize("call, match", [
    (lambda U, s, V: w_tot_from_modes(np.eye(2), U, V), "U must have r=2"),
    (lambda U, s, V: w_tot_from_modes(np.ones((3, 2)), U, V), "square"),
    (lambda U, s, V: loss_from_modes(np.eye(3), s, 0.0, 3, 6), "Y_sq_norm"),
    (lambda U, s, V: loss_from_modes(np.eye(3), s, 1e3, 0, 6), "n_samples"),
    (lambda U, s, V: loss_from_modes(np.eye(3), s, 1e3, 3, 6, reduction="max"), "reduction"),
    (lambda U, s, V: loss_from_modes(np.full((3, 3), np.nan), s, 1e3, 3, 6), "NaN"),
    (lambda U, s, V: rsm_from_modes(np.eye(3), V, depth=1), "hidden layer"),
    (lambda U, s, V: rsm_from_modes(np.eye(3), V, X=np.eye(4)), "X must have"),
    (lambda U, s, V: outputs_from_modes(np.eye(3), U, V, items=7), "items"),
    (lambda U, s, V: outputs_from_modes(np.eye(3), U, V, features=[0.5]), "features"),
])
def test_misuse_raises_value_error(call, match):
    U, s, V = io_svd(np.eye(3), np.random.default_rng(6).standard_normal((3, 6)))
    with pytest.raises(ValueError, match=match):
        call(U, s, V)
