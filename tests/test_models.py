"""saxe.models: the tutorial's networks, the deep network, initialisers, weights() and w_tot()."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import tutorial_reference as ref
from saxe import DeepLNNet, LNNet, LRNet, decoupled_init_, initializer_, make_net, w_tot, weights

# The tutorial's test_initializer_ex: std of the 5000×5000 first layer at gamma=1 must be 1/sqrt(10000) = 0.01
# within 1e-5. The sample std of 25e6 normals has a relative spread of 1/sqrt(2·25e6) ≈ 1.4e-4, i.e. ±1.4e-6
# here, so the tutorial's 1e-5 is a 7-sigma check.
INIT_STD_ATOL = 1e-5
# float64 products of a few O(1) matrices: a handful of roundings of 1e-16 each.
FLOAT64_RTOL = 1e-12

widths = st.integers(min_value=1, max_value=9)
hidden_lists = st.lists(st.integers(min_value=1, max_value=9), min_size=0, max_size=3)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_initializer_ex_tutorial_check():
    """Port of the tutorial's test_initializer_ex (seeded generator instead of torch.manual_seed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2021)
        model = LNNet(5000, 5000, 1)
    initializer_(model, gamma=1, generator=_gen(2021))
    std = torch.std(next(iter(model.parameters())).detach()).item()
    assert abs(std - 0.01) <= INIT_STD_ATOL


def test_initializer_uses_gamma_over_sqrt_fan_sum_per_layer():
    model = DeepLNNet(300, [500, 200], 100)
    initializer_(model, gamma=3.0, generator=_gen(0))
    for w in weights(model):
        n_out, n_in = w.shape
        expected = 3.0 / np.sqrt(n_in + n_out)
        # ≥ 20 000 samples per layer: relative spread of the sample std ≤ 1/sqrt(40 000) = 0.5 %; allow 3 %
        assert abs(w.std().item() / expected - 1) < 0.03
        assert abs(w.mean().item()) < 0.03 * expected


def test_initializer_reproducible_zero_gamma_and_no_global_rng():
    a, b = LNNet(4, 6, 5), LNNet(4, 6, 5)
    state = torch.get_rng_state()
    initializer_(a, 0.5, generator=_gen(11))
    initializer_(b, 0.5, generator=_gen(11))
    assert torch.equal(torch.get_rng_state(), state)  # the global generator was not touched
    for wa, wb in zip(weights(a), weights(b)):
        assert torch.equal(wa, wb)
    initializer_(b, 0.5, generator=_gen(12))
    assert not torch.equal(weights(a)[0], weights(b)[0])
    assert initializer_(a, 0.0) is a
    assert all(torch.count_nonzero(w) == 0 for w in weights(a))


def test_lnnet_forward_matches_tutorial():
    ours = LNNet(8, 30, 50).double()
    initializer_(ours, 1.0, generator=_gen(3))
    theirs = ref.LNNet(8, 30, 50).double()
    theirs.load_state_dict(ours.state_dict())  # same parameter names as the tutorial
    x = torch.randn(8, 8, generator=_gen(4), dtype=torch.float64)
    out, hid = ours(x)
    out_t, hid_t = theirs(x)
    assert torch.equal(out, out_t) and torch.equal(hid, hid_t)
    assert hid.shape == (8, 30) and out.shape == (8, 50)


def test_lrnet_matches_tutorial():
    ours = LRNet(8, 12)
    theirs = ref.LRNet(8, 12)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(5, 8, generator=_gen(0))
    assert torch.equal(ours(x), theirs(x))


def test_deep_forward_returns_every_hidden_layer():
    net = DeepLNNet(4, [3, 5, 2], 6).double()
    initializer_(net, 1.0, generator=_gen(0))
    x = torch.randn(7, 4, generator=_gen(1), dtype=torch.float64)
    out, hiddens = net(x)
    w1, w2, w3, w4 = (w.detach() for w in weights(net))
    assert len(hiddens) == 3
    torch.testing.assert_close(hiddens[0], x @ w1.T, rtol=FLOAT64_RTOL, atol=0)
    torch.testing.assert_close(hiddens[2], x @ w1.T @ w2.T @ w3.T, rtol=FLOAT64_RTOL, atol=0)
    torch.testing.assert_close(out, x @ w1.T @ w2.T @ w3.T @ w4.T, rtol=FLOAT64_RTOL, atol=0)


