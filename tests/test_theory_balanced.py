"""theory.balanced (λ-balanced closed form), theory.ntk and saxe.balanced_init_: limits, solve_ivp, training.

Layers: (1) limits — λ → 0 is the small-init coupled theory, t = ∞ the fixed point; (2) the closed form against
``scipy.integrate.solve_ivp`` of the exact reduced gradient flow over hypothesis-drawn problems and λ of both signs;
(3) against real float64 training (saxe.train) from ``balanced_init_``; (4) the NTK against torch autograd.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import balanced_weights, whitened_problem

import saxe
import theory
from saxe.models import balanced_init_
from theory.balanced import BALANCE_RTOL, balance_deviation, balanced_solution, measured_lambda
from theory.ntk import ntk_matrix, ntk_relative_change
from theory.state import exact_flow, exact_state

# solve_ivp runs at rtol 1e-10 (theory.state.ODE_RTOL); over a few hundred τ its global error reaches ~1e-8 of s.
IVP_RTOL = 1e-6
# λ → 0 vs the coupled theory: the coupled map drops the decaying part A − B, O(init²) = O(γ²) relative to s.
COUPLED_FACTOR = 10.0
# Richardson-extrapolated SGD (2·SGD(η/2) − SGD(η)) differs from gradient flow by O(η²): measured 9.6e-7 of s at
# η·s = 2e-3, so ≈ 5.4e-7 at the 1.5e-3 used.
RICHARDSON_TOL = 1e-6
# One float64 SGD step of O(1) matrices and the closed form: rounding ~1e-15 each; 1e-12 after thousands of steps.
FLOAT64_TOL = 1e-12






# ----------------------------------------------------------------------------------------------- (1) limits
@pytest.mark.parametrize("lam_over_gamma2", [0.0, 1.0, -1.0])
def test_small_lambda_recovers_coupled_small_init_theory(lam_over_gamma2):
    """λ = O(γ²) → 0 with the init: the closed form tends to the coupled (small-init) theory, error O(γ²)."""
    X, Y = whitened_problem([3.0, 2.0, 1.2], 7, 5)
    U, s, V = theory.io_svd(X, Y)
    for gamma in (1e-2, 1e-3):
        lam = lam_over_gamma2 * gamma**2
        w0 = balanced_weights(3, 3 if lam < 0 else 4, 5, lam, gamma, 0)
        sol = balanced_solution(X, Y, w0, lr=0.01)
        t = np.linspace(0.0, 30.0, 61) * sol.tau
        Z = theory.growing_part(*w0, U, V)
        coupled = theory.coupled_modes_continuous(t, s, Z.T @ Z, sol.tau, factor=Z)
        assert np.abs(sol.modes(t) - coupled).max() <= COUPLED_FACTOR * gamma**2 * s.max()


def test_fixed_point_and_long_times():
    X, Y = whitened_problem([3.0, 2.0, 1.2], 3, 6)
    w0 = balanced_weights(3, 5, 6, 0.8, 0.5, 1)
    sol = balanced_solution(X, Y, w0, lr=0.01)
    M_inf = sol.w_tot(np.inf)
    assert np.abs(M_inf - Y.T @ X).max() <= FLOAT64_TOL * 1e2
    far = sol.w_tot(np.array([1e3, 1e7]) * sol.tau)  # beyond MAX_STEP_EXPONENT: stepped, never overflows
    assert np.isfinite(far).all() and np.abs(far - M_inf).max() <= 1e-9
    assert np.abs(sol.w_tot(0.0) - w0[1] @ w0[0]).max() <= FLOAT64_TOL
    # the balance is conserved by the flow: P's blocks give W2ᵀW2 − W1W1ᵀ = λI at every t
    for t in (0.0, 0.5 * sol.tau, 3 * sol.tau):
        W1, W2 = sol.weights(t)
        assert balance_deviation(W1, W2, sol.lam) <= 1e-12


# ---------------------------------------------------------------------------------------- (2) vs solve_ivp
@settings(max_examples=10)
@given(seed=st.integers(0, 2**20), n_h=st.integers(1, 5), n_out=st.integers(3, 6),
       lam=st.floats(-2.0, 3.0), log_gamma=st.floats(-3.0, 0.5), spread=st.floats(0.2, 1.0))
def test_closed_form_matches_gradient_flow(seed, n_h, n_out, lam, log_gamma, spread):
    r = 3
    s = 2.0 * np.array([1.0, 1.0 - 0.5 * spread, 1.0 - spread + 0.05])
    n_out = max(n_out, n_h) if lam > 0 else n_out  # λ > 0 needs N_out >= N_h
    X, Y = whitened_problem(s, seed, n_out)
    n_in = r if lam >= 0 else max(r, n_h)  # λ < 0 needs N_in >= N_h: pad with items whose targets are 0
    X, Y = np.eye(n_in), np.vstack([Y, np.zeros((n_in - r, n_out))])
    w0 = balanced_weights(n_in, n_h, n_out, lam, 10.0**log_gamma, seed)
    sol = balanced_solution(X, Y, w0, lr=0.01)
    state = exact_state(X, Y, w0)
    t = np.array([0.0, 0.3, 1.0, 3.0, 10.0, 40.0]) * sol.tau
    M, G = exact_flow(t, state, sol.tau)
    scale = max(float(np.max(s)), 1.0)
    assert np.abs(sol.mode_matrix(t) - M).max() <= IVP_RTOL * scale
    rsm_ivp = np.einsum("pi,tij,qj->tpq", X @ state.Vbar, G, X @ state.Vbar)
    assert np.abs(sol.rsm(t) - rsm_ivp).max() <= IVP_RTOL * scale


# ------------------------------------------------------------------------------------------ (3) vs training
def _train_modes(X, Y, w0, lr, n):
    net = saxe.make_net(X.shape[1], [w0[0].shape[0]], Y.shape[1]).double()
    with torch.no_grad():
        for p, w in zip(saxe.weights(net), w0):
            p.copy_(torch.from_numpy(w))
    return saxe.train(net, X, Y, n, lr, engine="reduced", record_rsm=False).modes


def test_against_float64_training_richardson():
    """SGD = flow + c·η + O(η²): the error halves with η, and the extrapolation matches the closed form to 1e-6."""
    X, Y = whitened_problem([2.0, 1.6, 1.3], 11, 6)
    w0 = balanced_weights(3, 4, 6, 0.3, 0.3, 2)
    eta_per_lr = theory.learning_rate_to_eta(1.0, 3, 6)
    lr = 1.5e-3 / (eta_per_lr * 2.0)  # η·s_max = 1.5e-3
    sol = balanced_solution(X, Y, w0, lr)
    n = int(6.0 * sol.tau)
    k = np.arange(0, n + 1, 20)
    pred = np.linalg.svd(sol.mode_matrix(k.astype(float)), compute_uv=False)
    coarse, fine = _train_modes(X, Y, w0, lr, n)[k], _train_modes(X, Y, w0, lr / 2, 2 * n)[2 * k]
    e_coarse, e_fine = np.abs(coarse - pred).max(), np.abs(fine - pred).max()
    assert 1.8 <= e_coarse / e_fine <= 2.2  # first order in η
    assert np.abs(2.0 * fine - coarse - pred).max() <= RICHARDSON_TOL * 2.0


def test_finite_lr_form_beats_gradient_flow_in_the_rich_regime():
    """Against the exact SGD map (theory.predictor, 'exact'): the rate-corrected form fixes the escape phase."""
    X, Y = whitened_problem([3.0, 2.0, 1.2], 5, 6)
    w0 = balanced_weights(3, 4, 6, 1e-8, 1e-4, 3)
    eta_per_lr = theory.learning_rate_to_eta(1.0, 3, 6)
    errors = {}
    for ratio in (0.05, 0.025):
        lr = ratio / (eta_per_lr * 3.0)
        exact = theory.predictor(X, Y, lr, weights=w0)
        n = int(25.0 / ratio)
        t = np.arange(n + 1.0)
        ref = exact.mode_matrix(t)[:, :3, :3]
        for method in ("continuous", "finite_lr"):
            errors[method, ratio] = np.abs(balanced_solution(X, Y, w0, lr, method=method).modes(t) - ref).max() / 3.0
    for ratio in (0.05, 0.025):
        assert errors["finite_lr", ratio] * 5 <= errors["continuous", ratio]
    assert 1.6 <= errors["finite_lr", 0.05] / errors["finite_lr", 0.025] <= 2.4  # first order in η


def test_finite_lr_form_solves_the_discrete_riccati_map():
    """At integer k the finite-lr form is P_{k+1} = A P_k (I + B P_k)⁻¹ A, A = I + ηF, B = η(I + ηF/2) exactly."""
    X, Y = whitened_problem([2.5, 1.5, 0.7], 9, 5)
    w0 = balanced_weights(3, 4, 5, 0.4, 0.3, 0)
    sol = balanced_solution(X, Y, w0, lr=1.0, method="finite_lr")
    eta, n = sol.eta, sol.f.size
    A = sol.O @ np.diag(1.0 + eta * sol.f) @ sol.O.T
    B = sol.O @ np.diag(eta * (1.0 + 0.5 * eta * sol.f)) @ sol.O.T
    P, ref = sol.qqt(0.0), sol.qqt(np.arange(1.0, 60.0))
    for k in range(59):
        P = A @ P @ np.linalg.solve(np.eye(n) + B @ P, A)
        assert np.abs(P - ref[k]).max() <= 1e-12 * max(np.abs(P).max(), 1.0)


# ------------------------------------------------------------------------------------------------ (4) NTK
def test_ntk_matches_autograd_jacobians():
    g = torch.Generator().manual_seed(1)
    X, W1, W2 = (torch.randn(*shape, dtype=torch.float64, generator=g) for shape in ((3, 4), (5, 4), (6, 5)))
    J1, J2 = torch.autograd.functional.jacobian(lambda a, b: (X @ (b @ a).T).reshape(-1), (W1, W2))
    J = torch.cat([J1.reshape(18, -1), J2.reshape(18, -1)], dim=1)
    theta = ntk_matrix(X.numpy(), W1.numpy(), W2.numpy())
    assert np.abs((J @ J.T).numpy() - theta).max() <= FLOAT64_TOL * np.abs(theta).max()
    W1b, W2b = W1 + 0.1 * torch.randn(5, 4, dtype=torch.float64, generator=g), 1.3 * W2
    dense = np.linalg.norm(ntk_matrix(X.numpy(), W1b.numpy(), W2b.numpy()) - theta) / np.linalg.norm(theta)
    assert ntk_relative_change(X.numpy(), W1.numpy(), W2.numpy(), W1b.numpy(), W2b.numpy()) == pytest.approx(dense,
                                                                                                          rel=1e-10)


# ----------------------------------------------------------------------------------- initializer, validation
@pytest.mark.parametrize("lam,sizes", [(0.5, (3, 5, 7)), (-0.4, (6, 4, 2)), (0.0, (3, 6, 4)), (2.0, (8, 30, 40))])
def test_balanced_init_is_exactly_balanced(lam, sizes):
    w = balanced_weights(*sizes, lam, 1.0, 4)
    got, dev = measured_lambda(*w)
    assert got == pytest.approx(lam, abs=1e-12) and balance_deviation(*w, lam) <= 1e-14
    net = saxe.make_net(*sizes[:1], [sizes[1]], sizes[2])  # float32: balanced to its rounding
    balanced_init_(net, lam, gamma=1.0, generator=torch.Generator().manual_seed(0))
    assert balance_deviation(*[p.detach().double().numpy() for p in saxe.weights(net)], lam) <= BALANCE_RTOL


def test_balanced_init_refuses_impossible_widths_and_bad_args():
    with pytest.raises(ValueError, match="N_out >= N_h"):
        balanced_init_(saxe.make_net(3, [5], 4), 1.0)
    with pytest.raises(ValueError, match="N_in >= N_h"):
        balanced_init_(saxe.make_net(3, [5], 9), -1.0)
    with pytest.raises(ValueError, match="one hidden layer"):
        balanced_init_(saxe.make_net(3, [5, 5], 9), 1.0)
    with pytest.raises(ValueError, match="lam"):
        balanced_init_(saxe.make_net(3, [5], 9), float("nan"))


def test_measured_lambda_of_the_tutorial_rule_is_scale_free():
    """Random init 8-30-2000: λ ≈ γ²(N_out/(N_h+N_out) − N_in/(N_in+N_h)); the deviation does not depend on γ."""
    devs = []
    for gamma in (1e-6, 1.0):
        net = saxe.make_net(8, [30], 2000).double()
        saxe.initializer_(net, gamma, generator=torch.Generator().manual_seed(0))
        lam, dev = measured_lambda(*[p.detach().numpy() for p in saxe.weights(net)])
        expected = gamma**2 * (2000 / 2030 - 8 / 38)
        assert lam == pytest.approx(expected, rel=0.05)  # sample trace of 30·2000 + 30·8 squares: ~1 % spread
        devs.append(dev)
    assert devs[0] == pytest.approx(devs[1], rel=1e-9) and 0.2 < devs[0] < 1.0


def test_solution_refuses_outside_its_domain():
    X, Y = whitened_problem([2.0, 1.0], 0, 4)
    rng = np.random.default_rng(0)
    w_random = [rng.standard_normal((3, 2)), rng.standard_normal((4, 3))]
    with pytest.raises(ValueError, match="λ-balanced"):
        balanced_solution(X, Y, w_random, 0.01)
    approx = balanced_solution(X, Y, w_random, 0.01, approximate=True)
    assert not approx.exact and approx.deviation > BALANCE_RTOL
    w0 = balanced_weights(2, 3, 4, 0.5, 1.0, 0)
    with pytest.raises(ValueError, match="whitened"):
        balanced_solution(2.0 * X, Y, w0, 0.01)
    with pytest.raises(ValueError, match="depth 2"):
        balanced_solution(X, Y, [w0[0], np.eye(3), w0[1]], 0.01)
    with pytest.raises(ValueError, match="finite-lr form needs"):
        balanced_solution(X, Y, w0, 10.0, method="finite_lr")
    with pytest.raises(ValueError, match="method"):
        balanced_solution(X, Y, w0, 0.01, method="euler")
