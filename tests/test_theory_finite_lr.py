"""Finite-learning-rate closed forms: η → 0 limit, exact map over drawn spectra, depth L, coupled, torch SGD."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad

import saxe
import theory
from theory.finite_lr import (
    _defect2,
    _middle2,
    max_monotone_eta,
    mode_strength_finite_lr,
    time_to_strength_finite_lr,
)
from theory.finite_lr_coupled import coupled_modes_finite_lr

# As η → 0 the finite-lr form differs from Saxe's by an O(1)-epoch shift (δ ≈ ln(s/a₀)/4 epochs) on a curve of
# slope ≤ ηs/2 per epoch: |Δa|/s ≲ ηs·ln(s/a₀)/8 ≈ 4e-6 at ηs = 1e-6, a₀/s ≥ 1e-12; 1e-5 leaves margin.
SAXE_LIMIT_H, SAXE_LIMIT_TOL = 1e-6, 1e-5
# Error model of order 1 (max over the orbit of |Δa|/s) against the exact map, measured over drawn spectra and
# a₀ (bench/finite_lr_table.py and this file): depth 2 ≤ 0.07·h⁴ at h = ηs ≤ 0.45 (tutorial lr = 100: 0.0031 at
# h = 0.39, 0.027·h⁴ at h ≤ 0.1); depth 3/4 ≤ 0.05·(Lh)² at Lh ≤ 0.9; the bounds carry a factor ≥ 2 of margin.
# FLOAT_FLOOR covers float64 rounding of the exact orbit through the growth phase (~1e-12 relative).
DEPTH2_C, DEEP_C, FLOAT_FLOOR = 0.2, 0.1, 1e-10
# Diagonal M0: the coupled finite-lr form is the scalar form in each mode, up to the QR evaluation (~1e-13).
DIAGONAL_TOL = 1e-9
# Coupled map vs coupled form, random small init: the per-mode reparametrisation leaves an O(η) coupling error,
# measured ≤ 0.033·ηs_max·s_max on the tutorial (seeds 0–3) and up to 0.24·ηs_max·s_max for the near-degenerate
# pair (3, 2.97) below (seeds 0–2, ηs_max 0.0125…0.4); 0.4 leaves margin over the worst measured case.
COUPLED_C = 0.4
# Torch float64 SGD from a decoupled init vs the exact map differ by rounding only (~1e-12 s); the closed form's
# measured gap at lr = 100 on the tutorial is 0.0031·s₁, so 0.005 tests the headline number.
TUTORIAL_TOL = 0.005
# Dilogarithm form of the depth-2 middle correction vs adaptive quadrature (quad's epsabs 1e-13 on O(1/h) terms).
QUAD_TOL = 1e-8


def _orbit_error(s, a0, eta, depth, order=1, points=400):
    """Max over the orbit (until 0.999 s) of |closed form − exact map|/s at ≤ ``points`` epochs."""
    n = int(1.2 * theory.time_to_learn(0.999, s, a0, eta=eta, depth=depth, method="discrete")) + 2
    exact = theory.mode_strength_discrete(n, s, a0, eta, depth=depth)
    k = np.unique(np.linspace(0, n, min(n + 1, points)).round().astype(int))
    return float(np.abs(mode_strength_finite_lr(k.astype(float), s, a0, eta, depth=depth, order=order)
                        - exact[k]).max() / s)


# ------------------------------------------------------------------------------------------------ limits
@pytest.mark.parametrize("depth", [2, 3, 4])
def test_eta_to_zero_recovers_saxe(depth):
    s = np.array([3.0, 1.0, 0.2])
    a0 = s * np.array([1e-12 if depth == 2 else 1e-3, 1e-2, 0.3])
    eta = SAXE_LIMIT_H / s.max() ** (2 - 2 / depth)
    tau = 1.0 / eta
    t_half = theory.time_to_learn(0.5, s, a0, tau=tau, depth=depth)
    t = np.linspace(0, 3, 200)[:, None] * t_half[None, :]  # each mode's own learning curve
    gap = np.abs(mode_strength_finite_lr(t, s, a0, eta, depth=depth) - theory.mode_strength(t, s, a0, tau, depth))
    assert (gap / s).max() < SAXE_LIMIT_TOL
    # and the gap closes like η: ten times smaller η, ~ten times smaller gap
    eta2 = eta / 10
    t2 = t * 10
    gap2 = np.abs(mode_strength_finite_lr(t2, s, a0, eta2, depth=depth) - theory.mode_strength(t2, s, a0, 1 / eta2,
                                                                                             depth))
    assert (gap2 / s).max() < 0.2 * (gap / s).max()


def test_depth1_is_exact():
    s, a0, eta = np.array([2.0, 0.5]), np.array([0.1, 0.0]), 0.3
    exact = theory.mode_strength_discrete(40, s, a0, eta, depth=1)
    np.testing.assert_allclose(mode_strength_finite_lr(np.arange(41.0)[:, None], s, a0, eta, depth=1), exact,
                               rtol=1e-12, atol=1e-14)


def test_dilogarithm_middle_matches_quadrature():
    for h in (1e-3, 0.1, 0.45):
        lam0, lam1 = 2 * np.log1p(h), -np.log1p(-2 * h)
        def integrand(v, h=h, lam0=lam0, lam1=lam1):
            return _defect2(np.array(v), np.array(h)) * (1 / (v * lam0) + 1 / ((1 - v) * lam1))

        for x in (1e-6, 0.3, 0.9, 1 - 1e-9):
            ref, _ = quad(integrand, 0, x, epsabs=1e-13, limit=200)
            ref -= 0.5 * _defect2(np.array(x), np.array(h))
            assert abs(_middle2(np.array(x), np.array(h)) - ref) < QUAD_TOL * max(1.0, abs(ref))


# ------------------------------------------------------------------------------------------------ exact map
@settings(max_examples=15)
@given(s=st.floats(1e-2, 1e3), h=st.floats(0.01, 0.45), log_ratio=st.floats(-20, np.log10(0.5)))
def test_depth2_within_error_model(s, h, log_ratio):
    a0 = s * 10.0**log_ratio
    err = _orbit_error(s, a0, h / s, 2)
    assert err <= DEPTH2_C * h**4 + FLOAT_FLOOR
    assert _orbit_error(s, a0, h / s, 2, order=0) <= 0.5 * h**2 + FLOAT_FLOOR  # order 0: O(h²)


@settings(max_examples=10)
@given(depth=st.sampled_from([3, 4]), s=st.floats(0.1, 1e2), lh=st.floats(0.05, 0.9),
       log_ratio=st.floats(-4, np.log10(0.5)))
def test_depth_L_within_error_model(depth, s, lh, log_ratio):
    a0 = s * 10.0**log_ratio
    eta = lh / depth / s ** (2 - 2 / depth)
    assert _orbit_error(s, a0, eta, depth) <= DEEP_C * lh**2 + FLOAT_FLOOR


def test_tutorial_goal_and_inverse():
    X, Y = (np.asarray(m, dtype=float) for m in saxe.generate_hsd(rng=0))
    _, s, _ = theory.io_svd(X, Y)
    a0, eta = theory.expected_initial_mode_strength(1e-12, [8, 30, 10000]), theory.learning_rate_to_eta(100, 8, 10000)
    t = np.arange(251.0)[:, None]
    exact = theory.mode_strength_discrete(250, s, a0, eta)
    a = mode_strength_finite_lr(t, s, a0, eta)
    assert np.abs(a - exact).max() / s[0] < 0.01  # the goal (measured 0.0031)
    inside = (a > a0 * 1.01) & (a < s * (1 - 1e-6))  # round trip t(a(t)) = t where a(t) is resolvable
    assert np.abs(time_to_strength_finite_lr(a, s, a0, eta) - t * np.ones_like(a))[inside].max() < 1e-6


def test_tiny_and_extreme_inputs_stay_finite():
    a = mode_strength_finite_lr([0, 1e3, 1e6, np.inf], 2.0, 1e-300, 0.1)
    assert np.isfinite(a).all() and a[0] == 1e-300 and a[-1] == 2.0 and a[2] == pytest.approx(2.0)
    assert mode_strength_finite_lr(50.0, 1.0, 0.0, 0.1) == 0.0
    assert mode_strength_finite_lr(50.0, 1.0, 1.0, 0.1) == 1.0
    a3 = mode_strength_finite_lr([1.0, 1e4], 1.0, 1e-30, 0.1, depth=3)
    assert np.isfinite(a3).all()


@pytest.mark.parametrize("call, match", [
    (lambda: mode_strength_finite_lr(1.0, 10.0, 1e-3, 0.06), "monotone range"),
    (lambda: mode_strength_finite_lr(1.0, 10.0, 1e-3, 0.04, depth=3), "monotone range"),
    (lambda: mode_strength_finite_lr(1.0, 1.0, 2.0, 0.1), "a0 must be <= s"),
    (lambda: mode_strength_finite_lr(1.0, 1.0, 0.1, 0.1, order=2), "order"),
    (lambda: mode_strength_finite_lr(-1.0, 1.0, 0.1, 0.1), "t must be >= 0"),
    (lambda: time_to_strength_finite_lr(0.05, 1.0, 0.1, 0.1), "a must lie in"),
    (lambda: coupled_modes_finite_lr(1.0, [1.0, 0.5], np.diag([0.1, 0.0]), 0.1), "positive definite"),
    (lambda: coupled_modes_finite_lr(1.0, [1.0, 0.5], np.diag([0.1, 0.6]), 0.1), "below s"),
])
def test_domain_is_validated(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_monotone_bound_is_half_the_stable_bound():
    for depth in (1, 2, 3, 4):
        assert max_monotone_eta(7.0, depth) == pytest.approx(0.5 * theory.max_stable_eta(7.0, depth))


# ------------------------------------------------------------------------------------------------ coupled
def test_coupled_diagonal_start_is_the_scalar_form():
    s, k, eta = np.array([5.0, 3.0, 1.0]), np.array([1e-8, 1e-6, 1e-3]), 0.06
    t = np.array([0.0, 10.0, 40.0, 80.0, np.inf])
    M = coupled_modes_finite_lr(t, s, np.diag(k), eta)
    scalar = mode_strength_finite_lr(t[:, None], s, k, eta)
    np.testing.assert_allclose(np.einsum("tii->ti", M), scalar, rtol=DIAGONAL_TOL, atol=1e-300)
    assert np.abs(M - np.einsum("ti,ij->tij", np.einsum("tii->ti", M), np.eye(3))).max() < DIAGONAL_TOL


@settings(max_examples=4)
@given(seed=st.integers(0, 2**31), h=st.floats(0.02, 0.4))
def test_coupled_form_vs_coupled_map(seed, h):
    s = np.array([5.0, 3.0, 2.97, 1.0])
    Z = np.random.default_rng(seed).standard_normal((8, s.size)) * 1e-5
    K, eta = Z.T @ Z, h / s.max()
    n = int(1.2 * theory.time_to_learn(0.999, s.min(), np.diag(K).min() * 1e-2, eta=eta, method="discrete"))
    exact = theory.coupled_modes_discrete(n, s, K, eta)
    k = np.unique(np.linspace(0, n, min(n + 1, 300)).round().astype(int))
    after = np.abs(coupled_modes_finite_lr(k.astype(float), s, K, eta) - exact[k]).max() / s.max()
    k = k[:: max(1, k.size // 60)]  # the continuous form is slow on subnormal entries: 60 epochs suffice here
    before = np.abs(theory.coupled_modes_continuous(k.astype(float), s, K, 1 / eta) - exact[k]).max() / s.max()
    assert after <= COUPLED_C * h
    assert after < 0.2 * before


# ------------------------------------------------------------------------------------------------ torch
def test_against_float64_training_from_a_decoupled_init():
    torch.set_num_threads(1)
    X, Y = (np.asarray(m, dtype=float) for m in saxe.generate_hsd(rng=0))
    U, s, V = theory.io_svd(X, Y)
    a0, lr, n = 1e-6, 100.0, 150
    net = saxe.make_net(8, [30], 10000).double()
    saxe.decoupled_init_(net, U, V, a0, generator=torch.Generator().manual_seed(0))
    record = saxe.train(net, X, Y, n, lr, record_rsm=False)
    eta = theory.learning_rate_to_eta(lr, 8, 10000)
    predicted = mode_strength_finite_lr(np.arange(n + 1.0)[:, None], s, a0, eta)
    measured = np.asarray(record.modes)
    assert np.abs(np.sort(predicted, axis=1)[:, ::-1] - measured).max() / s[0] < TUTORIAL_TOL
    saxe_gap = np.abs(theory.mode_strength(np.arange(n + 1.0)[:, None], s, a0, 1 / eta) - measured).max() / s[0]
    assert saxe_gap > 0.5  # the gradient-flow form is far off here: the test can tell them apart
