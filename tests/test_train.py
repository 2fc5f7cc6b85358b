"""saxe.train: the record it returns (shape, convention, consistency with the tutorial), reproducibility,
divergence, memory and argument checking."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import tutorial_reference as ref
from saxe import (DeepLNNet, DivergenceError, LNNet, LRNet, TrainRecord, generate_hsd, initializer_, train,
                  weights)

ENGINES = ("autograd", "reduced")
# Recomputing a float64 quantity by hand (numpy, other summation order) from the same weights: O(10) roundings
# of relative size 1e-16 in values of size O(1–100).
HAND_RTOL = 1e-11
# The tutorial loop and saxe's autograd engine run the same torch ops on the same float64 weights, but the
# SVD goes through different routes (torch.svd of W₂(W₁ I) vs svdvals of (W₁ᵀW₂ᵀ)ᵀ): a few eps × cond.
TUTORIAL_RTOL = 1e-10
# float32 runs against the float64 run of the same initial weights over 60 moderate steps: float32 rounding
# (6e-8) amplified by at most a few hundred over the run.
FLOAT32_RTOL = 1e-4
# Writing W_L back from reduced coordinates (W_L = Q Qᵀ W_L, Q orthonormal) costs a few eps relative.
ROUNDTRIP_ATOL = 1e-14


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@functools.lru_cache(maxsize=None)
def _tree(n_features: int, seed: int = 0, n_levels: int = 3):
    labels, features = generate_hsd(n_levels, 2, 0.15, n_features, rng=seed)
    labels.setflags(write=False)
    features.setflags(write=False)
    return labels, features


def _stable_lr(features: np.ndarray, depth: int) -> float:
    """Largest stable lr for one-hot inputs: P·N_out / (L s_max^{2−2/L}) (mean MSE)."""
    P, n_out = features.shape
    s_max = np.linalg.svd(features, compute_uv=False)[0]
    return P * n_out / (depth * s_max ** (2 - 2 / depth))


def _net(kind: str, n_out: int, gamma: float = 1.0, seed: int = 0, dtype=torch.float64):
    net = {"lr": lambda: LRNet(8, n_out), "ln": lambda: LNNet(8, 12, n_out),
           "deep": lambda: DeepLNNet(8, [10, 6], n_out)}[kind]().to(dtype)
    return initializer_(net, gamma, generator=_gen(seed))


def _state(net, X: np.ndarray, Y: np.ndarray, i: int, j: int, reduction: str = "mean"):
    """(loss, singular values of W_tot, first-hidden-layer RSM, out[i, j]) computed by hand in numpy."""
    ws = [w.detach().double().numpy() for w in weights(net)]
    w_tot = ws[0]
    for w in ws[1:]:
        w_tot = w @ w_tot
    out = X @ w_tot.T
    sq = ((out - Y) ** 2).sum()
    loss = sq / Y.size if reduction == "mean" else sq
    h = X @ ws[0].T
    rsm = h @ h.T if len(ws) > 1 else None
    return loss, np.linalg.svd(w_tot, compute_uv=False), rsm, out[i, j]


# ------------------------------------------------------------------------------------------ the record


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", ["lr", "ln", "deep"])
def test_record_unpacks_into_four_with_n_plus_one_rows(engine, kind):
    X, Y = _tree(40)
    n = 7
    rec = train(_net(kind, 40, dtype=torch.float32), X, Y, n, 1.0, engine=engine)
    assert isinstance(rec, TrainRecord) and isinstance(rec, tuple) and len(rec) == 4
    losses, modes, rsms, illusions = rec
    _, modes2, _, ill = rec
    assert modes2 is modes and ill is illusions
    assert losses.shape == (n + 1,) and illusions.shape == (n + 1,)
    assert modes.shape == (n + 1, 8)
    if kind == "lr":
        assert rsms is None  # no hidden layer
    else:
        assert rsms.shape == (n + 1, 8, 8)
    for arr in (losses, modes, illusions) + (() if rsms is None else (rsms,)):
        assert isinstance(arr, np.ndarray) and arr.dtype == np.float64
    assert rec.info["engine"] == engine
    assert rec.info["dtype"] == "float32"
    assert rec.info["seconds"] >= 0 and rec.info["n_epochs"] == n and rec.info["lr"] == 1.0


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", ["lr", "ln", "deep"])
def test_every_row_refers_to_the_weights_after_k_updates(engine, kind):
    """Row 0 = the initial model, row n = the trained model (recomputed by hand), row k = an n=k run's end."""
    X, Y = _tree(60)
    n, lr, i, j = 12, 0.3 * _stable_lr(Y, {"lr": 1, "ln": 2, "deep": 3}[kind]), 3, 5
    net = _net(kind, 60, gamma=1.0, seed=1)
    init = [w.detach().clone() for w in weights(net)]
    start = _state(net, X, Y, i, j)
    rec = train(net, X, Y, n, lr, illusory_i=i, illusory_j=j, engine=engine)
    end = _state(net, X, Y, i, j)
    assert not np.isclose(start[0], end[0], rtol=1e-3)  # training moved the weights
    for row, (loss, sv, rsm, ill) in ((0, start), (n, end)):
        np.testing.assert_allclose(rec.losses[row], loss, rtol=HAND_RTOL)
        np.testing.assert_allclose(rec.modes[row], sv, rtol=HAND_RTOL, atol=HAND_RTOL * sv[0])
        np.testing.assert_allclose(rec.illusions[row], ill, rtol=HAND_RTOL, atol=HAND_RTOL * np.abs(Y).max())
        if rsm is not None:
            np.testing.assert_allclose(rec.rsms[row], rsm, rtol=HAND_RTOL, atol=HAND_RTOL * np.abs(rsm).max())
    k = 5  # a middle row: the end state of a k-epoch run from the same initial weights
    short = _net(kind, 60)
    with torch.no_grad():
        for w, w0 in zip(weights(short), init):
            w.copy_(w0)
    rec_k = train(short, X, Y, k, lr, illusory_i=i, illusory_j=j, engine=engine)
    for name in ("losses", "modes", "illusions") + (("rsms",) if kind != "lr" else ()):
        np.testing.assert_allclose(getattr(rec, name)[k], getattr(rec_k, name)[k], rtol=HAND_RTOL,
                                   atol=HAND_RTOL * np.abs(getattr(rec, name)).max())


