"""Coupled mode dynamics from the actual initial weights: closed forms, ODEs, decoupled limits and torch SGD."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp
from torch import nn

from theory import (
    coupled_modes_continuous,
    coupled_modes_discrete,
    growing_part,
    initial_mode_matrix,
    io_svd,
    learning_rate_to_eta,
    max_stable_lr,
    mode_strength,
    mode_strength_discrete,
    project_weights,
    projected_modes_continuous,
    projected_modes_discrete,
)

# solve_ivp (DOP853, rtol 1e-12) drifts by ~1e-11 relative over a learning curve; 1e-8·s_max leaves room for
# that and still catches any error in a formula (a wrong term shows up at the percent level).
ODE_TOL = 1e-8
# The diagonal map and mode_strength_discrete perform the same float64 arithmetic up to reassociation: a few
# ulp per step, amplified by the ~e^{2st/τ} growth phase; 1e-10 relative is far above that, far below any bug.
DECOUPLED_RTOL = 1e-10
# Continuous closed forms evaluated in different ways (log-space logistic vs. QR form): ~1e-13 relative.
CLOSED_FORM_RTOL = 1e-9
# float64 torch SGD vs the map: rounding (~1e-14 per step, amplified by the growth phase) plus the neglected
# decaying part of a γ = 1e-6 init (O(γ²) ≈ 1e-12 relative in time); 1e-8·s_max is the accuracy asked for.
TORCH_TOL = 1e-8
# Depth 2: the projected flow keeps the decaying part A − B that the Z-map drops; it shifts each rise by O(init²).
PROJECTED_VS_Z_TOL = 1e-9


def _ode_m(s, M0, tau, t_eval):
    """Reference: τ dM/dt = (S − M)M + M(S − M) with solve_ivp (fine for invertible M0)."""
    r, S = s.size, np.diag(s)

    def rhs(_, y):
        M = y.reshape(r, r)
        return (((S - M) @ M + M @ (S - M)) / tau).ravel()

    sol = solve_ivp(rhs, (0, t_eval[-1]), M0.ravel(), t_eval=t_eval, method="DOP853", rtol=1e-12, atol=1e-40)
    assert sol.success
    return sol.y.T.reshape(-1, r, r)


def _ode_z(s, Z0, tau, t_eval):
    """Reference for singular M0 = ZᵀZ: τ dZ/dt = Z(S − ZᵀZ) (keeps M PSD, unlike the M-ODE under rounding)."""
    h, r, S = Z0.shape[0], s.size, np.diag(s)

    def rhs(_, y):
        Z = y.reshape(h, r)
        return (Z @ (S - Z.T @ Z) / tau).ravel()

    sol = solve_ivp(rhs, (0, t_eval[-1]), Z0.ravel(), t_eval=t_eval, method="DOP853", rtol=1e-12, atol=1e-40)
    assert sol.success
    Z = sol.y.T.reshape(-1, h, r)
    return np.einsum("tki,tkj->tij", Z, Z)


S_TEST = np.array([5.0, 3.0, 2.97, 1.0, 0.0])  # a near-degenerate pair and a zero mode
TAU = 10.0
T_EVAL = np.array([0.0, 1.0, 5.0, 10.0, 20.0, 40.0, 80.0])


@settings(max_examples=6)
@given(seed=st.integers(0, 2**31), scale=st.sampled_from([1e-3, 1e-8]))
def test_continuous_equals_matrix_ode(seed, scale):
    Z = np.random.default_rng(seed).standard_normal((8, S_TEST.size)) * scale
    M0 = Z.T @ Z
    want = _ode_m(S_TEST, M0, TAU, T_EVAL)
    got = coupled_modes_continuous(T_EVAL, S_TEST, M0, TAU)
    assert np.abs(got - want).max() <= ODE_TOL * S_TEST.max()
    assert np.allclose(coupled_modes_continuous(T_EVAL, S_TEST, M0, TAU, factor=Z), got, rtol=0, atol=1e-12)


@settings(max_examples=6)
@given(seed=st.integers(0, 2**31), n_hidden=st.sampled_from([1, 2, 3]))
def test_continuous_singular_m0_equals_z_ode(seed, n_hidden):
    Z = np.random.default_rng(seed).standard_normal((n_hidden, S_TEST.size)) * 1e-4
    want = _ode_z(S_TEST, Z, TAU, T_EVAL)
    for kwargs in ({}, {"factor": Z}):
        got = coupled_modes_continuous(T_EVAL, S_TEST, Z.T @ Z, TAU, **kwargs)
        assert np.abs(got - want).max() <= ODE_TOL * S_TEST.max()
    # rank ρ: only ρ modes can be learned, and the others are not.
    assert np.linalg.matrix_rank(got[-1], tol=1e-6) == n_hidden


def test_tiny_init_large_times_are_finite_and_converge():
    s = np.array([157.0, 120.0, 100.5, 100.0, 0.0])
    Z = np.random.default_rng(0).standard_normal((30, 5)) * 1e-13  # K ~ 1e-25 as in the tutorial
    t = np.array([0.0, 50.0, 400.0, 1e4, 1e300, np.inf])
    M = coupled_modes_continuous(t, s, Z.T @ Z, 400.0)
    assert np.isfinite(M).all()
    assert np.abs(M[0] - Z.T @ Z).max() <= 1e-40
    assert np.allclose(M[3:5], np.diag(s), rtol=0, atol=1e-12 * s[0])
    assert np.array_equal(M[5], np.diag(s))


def test_fixed_point_of_rank_deficient_start():
    s = np.array([4.0, 3.0, 2.0, 1.0])
    Z = np.random.default_rng(1).standard_normal((2, 4))
    assert np.allclose(coupled_modes_continuous(np.inf, s, Z.T @ Z, 1.0), np.diag([4.0, 3.0, 0.0, 0.0]), atol=1e-12)
    # a decoupled start with a zero strength never learns that mode (a₀ = 0 is a fixed point of the flow)
    a0 = np.array([1e-6, 0.0, 1e-6, 0.0])
    assert np.array_equal(coupled_modes_continuous(np.inf, s, np.diag(a0), 1.0), np.diag([4.0, 0.0, 2.0, 0.0]))
    late = coupled_modes_continuous(200.0, s, np.diag(a0), 1.0)
    assert np.allclose(np.diag(late), mode_strength(200.0, s, a0, 1.0), rtol=CLOSED_FORM_RTOL, atol=0)


@given(s=st.lists(st.floats(0.1, 100.0), min_size=1, max_size=5),
       log_ratio=st.floats(-25.0, -0.01), eta_frac=st.floats(0.01, 0.45))
def test_discrete_diagonal_equals_mode_strength_discrete(s, log_ratio, eta_frac):
    s = np.array(s)
    a0 = s * 10.0**log_ratio
    eta = eta_frac / s.max()
    got = coupled_modes_discrete(200, s, np.diag(a0), eta)
    want = mode_strength_discrete(200, s, a0, eta)
    assert np.allclose(np.diagonal(got, axis1=1, axis2=2), want, rtol=DECOUPLED_RTOL, atol=0)
    assert not (got - np.einsum("ti,ij->tij", np.diagonal(got, axis1=1, axis2=2), np.eye(s.size))).any()


@given(s=st.lists(st.floats(0.1, 100.0), min_size=1, max_size=5), log_ratio=st.floats(-25.0, 0.5),
       t=st.lists(st.floats(0.0, 1e4), min_size=1, max_size=4), tau=st.floats(0.5, 500.0))
def test_continuous_diagonal_equals_mode_strength(s, log_ratio, t, tau):
    s, t = np.array(s), np.array(t)
    a0 = s * 10.0**log_ratio
    got = np.diagonal(coupled_modes_continuous(t, s, np.diag(a0), tau), axis1=1, axis2=2)
    want = mode_strength(t[:, None], s, a0, tau)
    assert np.allclose(got, want, rtol=CLOSED_FORM_RTOL, atol=0)


def test_discrete_map_tends_to_continuous_as_eta_shrinks():
    s = np.array([5.0, 3.0, 2.97])
    Z = np.random.default_rng(2).standard_normal((4, 3)) * 1e-3
    gaps = []
    for eta in (0.02, 0.01, 0.005):
        n = int(round(8.0 / eta))  # the same physical time t/τ = 8 (mid-learning of the slow pair)
        steps = np.arange(0, n + 1, n // 8)
        disc = coupled_modes_discrete(n, s, Z.T @ Z, eta)[steps]
        gaps.append(np.abs(disc - coupled_modes_continuous(steps.astype(float), s, Z.T @ Z, 1.0 / eta)).max())
    assert gaps[0] > gaps[1] > gaps[2]
    assert 1.6 < gaps[0] / gaps[1] < 2.5 and 1.6 < gaps[1] / gaps[2] < 2.5  # first order in η


# ----------------------------------------------------------------------------------- torch from a random init
def torch_sgd(X, Y, sizes, lr, gamma, n_steps, seed, U, V):
    """Plain float64 torch SGD on nn.MSELoss from the tutorial's init; returns w0, Uᵀ W_tot V and sv(W_tot)."""
    gen = torch.Generator().manual_seed(seed)
    layers = [nn.Linear(i, o, bias=False, dtype=torch.float64) for i, o in zip(sizes[:-1], sizes[1:])]
    with torch.no_grad():
        for layer in layers:
            n_out, n_in = layer.weight.shape
            layer.weight.normal_(0.0, gamma / np.sqrt(n_in + n_out), generator=gen)
    net = nn.Sequential(*layers)
    w0 = [layer.weight.detach().numpy().copy() for layer in layers]
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    x, y, loss_fn = torch.tensor(X), torch.tensor(Y), nn.MSELoss()
    Ut, Vt = torch.tensor(U), torch.tensor(V)
    M, sv = [], []
    for k in range(n_steps + 1):
        with torch.no_grad():
            W = layers[0].weight
            for layer in layers[1:]:
                W = layer.weight @ W
            M.append((Ut.T @ W @ Vt).numpy())
            sv.append(torch.linalg.svdvals(W).numpy())
        if k < n_steps:
            opt.zero_grad()
            loss_fn(net(x), y).backward()
            opt.step()
    return w0, np.array(M), np.array(sv)