@given(n_in=widths, hidden=hidden_lists, n_out=widths, seed=seeds)
def test_make_net_weights_and_w_tot(n_in, hidden, n_out, seed):
    net = make_net(n_in, hidden, n_out).double()
    assert isinstance(net, (LRNet, LNNet, DeepLNNet)[min(len(hidden), 2)])
    initializer_(net, 1.0, generator=_gen(seed))
    ws = weights(net)
    sizes = [n_in, *hidden, n_out]
    assert [tuple(w.shape) for w in ws] == [(b, a) for a, b in zip(sizes[:-1], sizes[1:])]
    # W_tot maps an input to the network's output: the columns of W_tot are the outputs of the unit vectors
    eye = torch.eye(n_in, dtype=torch.float64)
    res = net(eye)
    out = res[0] if isinstance(res, tuple) else res
    expected = out.detach().T
    got = w_tot(net)
    assert got.shape == (n_out, n_in) and not got.requires_grad
    torch.testing.assert_close(got, expected, rtol=FLOAT64_RTOL, atol=1e-15)
    assert w_tot(net, dtype=torch.float32).dtype == torch.float32


def test_decoupled_init_gives_the_requested_modes_and_balanced_layers():
    rng = np.random.default_rng(0)
    U = np.linalg.qr(rng.standard_normal((12, 3)))[0]
    V = np.linalg.qr(rng.standard_normal((5, 3)))[0]
    a0 = np.array([2.0, 0.5, 1e-3])
    for net in (LNNet(5, 7, 12).double(), DeepLNNet(5, [4, 6], 12).double()):
        decoupled_init_(net, U, V, a0, generator=_gen(1))
        np.testing.assert_allclose(w_tot(net).numpy(), (U * a0) @ V.T, rtol=0, atol=1e-12)
        ws = [w.detach().numpy() for w in weights(net)]
        for lower, upper in zip(ws[:-1], ws[1:]):  # balanced: W_{l+1}ᵀ W_{l+1} = W_l W_lᵀ
            np.testing.assert_allclose(upper.T @ upper, lower @ lower.T, rtol=0, atol=1e-12)


@pytest.mark.parametrize("call,name", [
    (lambda: LNNet(0, 3, 4), "in_dim"),
    (lambda: LNNet(2, 2.5, 4), "hid_dim"),
    (lambda: LNNet(2, 3, True), "out_dim"),
    (lambda: LRNet(-1, 3), "in_dim"),
    (lambda: DeepLNNet(2, [], 3), "hid_dims"),
    (lambda: DeepLNNet(2, 4, 3), "hid_dims"),
    (lambda: DeepLNNet(2, [4, 0], 3), r"hid_dims\[1\]"),
    (lambda: initializer_(LNNet(2, 3, 4), gamma=-1.0), "gamma"),
    (lambda: initializer_(LNNet(2, 3, 4), gamma=float("nan")), "gamma"),
    (lambda: initializer_(LNNet(2, 3, 4), gamma=float("inf")), "gamma"),
    (lambda: initializer_(LNNet(2, 3, 4), gamma="1"), "gamma"),
    (lambda: initializer_(LNNet(2, 3, 4), 1.0, generator=0), "generator"),
    (lambda: weights(torch.nn.Linear(3, 4, bias=True)), "model"),
    (lambda: weights(torch.nn.ReLU()), "model"),
    (lambda: weights(torch.nn.Sequential(torch.nn.Linear(3, 4, bias=False), torch.nn.Linear(5, 2, bias=False))),
     "model"),
    (lambda: decoupled_init_(LNNet(5, 2, 12), np.eye(12, 3), np.eye(5, 3), 1.0), "hidden widths"),
    (lambda: decoupled_init_(LNNet(5, 4, 12), np.eye(12, 3), np.eye(4, 3), 1.0), "U"),
    (lambda: decoupled_init_(LNNet(5, 4, 12), np.eye(12, 3), np.eye(5, 3), -1.0), "a0"),
])
def test_models_refuse_bad_arguments(call, name):
    with pytest.raises(ValueError, match=name):
        call()