def test_tutorial_loop_records_are_ours_shifted():
    """The tutorial's loss/RSM/prediction are ours at the same index; its SVD row i is ours at i + 1."""
    X, Y = _tree(300)
    n, lr = 40, 0.4 * _stable_lr(Y, 2)
    ours_net = LNNet(8, 30, 300).double()
    initializer_(ours_net, 0.3, generator=_gen(5))
    tut_net = ref.LNNet(8, 30, 300).double()
    tut_net.load_state_dict(ours_net.state_dict())
    rec = train(ours_net, X, Y, n, lr, illusory_i=2, engine="autograd")
    t_losses, t_modes, t_rsms, t_ills = ref.train(tut_net, torch.tensor(X), torch.tensor(Y), n, lr,
                                                  illusory_i=2)
    assert t_losses.shape == (n,) and rec.losses.shape == (n + 1,)
    assert rec.losses[0] / rec.losses[-1] > 2  # the run is not trivial
    np.testing.assert_allclose(t_losses, rec.losses[:-1], rtol=TUTORIAL_RTOL)
    np.testing.assert_allclose(t_rsms, rec.rsms[:-1], rtol=TUTORIAL_RTOL, atol=TUTORIAL_RTOL * np.abs(t_rsms).max())
    np.testing.assert_allclose(t_ills, rec.illusions[:-1], rtol=TUTORIAL_RTOL, atol=TUTORIAL_RTOL)
    np.testing.assert_allclose(t_modes, rec.modes[1:], rtol=TUTORIAL_RTOL, atol=TUTORIAL_RTOL * t_modes.max())
    # …and the shift is real: the tutorial's modes are not the ones of the weights its losses came from
    assert not np.allclose(t_modes, rec.modes[:-1], rtol=1e-3)
    for a, b in zip(weights(ours_net), tut_net.parameters()):
        torch.testing.assert_close(a, b.detach(), rtol=TUTORIAL_RTOL, atol=TUTORIAL_RTOL)


