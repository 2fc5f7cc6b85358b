"""saxe.probes: net_svd and net_rsm (the tutorial's exercise checks, and their properties)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tutorial_reference as ref
from saxe import LNNet, generate_hsd, initializer_, make_net, net_rsm, net_svd, weights

# The tutorial's own tolerance for test_net_svd_ex / test_net_rsm_ex (float32 values of order 0.1–10).
TUTORIAL_ATOL = 1e-6
# float64 SVD/products of O(1) matrices with ≤ 11 rows/columns: backward-stable to ~10·eps relative to the
# largest singular value; 1e-12 leaves two orders of margin and is far below any real error.
SVD_RTOL = 1e-12
# Eigenvalues of an exactly PSD float64 matrix come out ≥ −(a few eps)·‖M‖; allow 1e-12·‖M‖.
PSD_RTOL = 1e-12

widths = st.integers(min_value=1, max_value=10)
hidden_lists = st.lists(st.integers(min_value=1, max_value=10), min_size=0, max_size=3)
seeds = st.integers(min_value=0, max_value=2**31 - 1)
gammas = st.sampled_from([1e-3, 1.0, 30.0])


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _numpy_w_tot(net) -> np.ndarray:
    out = None
    for w in weights(net):
        w = w.detach().double().numpy()
        out = w if out is None else w @ out
    return out


def test_net_svd_ex_tutorial_check():
    """Port of the tutorial's test_net_svd_ex: U, Σ, V equal to torch.svd of W_tot (W_tot as the tutorial)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2021)
        model = LNNet(8, 30, 100)
    U_ex, S_ex, V_ex = ref.net_svd(model, 8)
    U, S, V = net_svd(model, 8)
    assert U.shape == (100, 8) and S.shape == (8,) and V.shape == (8, 8)
    assert torch.all(torch.isclose(U_ex, U.detach(), atol=TUTORIAL_ATOL))
    assert torch.all(torch.isclose(S_ex, S.detach(), atol=TUTORIAL_ATOL))
    assert torch.all(torch.isclose(V_ex, V.detach(), atol=TUTORIAL_ATOL))


def test_net_rsm_ex_tutorial_check():
    """Port of the tutorial's test_net_rsm_ex."""
    x = torch.rand(7, 17, generator=_gen(2021))
    y_ex = net_rsm(x)
    y = x @ x.T
    assert y_ex.shape == (7, 7)
    assert torch.all(torch.isclose(y_ex, y, atol=TUTORIAL_ATOL))


@given(hid=st.integers(1, 12), seed=seeds)
def test_rsm_of_a_hidden_layer_on_tree_data(hid, seed):
    labels, features = generate_hsd(2, 2, 0.1, 20, rng=seed)
    net = LNNet(4, hid, 20).double()
    initializer_(net, 1.0, generator=_gen(seed))
    _, h = net(torch.from_numpy(labels))
    rsm = net_rsm(h.detach()).numpy()
    w1 = weights(net)[0].detach().numpy()
    np.testing.assert_allclose(rsm, w1.T @ w1, rtol=0, atol=SVD_RTOL)  # one-hot items: h = W_1ᵀ rows
    assert np.linalg.eigvalsh(rsm).min() >= -PSD_RTOL * max(1.0, np.abs(rsm).max())


@pytest.mark.parametrize("call,name", [
    (lambda: net_svd(LNNet(3, 4, 5), 4), "in_dim"),
    (lambda: net_svd(LNNet(3, 4, 5), 0), "in_dim"),
    (lambda: net_svd(LNNet(3, 4, 5), 3.0), "in_dim"),
    (lambda: net_rsm(np.ones((3, 2))), "h"),
    (lambda: net_rsm(torch.ones(3)), "h"),
])
def test_probes_refuse_bad_arguments(call, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call()
