"""saxe.engines: the reduced-coordinate engine reproduces autograd SGD (records and final weights), for
whitened and non-whitened inputs, at depth 1, 2 and 3, and batches independent runs correctly."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from saxe import DeepLNNet, LNNet, LRNet, generate_hsd, initializer_, make_net, train, weights
from saxe.engines import LOSS_DIVERGENCE_FACTOR, autograd_sgd, loss_coefficient, reduced_sgd

# Agreement of the two engines in float64 (relative, max-norm per record and Frobenius per weight matrix).
# Measured on these runs: records ≈ 1e-11, weights ≈ 3e-10 at gamma=1e-12. The weights are looser because a
# rotation of the hidden layer (W₁ → R W₁, W₂ → W₂ Rᵀ) leaves W_tot, and so the loss, unchanged: rounding
# differences drift freely along it. A plain numpy gradient-descent loop differs from autograd by the same
# 3e-10, so this is the arithmetic's own spread, not an engine error; 1e-9 still catches any real one.
ENGINE_RTOL = 1e-9
# Batched (bmm over runs) against single-run arithmetic: the same operations in a different blocking.
BATCH_RTOL = 1e-12


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@functools.lru_cache(maxsize=None)
def _tree(n_features: int, seed: int = 0):
    return generate_hsd(3, 2, 0.15, n_features, rng=seed)


def _stable_lr(features: np.ndarray, depth: int) -> float:
    P, n_out = features.shape
    s_max = np.linalg.svd(features, compute_uv=False)[0]
    return P * n_out / (depth * s_max ** (2 - 2 / depth))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    scale = np.abs(a).max()
    return float(np.abs(a - b).max() / scale) if scale > 0 else float(np.abs(b).max())


def _both_engines(make, X, Y, n_epochs, lr, **kwargs):
    out = {}
    for engine in ("autograd", "reduced"):
        net = make()
        rec = train(net, X, Y, n_epochs, lr, engine=engine, **kwargs)
        assert rec.info["engine"] == engine
        out[engine] = (rec, [w.detach().clone() for w in weights(net)])
    return out


def _assert_engines_agree(out, rtol=ENGINE_RTOL):
    (a, wa), (b, wb) = out["autograd"], out["reduced"]
    for name in ("losses", "modes", "rsms", "illusions"):
        x, y = getattr(a, name), getattr(b, name)
        if x is None:
            assert y is None
            continue
        assert x.shape == y.shape
        assert np.isfinite(y).all()
        assert _rel(x, y) <= rtol, (name, _rel(x, y))
    for w1, w2 in zip(wa, wb):
        assert ((w1 - w2).norm() / w1.norm()).item() <= rtol


@pytest.mark.parametrize("hidden,gamma,frac", [
    ([30], 1e-6, 0.5),
    ([30], 1e-12, 0.4),
    ([20, 20], 1e-6, 0.5),
    ([20, 20], 1e-12, 0.6),
    ([20, 20], 1.0, 0.5),  # depth 3 from a large init: the modes are actually learned in 250 epochs
])
def test_reduced_equals_autograd_on_tree_data(hidden, gamma, frac):
    X, Y = _tree(2000)
    depth = len(hidden) + 1
    lr = frac * _stable_lr(Y, depth)

    def make():
        return initializer_(make_net(8, hidden, 2000).double(), gamma, generator=_gen(1))

    out = _both_engines(make, X, Y, 250, lr, illusory_i=3)
    _assert_engines_agree(out)
    rec = out["autograd"][0]
    if depth == 2 or gamma == 1.0:  # these runs learn every mode: the comparison covers the whole trajectory
        s = np.linalg.svd(Y, compute_uv=False)
        np.testing.assert_allclose(rec.modes[-1], s, rtol=1e-3)
        assert rec.losses[-1] < 1e-3 * rec.losses[0]


@pytest.mark.parametrize("hidden", [[], [10], [7, 9]])
@pytest.mark.parametrize("P,n_in", [(8, 6), (5, 8)])  # the second: XᵀX singular
def test_reduced_equals_autograd_for_non_whitened_inputs(hidden, P, n_in):
    rng = np.random.default_rng(P * 100 + n_in)
    X = rng.standard_normal((P, n_in))
    Y = rng.standard_normal((P, 120))
    # a safe lr: η·λ_max of the loss Hessian for the product map stays well below 2
    lam = np.linalg.eigvalsh(X.T @ X).max()
    lr = 0.1 * P * 120 / (2 * lam * max(1.0, np.linalg.norm(Y.T @ X, 2) / lam) ** (1 if hidden else 0))

    def make():
        return initializer_(make_net(n_in, hidden, 120).double(), 0.5, generator=_gen(2))

    out = _both_engines(make, X, Y, 150, lr, illusory_j=7)
    _assert_engines_agree(out)
    rec = out["autograd"][0]
    assert rec.losses[-1] < 0.9 * rec.losses[0]  # the run made progress


def test_reduced_equals_autograd_for_sum_reduction_and_lrnet():
    X, Y = _tree(300)
    out = _both_engines(lambda: initializer_(LNNet(8, 12, 300).double(), 1e-3, generator=_gen(4)), X, Y, 120,
                        0.4 / (np.linalg.svd(Y, compute_uv=False)[0] * 2), reduction="sum")
    _assert_engines_agree(out)
    out = _both_engines(lambda: initializer_(LRNet(8, 300).double(), 1.0, generator=_gen(4)), X, Y, 100, 500.0)
    _assert_engines_agree(out)


def test_record_rsm_false_skips_the_rsms_only():
    X, Y = _tree(100)
    for engine in ("autograd", "reduced"):
        rec = train(initializer_(LNNet(8, 6, 100).double(), 1.0, generator=_gen(0)), X, Y, 5, 1.0,
                    engine=engine, record_rsm=False)
        assert rec.rsms is None and rec.modes.shape == (6, 8) and rec.losses.shape == (6,)


def test_batched_runs_equal_their_single_runs():
    X, Y = (torch.from_numpy(a.copy()) for a in _tree(200))
    lr_max = _stable_lr(Y.numpy(), 3)
    lrs = torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64) * lr_max
    nets = [initializer_(DeepLNNet(8, [9, 11], 200).double(), 1.0, generator=_gen(s)) for s in range(3)]
    w0 = [torch.stack([weights(n)[layer].detach() for n in nets]) for layer in range(3)]
    batch = reduced_sgd(X, Y, w0, lrs, 80, track=(1, 2))
    assert batch.losses.shape == (3, 81) and batch.rsms.shape == (3, 81, 8, 8)
    assert (batch.diverged_at == -1).all()
    for r, net in enumerate(nets):
        solo = autograd_sgd(net, weights(net), X, Y, float(lrs[r]), 80, track=(1, 2))
        for name in ("losses", "modes", "rsms", "illusions"):
            x, y = getattr(solo, name)[0].numpy(), getattr(batch, name)[r].numpy()
            assert _rel(x, y) <= ENGINE_RTOL, (r, name)
        for layer in range(3):
            torch.testing.assert_close(batch.weights[layer][r], solo.weights[layer][0], rtol=ENGINE_RTOL, atol=0)
        single = reduced_sgd(X, Y, [w[r:r + 1] for w in w0], lrs[r:r + 1], 80, track=(1, 2))
        np.testing.assert_allclose(batch.losses[r].numpy(), single.losses[0].numpy(), rtol=BATCH_RTOL)


def test_a_diverging_run_is_frozen_without_disturbing_the_others():
    X, Y = (torch.from_numpy(a.copy()) for a in _tree(100))
    lr_max = _stable_lr(Y.numpy(), 2)
    net = initializer_(LNNet(8, 10, 100).double(), 1e-3, generator=_gen(0))
    w0 = [w.detach().unsqueeze(0).expand(2, -1, -1).clone() for w in weights(net)]
    lrs = torch.tensor([0.4 * lr_max, 50 * lr_max], dtype=torch.float64)
    res = reduced_sgd(X, Y, w0, lrs, 100, track=(0, -1 % 100))
    assert int(res.diverged_at[0]) == -1 and res.reason[0] == ""
    k = int(res.diverged_at[1])
    assert 0 < k < 100 and res.reason[1]
    assert torch.isnan(res.losses[1, k:]).all() and torch.isfinite(res.losses[1, :k]).all()
    assert torch.isnan(res.modes[1, k:]).all() and torch.isnan(res.rsms[1, k:]).all()
    assert res.losses[1, k - 1] <= LOSS_DIVERGENCE_FACTOR * max(res.losses[1, 0], (Y * Y).mean())
    solo = reduced_sgd(X, Y, [w[:1] for w in w0], lrs[:1], 100, track=(0, 99))
    torch.testing.assert_close(res.losses[0], solo.losses[0], rtol=BATCH_RTOL, atol=0)
    torch.testing.assert_close(res.modes[0], solo.modes[0], rtol=BATCH_RTOL, atol=1e-12)
    assert all(torch.isfinite(w).all() for w in res.weights)  # the frozen run holds zeros, not NaN


def test_loss_coefficient():
    assert loss_coefficient(8, 10_000, "mean") == 1 / 80_000
    assert loss_coefficient(8, 10_000, "sum") == 1.0


@pytest.mark.parametrize("n_features, gamma", [(20, 1e-3), (1000, 0.0)])
def test_reduced_equals_autograd_when_basis_is_degenerate(n_features, gamma):
    """Regression: a zero last layer (γ = 0) or N_out < N_in + N_h once gave a non-orthonormal basis."""
    import saxe
    import theory

    X, Y = saxe.generate_hsd(n_features=n_features, rng=0)
    lr = 0.5 * theory.max_stable_lr(theory.io_svd(X, Y)[1][0], 8, n_features)
    recs = {}
    for engine in ("autograd", "reduced"):
        net = saxe.LNNet(8, 30, n_features).double()
        saxe.initializer_(net, gamma, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():  # a non-zero first layer, so that the zero last layer still learns
            net.in_hid.weight.normal_(std=0.1, generator=torch.Generator().manual_seed(1))
        recs[engine] = saxe.train(net, X, Y, 100, lr, engine=engine)
    a, b = recs["autograd"], recs["reduced"]
    assert a.modes[-1, 0] > 0.5 * a.modes[-1].max() > 0
    assert np.abs(a.losses - b.losses).max() <= 1e-9 * a.losses[0]
    assert np.abs(a.modes - b.modes).max() <= 1e-9 * a.modes.max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case,cholesky", [
    ("random", True),  # columns far from dependent: Cholesky QR
    ("tiny", True),  # products subnormal in float32: the Gram matrix is formed in float64
    ("spectral", False),  # W_L's columns partly inside span Σʸˣ: Householder
    ("zero", False),  # a zero last layer: Householder
    ("wide", False),  # N_out < N_in + N_h: Q spans everything
])
def test_reduced_basis_is_orthonormal_spans_both_and_holds_w_last(dtype, case, cholesky):
    from saxe.reduced import reduced_basis, reduced_targets

    n_out = 10 if case == "wide" else 300
    X, Y = _tree(n_out)
    x, y = torch.from_numpy(X).to(dtype), torch.from_numpy(Y).to(dtype)
    sigma = y.mT @ x
    w = torch.randn(n_out, 12, generator=_gen(5), dtype=torch.float64)
    if case == "tiny":
        w = w * 1e-21
    elif case == "spectral":
        w[:, :3] = torch.linalg.svd(sigma.double(), full_matrices=False)[0][:, :3]
    elif case == "zero":
        w.zero_()
    w = w.to(dtype)
    basis, b0 = reduced_basis(sigma, w[None])
    assert (basis.T is not None) == cholesky
    d = basis.dim
    Q = basis.expand(torch.eye(d, dtype=dtype)[None])[0].double()
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert Q.shape == (n_out, min(d, n_out))
    assert (Q.T @ Q - torch.eye(d, dtype=torch.float64)).abs().max() <= tol  # orthonormal
    for part in (sigma.double(), w.double()):  # its span holds Σʸˣ and W_L, and B₀ = QᵀW_L
        assert (part - Q @ (Q.T @ part)).norm() <= tol * max(float(part.norm()), 1e-300)
    assert (Q @ b0[0].double() - w.double()).norm() <= tol * max(float(w.double().norm()), 1e-300)
    torch.testing.assert_close(basis.rows(7)[0].double(), Q[7], rtol=0, atol=tol)
    yq, const = reduced_targets(y, basis)
    want = y.double() @ Q
    torch.testing.assert_close(yq[0].double(), want, rtol=0, atol=tol * float(want.abs().max()))
    assert abs(float(const[0])) <= tol * float((y.double() ** 2).sum())  # one-hot X: Y lies in span Σʸˣ