@pytest.mark.parametrize("engine", ENGINES)
def test_float32_default_and_float64_both_work_and_agree(engine):
    X, Y = _tree(200)
    lr = 0.4 * _stable_lr(Y, 2)
    recs = {}
    for dt in (torch.float32, torch.float64):
        net = LNNet(8, 20, 200)
        initializer_(net, 1e-2, generator=_gen(3))  # float32 draw, the same numbers for both runs
        net.to(dt)
        recs[dt] = train(net, X, Y, 60, lr, engine=engine)
        assert recs[dt].info["dtype"] == str(dt).replace("torch.", "")
        assert all(np.isfinite(a).all() for a in recs[dt][:3])
    a, b = recs[torch.float32], recs[torch.float64]
    assert b.modes[-1, 0] > 0.5 * b.modes[0, 0] + 1  # the top mode was learned in the window
    for name in ("losses", "modes", "rsms", "illusions"):
        x, y = getattr(a, name), getattr(b, name)
        np.testing.assert_allclose(x, y, rtol=0, atol=FLOAT32_RTOL * np.abs(y).max())


@pytest.mark.parametrize("engine", ENGINES)
def test_same_seed_gives_bitwise_identical_records(engine):
    def run(seed):
        X, Y = generate_hsd(3, 2, 0.15, 150, rng=seed)
        net = LNNet(8, 16, 150)
        initializer_(net, 1e-3, generator=_gen(seed))
        return train(net, X, Y, 30, 0.4 * _stable_lr(Y, 2), engine=engine)

    a, b, c = run(11), run(11), run(12)
    for name in ("losses", "modes", "rsms", "illusions"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert not np.array_equal(getattr(a, name), getattr(c, name))


def test_zero_epochs_records_only_the_initial_state_and_leaves_the_model():
    X, Y = _tree(40)
    for engine in ENGINES:
        net = _net("ln", 40)
        before = [w.detach().clone() for w in weights(net)]
        rec = train(net, X, Y, 0, 5.0, engine=engine)
        assert rec.losses.shape == (1,) and rec.modes.shape == (1, 8) and rec.rsms.shape == (1, 8, 8)
        np.testing.assert_allclose(rec.losses[0], _state(net, X, Y, 0, -1)[0], rtol=HAND_RTOL)
        for a, b in zip(before, weights(net)):
            if engine == "autograd":
                assert torch.equal(a, b)
            else:  # the reduced engine writes W_L back as Q (Qᵀ W_L): unchanged up to rounding
                torch.testing.assert_close(b.detach(), a, rtol=0, atol=ROUNDTRIP_ATOL * a.abs().max().item())


def test_auto_engine_choice_progress_threads_and_sum_reduction():
    X, Y = _tree(40)
    calls = []
    threads = torch.get_num_threads()
    rec = train(_net("ln", 40), X, Y, 4, 1.0, progress=calls.append, threads=2)
    assert torch.get_num_threads() == threads  # restored
    assert calls == [0, 1, 2, 3, 4]
    assert rec.info["engine"] == "reduced"  # 40 outputs > 8 inputs + 12 hidden
    X2, Y2 = _tree(10)
    assert train(_net("ln", 10), X2, Y2, 2, 1.0).info["engine"] == "autograd"  # 10 < 8 + 12
    net = _net("ln", 40)
    loss0 = _state(net, X, Y, 0, -1, reduction="sum")[0]
    rec = train(net, X, Y, 3, 1e-3, reduction="sum", engine="autograd", threads=None)
    np.testing.assert_allclose(rec.losses[0], loss0, rtol=HAND_RTOL)
    assert rec.info["reduction"] == "sum"


def test_inputs_may_be_tensors_or_lists():
    X, Y = _tree(20)
    a = train(_net("ln", 20), torch.tensor(X).float(), torch.tensor(Y), 3, 1.0)
    b = train(_net("ln", 20), X.tolist(), Y.tolist(), 3, 1.0)
    np.testing.assert_array_equal(a.losses, b.losses)


# ----------------------------------------------------------------------------------------------- divergence


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind,depth,lr,gamma", [
    ("ln", 2, 2000.0, 1e-12),  # the tutorial's net and initialisation, 100 features: bound ≈ 25
    ("lr", 1, 20_000.0, 1.0),  # bound = P·N_out = 800
    ("deep", 3, 2000.0, 1.0),  # bound ≈ 7; from gamma=1e-12 a depth-3 net would sit on its saddle for ever
])
def test_divergence_error_names_epoch_lr_and_the_stable_bound(engine, kind, depth, lr, gamma):
    X, Y = _tree(100)
    bound = _stable_lr(Y, depth)
    assert lr > 10 * bound
    net = _net(kind, 100, gamma=gamma)
    with pytest.raises(DivergenceError) as info:
        train(net, X, Y, 250, lr, engine=engine)
    err = info.value
    assert isinstance(err, RuntimeError)
    assert isinstance(err.epoch, int) and 0 < err.epoch <= 250
    assert err.lr == lr
    np.testing.assert_allclose(err.bounds.learned, bound, rtol=1e-9)
    assert err.max_stable_lr == min(err.bounds.learned, err.bounds.init)  # the bound that applies
    msg = str(err)
    assert f"epoch {err.epoch}" in msg and f"lr={lr:g}" in msg and f"{bound:.6g}" in msg
    assert f"{err.bounds.init:.6g}" in msg and "learned state's bound" in msg