def tree_features(rng, n_features, n_levels=3, p_flip=0.15):
    """±1 features of a binary tree's leaves (the tutorial's hierarchy; root flips with p = 0.5)."""
    n_items = 2**n_levels
    feats = np.ones((n_items, n_features))
    for level in range(n_levels + 1):
        nodes = 2**level
        flips = rng.random((nodes, n_features)) < (0.5 if level == 0 else p_flip)
        feats *= np.repeat(np.where(flips, -1.0, 1.0), n_items // nodes, axis=0)
    return feats


def _coupled_vs_torch(X, Y, hidden, lr, gamma, n_steps, seed):
    U, s, V = io_svd(X, Y)
    w0, M_torch, sv_torch = torch_sgd(X, Y, [X.shape[1], hidden, Y.shape[1]], lr, gamma, n_steps, seed, U, V)
    eta = learning_rate_to_eta(lr, X.shape[0], Y.shape[1])
    M = coupled_modes_discrete(n_steps, s, initial_mode_matrix(w0, U, V), eta)
    sv = np.linalg.svd(M, compute_uv=False)
    return s, M, M_torch, sv, sv_torch, eta


def test_coupled_map_equals_torch_sgd_from_random_init():
    rng = np.random.default_rng(0)
    X, Y = np.eye(6), rng.choice([-1.0, 1.0], size=(6, 200))
    s0 = io_svd(X, Y)[1][0]
    lr = 0.4 * max_stable_lr(s0, 6, 200)
    s, M, M_torch, sv, sv_torch, _ = _coupled_vs_torch(X, Y, 12, lr, 1e-6, 300, seed=1)
    assert sv_torch[-1, -1] > 0.99 * s[-1]  # every mode has been learned: the whole curve was compared
    assert np.abs(sv - sv_torch).max() <= TORCH_TOL * s[0]
    assert np.abs(M - M_torch).max() <= TORCH_TOL * s[0]


def test_coupled_map_equals_torch_on_tutorial_like_tree():
    # The tutorial's 8-30-10000 net at 1/10 of the features, fast enough for every run. s scales like √N_out, so
    # lr = 100·√(1/10) keeps the tutorial's η·s (≈ 0.39 for the top mode) and its learning times (< 250 epochs).
    rng = np.random.default_rng(3)
    X, Y = np.eye(8), tree_features(rng, 1000)
    s, M, M_torch, sv, sv_torch, eta = _coupled_vs_torch(X, Y, 30, 100.0 * np.sqrt(0.1), 1e-12, 250, seed=0)
    assert 0.3 < eta * s[0] < 0.5
    assert sv_torch[-1, -1] > 0.9 * s[-1]  # all eight modes learned: the whole learning phase was compared
    assert np.abs(sv - sv_torch).max() <= TORCH_TOL * s[0]


@pytest.mark.slow
def test_coupled_map_equals_torch_on_tutorial_8_30_10000():
    rng = np.random.default_rng(4)
    X, Y = np.eye(8), tree_features(rng, 10000)
    start = time.perf_counter()
    s, M, M_torch, sv, sv_torch, _ = _coupled_vs_torch(X, Y, 30, 100.0, 1e-12, 250, seed=0)
    assert sv_torch[-1, -1] > 0.9 * s[-1]
    assert np.abs(sv - sv_torch).max() <= TORCH_TOL * s[0], time.perf_counter() - start


@pytest.mark.parametrize("complement", [True, False])
def test_projected_depth3_equals_torch_sgd(complement):
    rng = np.random.default_rng(5)
    X, Y = np.eye(5), rng.choice([-1.0, 1.0], size=(5, 60))
    U, s, V = io_svd(X, Y)
    lr = 0.4 * max_stable_lr(s[0], 5, 60, depth=3)
    n = 700
    w0, M_torch, _ = torch_sgd(X, Y, [5, 9, 8, 60], lr, 0.1, n, 2, U, V)
    eta = learning_rate_to_eta(lr, 5, 60)
    M = projected_modes_discrete(n, s, project_weights(w0, U, V, complement=complement), eta)
    assert np.linalg.svd(M_torch[-1], compute_uv=False)[-1] > 0.9 * s[-1]  # learned by the end
    err = np.abs(M - M_torch).max() / s[0]
    if complement:  # exact: the outside parts of W_1, W_L are carried along
        assert err <= TORCH_TOL
    else:  # dropping them is only right to O(init²) in time: a visible error at γ = 0.1
        assert err > 1e3 * TORCH_TOL


def test_projected_depth2_agrees_with_z_map_for_small_init():
    rng = np.random.default_rng(6)
    U, s, V = io_svd(np.eye(4), rng.choice([-1.0, 1.0], size=(4, 30)))
    w0 = [rng.standard_normal((10, 4)) * 1e-7, rng.standard_normal((30, 10)) * 1e-7]
    eta = 0.3 / s[0]
    M_z = coupled_modes_discrete(400, s, initial_mode_matrix(w0, U, V), eta)
    M_p = projected_modes_discrete(400, s, project_weights(w0, U, V), eta)
    assert np.abs(M_z[-1] - np.diag(s)).max() < 1e-3 * s[0]  # learned
    assert np.abs(M_z - M_p).max() <= PROJECTED_VS_Z_TOL * s[0]


def test_projected_continuous_equals_closed_form_for_z_form_weights():
    rng = np.random.default_rng(7)
    U, s, V = io_svd(np.eye(4), rng.choice([-1.0, 1.0], size=(4, 30)))
    Z = rng.standard_normal((6, 4)) * 1e-3
    w0 = [Z @ V.T, U @ Z.T]  # exactly of the Z-form: both predictions are exact
    assert np.allclose(growing_part(*w0, U, V), Z, rtol=1e-12, atol=0)
    t = np.array([0.0, 2.0, 5.0, 9.0, 30.0])
    got = projected_modes_continuous(t, s, project_weights(w0, U, V), 1.0)
    assert np.abs(got - coupled_modes_continuous(t, s, Z.T @ Z, 1.0)).max() <= ODE_TOL * s[0]


def test_depth1_projected_is_linear_relaxation():
    rng = np.random.default_rng(8)
    U, s, V = io_svd(np.eye(3), rng.standard_normal((3, 5)))
    W = rng.standard_normal((5, 3))
    M0 = U.T @ W @ V
    k = np.arange(51)
    eta = 0.1
    want = np.diag(s) + (M0 - np.diag(s)) * (1 - eta) ** k[:, None, None]
    assert np.allclose(projected_modes_discrete(50, s, project_weights([W], U, V), eta), want, rtol=1e-12, atol=1e-14)
    cont = projected_modes_continuous(np.array([0.0, 3.0]), s, [M0], 2.0)
    assert np.allclose(cont[1], np.diag(s) + (M0 - np.diag(s)) * np.exp(-1.5), rtol=1e-14, atol=1e-15)


# ---------------------------------------------------------------------------------------------- misuse
def _basis():
    rng = np.random.default_rng(9)
    return io_svd(np.eye(3), rng.standard_normal((3, 6)))


@pytest.mark.parametrize("call, match", [
    (lambda U, s, V: coupled_modes_discrete(5, s, np.triu(np.ones((3, 3))), 0.1), "symmetric"),
    (lambda U, s, V: coupled_modes_discrete(5, s, -np.eye(3), 0.1), "positive semi-definite"),
    (lambda U, s, V: coupled_modes_discrete(5, s, np.eye(2), 0.1), "M0 must be"),
    (lambda U, s, V: coupled_modes_discrete(5, s, np.eye(3), 0.0), "eta"),
    (lambda U, s, V: coupled_modes_discrete(-1, s, np.eye(3), 0.1), "n_steps"),
    (lambda U, s, V: coupled_modes_discrete(50, s, np.eye(3), 5.0), "diverge"),
    (lambda U, s, V: coupled_modes_continuous(-1.0, s, np.eye(3), 1.0), "t must be >= 0"),
    (lambda U, s, V: coupled_modes_continuous(1.0, -s, np.eye(3), 1.0), "s must be"),
    (lambda U, s, V: coupled_modes_continuous(1.0, s, np.eye(3), 1.0, factor=np.eye(2)), "factor"),
    (lambda U, s, V: growing_part(np.ones((4, 3)), np.ones((6, 5)), U, V), r"weights\[1\]"),
    (lambda U, s, V: initial_mode_matrix([np.ones((4, 3))], 2 * U, V), "orthonormal"),
    (lambda U, s, V: project_weights([np.ones((4, 2)), np.ones((6, 4))], U, V), "3 columns"),
    (lambda U, s, V: project_weights(np.ones((6, 3)), U, V), "list"),
    (lambda U, s, V: projected_modes_continuous(np.inf, s, [np.eye(3), np.eye(3)], 1.0), "finite"),
    (lambda U, s, V: projected_modes_discrete(3, s, [np.eye(2)], 0.1), "projected"),
])
def test_misuse_raises_value_error(call, match):
    U, s, V = _basis()
    with pytest.raises(ValueError, match=match):
        call(U, s, V)
