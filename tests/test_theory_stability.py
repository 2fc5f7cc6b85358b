"""Learning-rate bounds of the SGD mode map and learning times (continuous and discrete)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

import theory.stability as stability
from strategies import mode_params
from theory import (
    escape_lr,
    learning_rate_to_eta,
    max_stable_lr,
    mode_strength,
    mode_strength_discrete,
    time_to_learn,
)

TUTORIAL = dict(s_max=157.7, n_samples=8, n_out=10000)
# The brief quotes the tutorial bounds to one decimal.
QUOTED_DECIMALS = 0.05
# Converged: |a − s| below this after the transient (the contraction |1 − 2ηs| = 0.96 at 0.98·η_max gives
# 0.96^3000 ≈ 1e-53, so only rounding remains).
CONVERGED_RTOL = 1e-10
# Not converged: a period-2 cycle at 1.02·η_max has amplitude ~√(0.02)·s ≈ 0.14 s; 1e-3 s is far below it.
OSCILLATION_RTOL = 1e-3
# Round trip t(f) → a(t): the depth ≥ 3 inverse is a bisection exact to ~1 ulp, the forward map the same.
ROUND_TRIP_RTOL = 1e-9
# solve_ivp's event location (DOP853, rtol 1e-12) is accurate to ~1e-10 relative in time.
EVENT_RTOL = 1e-8


# ---------------------------------------------------------------- bounds


def test_tutorial_bounds():
    assert max_stable_lr(**TUTORIAL) == pytest.approx(253.6, abs=QUOTED_DECIMALS)
    assert max_stable_lr(**TUTORIAL, depth=3) == pytest.approx(31.3, abs=QUOTED_DECIMALS)
    assert escape_lr(**TUTORIAL) == pytest.approx(2 * 253.646, abs=0.01)
    # the same η under the sum reduction: lr_sum = lr_mean · 2/(P N_out) / 2
    eta = learning_rate_to_eta(max_stable_lr(**TUTORIAL), 8, 10000)
    assert learning_rate_to_eta(max_stable_lr(**TUTORIAL, reduction="sum"), 8, 10000, "sum") == pytest.approx(eta)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_map_converges_just_below_max_stable_lr_and_not_above(depth):
    s, P, n_out = 4.0, 4, 20
    lr_max = max_stable_lr(s, P, n_out, depth=depth)
    a0 = 1e-2 * s
    below = mode_strength_discrete(3000, s, a0, learning_rate_to_eta(0.98 * lr_max, P, n_out), depth)
    assert abs(below[-1] - s) < CONVERGED_RTOL * s
    eta_above = learning_rate_to_eta(1.02 * lr_max, P, n_out)
    if depth == 1:  # the linear map a ← a + η(s − a) has no cycle: |1 − η| > 1 diverges outright
        with pytest.raises(ValueError, match="beyond the stable range"):
            mode_strength_discrete(3000, s, a0, eta_above, depth)
        return
    above = mode_strength_discrete(3000, s, a0, eta_above, depth)
    assert np.abs(above[-100:] - s).min() > OSCILLATION_RTOL * s  # a cycle around s, never at it


def test_escape_bound_depth2():
    s, P, n_out = 2.0, 8, 30
    a0 = np.array([1e-8, 1e-4, 1e-2, 0.3])
    lr_esc = escape_lr(s, P, n_out)
    eta = learning_rate_to_eta(0.99 * lr_esc, P, n_out)
    orbit = mode_strength_discrete(20000, s, a0, eta)  # bounded: no ValueError
    assert orbit.max() <= (2 + eta * s) / eta  # the invariant interval of the cubic map
    assert np.all(np.abs(orbit[-200:] - s).max(axis=0) > 0.1 * s)  # but it does not settle
    for a in a0:  # just past the bound every orbit escapes (measured: within 200 steps)
        with pytest.raises(ValueError, match="beyond the stable range"):
            mode_strength_discrete(20000, s, a, learning_rate_to_eta(1.01 * lr_esc, P, n_out))


def test_between_bounds_is_a_period_two_cycle():
    s, eta = 1.0, 1.2  # 1 < ηs < 2
    tail = mode_strength_discrete(3000, s, 1e-6, eta)[-50:]
    np.testing.assert_allclose(tail[2:], tail[:-2], rtol=1e-12)  # period 2 …
    assert abs(tail[1] - tail[0]) > 0.5 * s  # … of large amplitude around s
    assert min(tail[0], tail[1]) < s < max(tail[0], tail[1])


# ---------------------------------------------------------------- learning times


@given(mode_params(), st.sampled_from([1, 2, 3, 4]), st.floats(0.05, 0.95))
def test_continuous_time_inverts_mode_strength(params, depth, f):
    s, a0, tau = params
    t = time_to_learn(f, s, a0, tau=tau, depth=depth)
    if a0 >= f * s:
        assert t == 0
    else:
        assert mode_strength(t, s, a0, tau, depth) == pytest.approx(f * s, rel=ROUND_TRIP_RTOL)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_continuous_time_matches_ode_event(depth):
    s, a0, tau, f = 2.0, 1e-3, 3.0, 0.7

    def reached(t, a):
        return a[0] - f * s

    reached.terminal = True
    rhs = lambda t, a: depth * a ** (2.0 - 2.0 / depth) * (s - a) / tau  # noqa: E731
    sol = solve_ivp(rhs, (0, 1e6), [a0], events=reached, method="DOP853", rtol=1e-12, atol=1e-300)
    assert time_to_learn(f, s, a0, tau=tau, depth=depth) == pytest.approx(sol.t_events[0][0], rel=EVENT_RTOL)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_discrete_time_is_first_crossing_of_the_orbit(depth):
    s = np.array([3.0, 1.0, 0.3])
    a0, eta = 1e-4 * s, 0.05
    orbit = mode_strength_discrete(3000, s, a0, eta, depth)
    first = np.argmax(orbit >= 0.5 * s, axis=0)
    np.testing.assert_array_equal(time_to_learn(0.5, s, a0, eta=eta, depth=depth, method="discrete"), first)
    assert np.all(orbit[first - 1, range(3)] < 0.5 * s)


def test_tutorial_continuous_is_about_14_epochs_ahead():
    s, tau, a0 = 157.7, 400.0, 2e-25
    t_cont = float(time_to_learn(0.5, s, a0, tau=tau))
    t_disc = float(time_to_learn(0.5, s, a0, tau=tau, method="discrete"))
    assert t_cont == pytest.approx(78.54, abs=0.01)
    assert t_disc == 93.0
    assert 10 <= t_disc - t_cont <= 18  # measured 14.46


def test_discrete_lag_approaches_its_small_eta_limit():
    # δ = ln(f s/a₀)/4 + ln(1 − f)/2 epochs (modified equation, depth 2); the integer epoch adds [0, 1).
    s, a0, f, eta = 1.0, 1e-20, 0.5, 2e-3
    lag = float(time_to_learn(f, s, a0, eta=eta, method="discrete") - time_to_learn(f, s, a0, eta=eta))
    delta = np.log(f * s / a0) / 4 + np.log(1 - f) / 2
    assert delta - 0.1 <= lag <= delta + 1.1


def test_special_cases():
    assert time_to_learn(0.5, 1.0, 0.7, tau=1.0) == 0  # already past f·s
    assert time_to_learn(0.5, 1.0, 3.0, eta=0.1, method="discrete") == 0
    assert time_to_learn(0.5, 1.0, 0.0, tau=1.0, depth=2) == np.inf  # a₀ = 0 never grows
    assert time_to_learn(0.5, 1.0, 0.0, eta=0.1, depth=3, method="discrete") == np.inf
    assert time_to_learn(0.5, 1.0, 0.0, tau=2.0, depth=1) == pytest.approx(2.0 * np.log(2.0))
    out = time_to_learn(0.5, np.array([[1.0], [2.0]]), np.array([1e-3, 1e-2, 1e-1]), tau=1.0)
    assert out.shape == (2, 3) and np.all(np.diff(out, axis=1) < 0)


def test_discrete_cap_gives_inf(monkeypatch):
    monkeypatch.setattr(stability, "DISCRETE_STEP_CAP", 10)
    out = time_to_learn(0.5, np.array([1.0, 1.0]), np.array([0.45, 1e-6]), eta=0.1, method="discrete")
    assert out[0] == 1.0 and out[1] == np.inf


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "fn, kwargs, match",
    [
        (max_stable_lr, dict(s_max=0.0), "s_max must be finite and > 0"),
        (max_stable_lr, dict(n_samples=0), "n_samples must be an integer >= 1"),
        (max_stable_lr, dict(n_out=2.5), "n_out must be an integer"),
        (max_stable_lr, dict(depth=0), "depth must be an integer >= 1"),
        (max_stable_lr, dict(reduction="max"), "reduction must be one of"),
        (escape_lr, dict(s_max=-1.0), "s_max must be finite and > 0"),
        (escape_lr, dict(reduction=None), "reduction must be one of"),
        (escape_lr, dict(n_samples=-3), "n_samples must be an integer >= 1"),
    ],
)
def test_bounds_refuse(fn, kwargs, match):
    args = dict(s_max=2.0, n_samples=4, n_out=5) | kwargs
    with pytest.raises(ValueError, match=match):
        fn(**args)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(fraction=0.0), "fraction must be finite and > 0"),
        (dict(fraction=1.0), "fraction must be strictly between 0 and 1"),
        (dict(fraction=1.5), "fraction must be strictly between 0 and 1"),
        (dict(fraction=np.array([0.5])), "fraction must be a real number"),
        (dict(s=0.0), "s must be > 0"),
        (dict(a0=-1.0), "a0 must be >= 0"),
        (dict(tau=None), "give exactly one of tau"),
        (dict(eta=0.1), "give exactly one of tau"),
        (dict(tau=-1.0), "tau must be finite and > 0"),
        (dict(tau=None, eta=0.0), "eta must be finite and > 0"),
        (dict(depth=0), "depth must be an integer >= 1"),
        (dict(method="euler"), "method must be one of"),
        (dict(s=[1.0, 2.0], a0=[0.1, 0.2, 0.3]), "s, a0 must broadcast"),
    ],
)
def test_time_to_learn_refuses(kwargs, match):
    args = dict(fraction=0.5, s=2.0, a0=1e-3, tau=1.0) | kwargs
    with pytest.raises(ValueError, match=match):
        time_to_learn(**args)