def test_both_engines_detect_divergence_at_the_same_epoch():
    X, Y = _tree(100)
    epochs = []
    for engine in ENGINES:
        with pytest.raises(DivergenceError) as info:
            train(_net("ln", 100, gamma=1e-6), X, Y, 250, 2000.0, engine=engine)
        epochs.append(info.value.epoch)
    assert epochs[0] == epochs[1]


def test_divergence_with_non_whitened_inputs_quotes_the_numerical_bound():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 5))
    _, Y = _tree(30)
    with pytest.raises(DivergenceError) as info:
        train(LNNet(5, 6, 30).double(), X, Y, 200, 1e5)
    err = info.value
    assert 0 < err.bounds.learned < 1e5 and f"{err.bounds.learned:.6g}" in str(err)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("lr", [1e30, 1e300])
def test_a_single_step_to_overflow_is_a_divergence_error(engine, lr):
    """Regression: the reduced engine used to crash in the SVD (torch LinAlgError) on non-finite weights."""
    X, Y = _tree(100)
    with pytest.raises(DivergenceError) as info:
        train(_net("ln", 100), X, Y, 10, lr, engine=engine)
    assert info.value.epoch == 1 and info.value.lr == lr


@given(log_lr=st.one_of(st.floats(-1.0, 4.0), st.floats(4.0, 300.0)), gamma=st.sampled_from([1e-6, 1.0, 5.0]),
       engine=st.sampled_from(ENGINES), kind=st.sampled_from(["lr", "ln", "deep"]))
def test_a_returned_record_never_contains_nan(log_lr, gamma, engine, kind):
    """Anywhere from far below to far above the stable lr: either DivergenceError or finite records."""
    X, Y = _tree(30)
    try:
        rec = train(_net(kind, 30, gamma=gamma), X, Y, 40, 10.0**log_lr, engine=engine)
    except DivergenceError as err:
        assert err.max_stable_lr is not None and err.epoch <= 40
        return
    for arr in rec:
        assert arr is None or np.isfinite(arr).all()


# ------------------------------------------------------------------------------------------------- memory


def _owner_nbytes(arr: np.ndarray) -> int:
    """Bytes of the buffer that finally owns ``arr``'s memory (numpy base chain, or a torch tensor's storage)."""
    base = arr
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, torch.Tensor):
        assert not base.requires_grad and base.grad_fn is None  # no autograd graph is kept alive
        return base.untyped_storage().nbytes()
    assert isinstance(base, np.ndarray), f"unexpected owner {type(base).__name__}"
    return base.nbytes


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_records_keep_nothing_but_themselves_alive(engine, dtype):
    X, Y = _tree(50)
    net = _net("ln", 50, dtype=dtype)
    rec = train(net, X, Y, 20, 1.0, engine=engine)
    arrays = [a for a in rec if a is not None]
    for arr in arrays:
        assert isinstance(arr, np.ndarray)
        assert _owner_nbytes(arr) == arr.nbytes  # no larger buffer (e.g. a batch of runs) behind the view
    for a in range(len(arrays)):  # independent arrays
        for b in range(a + 1, len(arrays)):
            assert not np.shares_memory(arrays[a], arrays[b])
        for w in weights(net):
            assert not np.shares_memory(arrays[a], w.detach().numpy())
    assert all(w.grad is None for w in weights(net))  # no gradient buffers left on the model


