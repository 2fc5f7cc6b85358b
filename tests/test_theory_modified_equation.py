"""theory.modified_equation (SGD's modified equation at depth 2, ``balanced_solution(..., method='modified')``): the
field's local order against the Euler step, the summed linear tail against the exact linear step, the global order
in η against the exact SGD map over drawn problems, against an independent plain torch SGD loop at a large lr from a
random (not balanced) init, its error estimate, and its refusals."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plain_sgd import plain_sgd
from strategies import balanced_weights, drawn_balanced_problem, whitened_problem

import theory
from theory.balanced import balanced_solution
from theory.modified_equation import modified_field, modified_flow
from theory.modified_prediction import LAYER_ESTIMATE, MAX_ESTIMATE, MAX_EXACT_STEPS, modified_prediction

# Truncated after f_N, the time-η flow misses the Euler step by O(η^{N+2}): halving η divides the defect by 2^{N+2}
# (± 20 %); the global error is one order lower, O(η^{N+1}) = O(η⁴) for N = 3.
LOCAL_RATIO = {0: (3.2, 4.8), 1: (6.4, 9.6), 2: (12.8, 19.2), 3: (25.6, 38.4)}
GLOBAL_RATIO = (12.8, 20.0)


def _flow_step(Q, target, eta, order, tail):
    """The time-η flow of the modified field from Q (tight DOP853), against which the Euler step is compared."""
    from scipy.integrate import solve_ivp

    n, k = Q.shape
    sol = solve_ivp(lambda h, y: modified_field(y.reshape(n, k), target, eta, order, tail).ravel(), (0.0, eta),
                    Q.ravel(), method="DOP853", rtol=1e-13, atol=1e-16)
    return sol.y[:, -1].reshape(n, k)


@settings(max_examples=5)
@given(seed=st.integers(0, 2**20), n_h=st.integers(1, 4), tail=st.booleans())
def test_field_matches_the_euler_step_to_its_order(seed, n_h, tail):
    rng = np.random.default_rng(seed)
    C, R = 3, 4
    target = rng.normal(size=(R, C))
    Q = 0.7 * rng.normal(size=(C + R, n_h))
    for order, (lo, hi) in LOCAL_RATIO.items():
        defect = []
        for eta in (0.02, 0.01):
            euler = Q + eta * modified_field(Q, target, eta, 0, tail=False)
            defect.append(np.abs(_flow_step(Q, target, eta, order, tail) - euler).max())
        assert lo <= defect[0] / defect[1] <= hi, (order, defect)


def test_summed_tail_makes_the_linear_escape_exact_at_a_large_step():
    """While QQᵀ ≪ S̄ the step is linear, Q ← (I + ηΓ₀)Q; at η s = 0.5 the tail's flow reproduces it to the
    nonlinear remainder (~|Q|² relative), while the truncated series misses the rate by O((ηs)⁵)."""
    rng = np.random.default_rng(3)
    target = np.diag([2.0, 1.5, 1.0])
    Q = 1e-6 * rng.normal(size=(6, 2))
    eta = 0.25
    euler = Q + eta * modified_field(Q, target, eta, 0, tail=False)
    with_tail = np.abs(_flow_step(Q, target, eta, 3, True) - euler).max() / np.abs(euler).max()
    without = np.abs(_flow_step(Q, target, eta, 3, False) - euler).max() / np.abs(euler).max()
    assert with_tail <= 1e-9 < 1e-4 <= without


@settings(max_examples=5)
@given(seed=st.integers(0, 2**20), n_h=st.integers(2, 5), lam=st.floats(-1.0, 3.0), log_gamma=st.floats(-2.0, 0.3),
       spread=st.floats(0.2, 0.9))
def test_modified_form_has_order_four_against_the_sgd_map(seed, n_h, lam, log_gamma, spread):
    X, Y, w0, s_max, span = drawn_balanced_problem(seed, n_h, lam, log_gamma, spread)
    errors, estimates = [], []
    for hs in (0.1, 0.05):
        lr = hs / (theory.learning_rate_to_eta(1.0, *Y.shape) * s_max)
        t = np.arange(int(span / hs) + 1, dtype=float)
        ref = theory.predictor(X, Y, lr, weights=w0).w_tot(t)  # the exact SGD map (float64, reduced coordinates)
        sol = balanced_solution(X, Y, w0, lr, method="modified")
        errors.append(np.abs(sol.w_tot(t) - ref).max() / s_max)
        estimates.append(sol.estimated_error(t))
    assert GLOBAL_RATIO[0] <= errors[0] / errors[1] <= GLOBAL_RATIO[1], errors
    for err, est in zip(errors, estimates):  # an estimate, not a bound: within 0.5–10× the error
        assert 0.1 * est <= err <= 2.0 * est, (errors, estimates)


def test_modified_form_follows_plain_float64_sgd_from_a_random_init_at_a_large_lr():
    """Against the independent torch loop (optim.SGD + autograd, tests/plain_sgd.py) at η s_max = 0.39 (the
    tutorial's lr = 100) from a random, unbalanced init: the weights' own modified equation needs no balance."""
    X, Y = whitened_problem([2.0, 1.6, 1.3], 11, 6)
    rng = np.random.default_rng(5)
    w0 = [1e-3 * rng.normal(size=(4, 3)), 1e-3 * rng.normal(size=(6, 4))]
    lr = 0.39 / (theory.learning_rate_to_eta(1.0, 3, 6) * 2.0)
    sol = balanced_solution(X, Y, w0, lr, method="modified")  # no balance needed, no approximate=True
    flow = balanced_solution(X, Y, w0, lr, approximate=True)
    assert not sol.exact and sol.deviation > 0.1
    n = 120
    k = np.arange(n + 1)
    rec = plain_sgd(X, Y, w0, lr, n)
    M_sgd = np.einsum("ri,kij,cj->krc", sol.Ubar.T, rec.w_tot, sol.Vbar.T)
    err = np.abs(sol.mode_matrix(k.astype(float)) - M_sgd).max() / 2.0
    err_flow = np.abs(flow.mode_matrix(k.astype(float)) - M_sgd).max() / 2.0
    assert err <= 0.01 < 0.3 <= err_flow
    assert sol.exact_steps(k.astype(float)) == 0  # no transient: the flow starts at the init
    assert err <= sol.estimated_error(k.astype(float)) <= MAX_ESTIMATE
    assert np.abs(sol.loss(k.astype(float), Y) - rec.losses).max() <= 0.01 * rec.losses[0]
    assert np.abs(sol.rsm(k.astype(float)) - rec.rsms).max() <= 0.01 * np.abs(rec.rsms).max()
    W1, W2 = sol.weights(float(n))  # a genuine factor: W₂W₁ is the predicted W_tot
    assert np.allclose(W2 @ W1, sol.w_tot(float(n)), atol=1e-12)


@pytest.mark.parametrize(("lam", "gamma", "seed"), [(40.0, 3.0, 1), (100.0, 5.0, 1)])
def test_lazy_transient_is_taken_by_exact_steps_then_followed(lam, gamma, seed):
    """A large λ-balanced init at half the stable lr: SGD unlearns the init's own output (4–11 × s) in a few steps
    (contraction 1 − ηκ near 0), which no truncated series follows: the flow alone refuses; after its initial layer
    of exact steps the prediction follows the independent torch loop to its estimate. A fractional epoch inside the
    layer is refused, not interpolated."""
    X, Y = whitened_problem([2.0, 1.6, 1.3], 11, 6)
    w0 = balanced_weights(3, 4, 6, lam, gamma, seed)
    sharp = theory.sharpness(X, Y, w0)
    lr = 0.5 * 2.0 / (theory.learning_rate_to_eta(1.0, 3, 6) * sharp)
    sol = balanced_solution(X, Y, w0, lr, method="modified")
    k = np.arange(401.0)  # beyond PROBE_EPOCHS: k₀ is judged on the probe, the run integrated once for it
    with pytest.raises(ValueError, match="modified equation does not follow SGD"):
        modified_prediction(sol.O @ sol.A0, sol.target, sol.eta, k * sol.eta, 2.0, max_exact_steps=0)
    rec = plain_sgd(X, Y, w0, lr, 400)
    M_sgd = np.einsum("ri,kij,cj->krc", sol.Ubar.T, rec.w_tot, sol.Vbar.T)
    assert np.abs(M_sgd[0]).max() >= 4.0 * 2.0  # the init's own output, several times s_max
    err = np.abs(sol.mode_matrix(k) - M_sgd).max() / 2.0
    assert 1 <= sol.exact_steps(k) <= MAX_EXACT_STEPS
    assert err <= 2.0 * sol.estimated_error(k) <= 2.0 * LAYER_ESTIMATE
    np.testing.assert_allclose(sol.mode_matrix(k[:2]), M_sgd[:2], rtol=0, atol=1e-12)  # the layer is SGD itself
    with pytest.raises(ValueError, match="not a whole SGD step"):
        balanced_solution(X, Y, w0, lr, method="modified").mode_matrix(np.array([0.5, 1.0, 50.0]))


def test_a_layer_refused_on_its_probe_is_not_integrated_over_the_whole_run(monkeypatch):
    """After an initial layer, k₀ is judged on PROBE_EPOCHS epochs; where that estimate is already above
    MAX_ESTIMATE the whole run could only raise it, so it is refused without integrating the rest."""
    import theory.modified_prediction as mp

    X, Y = whitened_problem([2.0, 1.6, 1.3], 11, 6)
    w0 = balanced_weights(3, 4, 6, 40.0, 3.0, 1)
    lr = 0.5 * 2.0 / (theory.learning_rate_to_eta(1.0, 3, 6) * theory.sharpness(X, Y, w0))
    sol = balanced_solution(X, Y, w0, lr, method="modified")
    spans: list[float] = []
    orders = mp._orders

    def counted(Q0, target, eta, h, scale):
        spans.append(float(h.max()) / eta)
        return orders(Q0, target, eta, h, scale)

    monkeypatch.setattr(mp, "_orders", counted)
    monkeypatch.setattr(mp, "MAX_ESTIMATE", 1e-12)  # every candidate's estimate is above it
    with pytest.raises(ValueError, match="above MAX_ESTIMATE"):
        modified_prediction(sol.O @ sol.A0, sol.target, sol.eta, np.arange(801.0) * sol.eta, 2.0)
    assert spans and max(spans) <= mp.PROBE_EPOCHS + 1e-6  # probes only (the layer starts at k₀ ≥ 1)


def test_modified_form_refusals_are_clear():
    X, Y = whitened_problem([2.0, 1.6, 1.3], 11, 6)
    w0 = balanced_weights(3, 4, 6, 0.3, 0.3, 2)
    sol = balanced_solution(X, Y, w0, 1.0, method="modified")
    with pytest.raises(ValueError, match="finite epochs"):
        sol.mode_matrix(np.array([0.0, np.inf]))
    with pytest.raises(ValueError, match="method='modified'"):
        balanced_solution(X, Y, w0, 1.0).estimated_error(np.arange(3.0))
    with pytest.raises(ValueError, match="method='modified'"):
        balanced_solution(X, Y, w0, 1.0).exact_steps(np.arange(3.0))
    with pytest.raises(ValueError, match="finite"):
        modified_flow(np.ones((6, 4)), np.ones((3, 3)), 0.1, np.array([-1.0]))
    with pytest.raises(ValueError, match="order"):
        modified_field(np.ones((6, 4)), np.ones((3, 3)), 0.1, order=4)
    with pytest.raises(ValueError, match="max_exact_steps must be"):
        modified_prediction(np.ones((6, 4)), np.ones((3, 3)), 0.1, np.array([1.0]), 1.0, max_exact_steps=-1)
    with pytest.raises(ValueError, match="method must be"):
        modified_flow(np.ones((6, 4)), np.ones((3, 3)), 0.1, np.array([1.0]), method="RK45")


def test_explicit_budget_shrinks_with_q_and_small_systems_fall_back_to_bdf(monkeypatch):
    """The explicit budget is MODIFIED_MAX_WORK / Q.size evaluations; past it a large Q refuses (naming the count),
    a small one is handed to BDF, which gives DOP853's answer."""
    import theory.modified_equation as me

    rng = np.random.default_rng(7)
    target = np.diag([2.0, 1.2, 0.7])
    Q0 = 0.3 * rng.normal(size=(6, 4))
    h = np.linspace(0.0, 6.0, 25)
    free = modified_flow(Q0, target, 0.1, h)
    monkeypatch.setattr(me, "MODIFIED_MAX_WORK", 24 * 30)  # 30 evaluations for this 6 × 4 Q: too few
    monkeypatch.setattr(me, "IMPLICIT_MAX_SIZE", 0)  # as if Q were large
    with pytest.raises(ValueError, match=r"more than 30 evaluations \(DOP853\)"):
        modified_flow(Q0, target, 0.1, h)
    # no transient at the init (its terms shrink there), so exact steps cannot help: refused without trying them
    with pytest.raises(ValueError, match="after up to 0 exact SGD steps"):
        modified_prediction(Q0, target, 0.1, h, 2.0)
    monkeypatch.setattr(me, "IMPLICIT_MAX_SIZE", 1024)
    assert np.abs(modified_flow(Q0, target, 0.1, h) - free).max() <= 1e-7 * np.abs(free).max()


def test_implicit_and_explicit_integrators_agree():
    """BDF (the stiff fallback of method='auto') and DOP853 integrate the same field: same Q to the tolerance."""
    rng = np.random.default_rng(7)
    target = np.diag([2.0, 1.2, 0.7])
    Q0 = 0.3 * rng.normal(size=(6, 4))
    h = np.linspace(0.0, 6.0, 25)
    a = modified_flow(Q0, target, 0.1, h, method="DOP853")
    b = modified_flow(Q0, target, 0.1, h, method="BDF")
    assert np.abs(a - b).max() <= 1e-7 * np.abs(a).max()


@given(seed=st.integers(0, 2**20), n_h=st.integers(1, 4), order=st.integers(0, 3))
@settings(max_examples=15, deadline=None)
def test_a_stack_of_weights_gives_each_ones_field_and_nan_only_outside_the_domain(seed, n_h, order):
    """BDF's finite-difference Jacobian evaluates the field at many Q in one stacked call: each slice must equal the
    field at that Q alone, and a Q outside the tail's domain (η σ_max(S̄ − M̄) ≥ 1) is NaN in its own slice only."""
    from theory.modified_equation import OutsideDomain, _field

    rng = np.random.default_rng(seed)
    C, R = 3, 2
    target, eta = rng.standard_normal((R, C)), 0.05
    stack = 0.5 * rng.standard_normal((4, C + R, n_h))
    stack[2, C:] = 0.0
    stack[2, :C] = 0.0
    stack[2, C, 0] = 1.0 / eta  # M̄ = 0 here; a second slice with a huge M̄ leaves the domain
    stack[3] = 100.0 * stack[3] + 1.0
    got = _field(stack, target, eta, order, True, refuse=False)
    for i in range(len(stack)):
        try:
            want = modified_field(stack[i], target, eta, order)
        except OutsideDomain:
            assert np.isnan(got[i]).all()
            continue
        np.testing.assert_allclose(got[i], want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
    assert np.isnan(got[3]).all() and np.isfinite(got[:2]).all()


def test_bdf_gives_the_same_flow_whatever_the_jacobians_stack_size(monkeypatch):
    """The finite-difference Jacobian's columns are stacked STACK_COLUMNS at a time: any chunking gives the same
    numbers (a wrong reshape would scramble the columns and change the flow)."""
    import theory.modified_equation as ME

    rng = np.random.default_rng(3)
    C, R, n_h = 3, 2, 3
    target, eta = np.diag([2.0, 1.0, 0.0])[:R], 0.05
    Q0 = 1e-2 * rng.standard_normal((C + R, n_h))
    h = np.linspace(0.0, 6.0, 7)
    whole = modified_flow(Q0, target, eta, h, method="BDF")
    monkeypatch.setattr(ME, "STACK_COLUMNS", 4)  # 15 columns in chunks of 4, 4, 4, 3
    np.testing.assert_array_equal(modified_flow(Q0, target, eta, h, method="BDF"), whole)
    explicit = modified_flow(Q0, target, eta, h, method="DOP853")
    assert np.abs(whole - explicit).max() < 1e-6 * np.abs(explicit).max()


@settings(max_examples=20)
@given(seed=st.integers(0, 2**20), C=st.integers(1, 4), R=st.integers(1, 5), n_h=st.integers(1, 4))
def test_collapsed_terms_equal_the_backward_error_analysis_forms(seed, C, R, n_h):
    """f₂, f₃ as evaluated (F' linear, F'' symmetric bilinear, F''' cancelled) equal the module docstring's matching
    of powers of η, written out here term by term with F', F'', F''' (theory.modified_equation.derivatives)."""
    from theory.modified_equation import _terms, derivatives

    rng = np.random.default_rng(seed)
    Q, target = rng.normal(size=(C + R, n_h)), rng.normal(size=(R, C))
    G, fp, fpp, fppp = derivatives(Q, target)
    F = G @ Q
    f1 = -0.5 * fp(F)
    f2 = -0.5 * fp(f1) + (fpp(F, F) + fp(fp(F))) / 12.0

    def f1p(X):
        return -0.5 * (fpp(X, F) + fp(fp(X)))

    def f1pp(X, Y):
        return -0.5 * (fppp(X, Y, F) + fpp(X, fp(Y)) + fpp(Y, fp(X)) + fp(fpp(X, Y)))

    f2p_F = -0.5 * (fpp(F, f1) + fp(f1p(F))) + (fppp(F, F, F) + 2 * fpp(fp(F), F) + fpp(F, fp(F)) + fp(fpp(F, F))
                                                 + fp(fp(fp(F)))) / 12.0
    f3 = (-0.5 * (fp(f2) + f1p(f1) + f2p_F)
          - (f1pp(F, F) + 2 * fpp(f1, F) + f1p(fp(F)) + fp(f1p(F)) + fp(fp(f1))) / 6.0
          - (fppp(F, F, F) + 3 * fpp(fp(F), F) + fp(fpp(F, F)) + fp(fp(fp(F)))) / 24.0)
    for want, got in zip((F, f1, f2, f3), _terms(Q, target, 3)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max(initial=1.0))