# ------------------------------------------------------------------------------------------ bad arguments


_X, _Y = _tree(12)
_BAD_CALLS = [
    (dict(lr=0.0), "lr"),
    (dict(lr=-1.0), "lr"),
    (dict(lr=float("nan")), "lr"),
    (dict(lr=float("inf")), "lr"),
    (dict(lr="0.1"), "lr"),
    (dict(lr=True), "lr"),
    (dict(n_epochs=-1), "n_epochs"),
    (dict(n_epochs=2.5), "n_epochs"),
    (dict(n_epochs=True), "n_epochs"),
    (dict(n_epochs="3"), "n_epochs"),
    (dict(targets=_Y[:5]), "inputs and targets"),
    (dict(inputs=_X[:, :6]), "inputs"),
    (dict(targets=_Y[:, :10]), "targets"),
    (dict(inputs=_X[0]), "inputs"),
    (dict(targets=np.where(np.eye(8, 12) > 0, np.nan, _Y)), "targets"),
    (dict(inputs=np.full((8, 8), np.inf)), "inputs"),
    (dict(targets="abc"), "targets"),
    (dict(illusory_i=8), "illusory_i"),
    (dict(illusory_i=-9), "illusory_i"),
    (dict(illusory_i=1.0), "illusory_i"),
    (dict(illusory_j=12), "illusory_j"),
    (dict(illusory_j=-13), "illusory_j"),
    (dict(engine="fast"), "engine"),
    (dict(reduction="none"), "reduction"),
    (dict(threads=0), "threads"),
    (dict(model=torch.nn.Linear(8, 12)), "model"),
    (dict(model="net"), "model"),
]


@pytest.mark.parametrize("kwargs,name", _BAD_CALLS, ids=[f"{n}-{i}" for i, (_, n) in enumerate(_BAD_CALLS)])
def test_train_refuses_bad_arguments(kwargs, name):
    args = dict(model=LNNet(8, 5, 12), inputs=_X, targets=_Y, n_epochs=3, lr=0.1) | kwargs
    model = args.pop("model")
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        train(model, **args)


def test_integer_like_numpy_arguments_are_accepted():
    rec = train(LNNet(8, 5, 12), _X, _Y, np.int64(2), np.float64(0.1), illusory_i=np.int64(7))
    assert rec.losses.shape == (3,)


def test_a_plain_sequential_chain_trains_and_a_nonlinear_one_is_refused():
    """Regression: an nn.Sequential of bias-free Linear layers crashed in the autograd engine (it returns no hidden
    layer for the RSM), and one with a ReLU was silently trained and recorded as if it were linear."""
    from torch import nn

    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(6, 4)), rng.normal(size=(6, 20))

    def chain(*middle):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 5, bias=False), *middle, nn.Linear(5, 20, bias=False)).double()

    recs = {eng: train(chain(), X, Y, 5, 0.05, engine=eng) for eng in ("autograd", "reduced")}
    h = X @ chain()[0].weight.detach().numpy().T  # the first hidden layer at the init
    np.testing.assert_allclose(recs["autograd"].rsms[0], h @ h.T, rtol=1e-12)
    for field in ("losses", "modes", "rsms"):
        np.testing.assert_allclose(getattr(recs["autograd"], field), getattr(recs["reduced"], field), rtol=1e-10,
                                   atol=1e-13)
    for engine in ("auto", "autograd", "reduced"):
        with pytest.raises(ValueError, match="linear chain"):
            train(chain(nn.ReLU()), X, Y, 5, 0.05, engine=engine)
