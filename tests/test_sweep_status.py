"""Run statuses of ``saxe sweep`` (experiments.sweep_status): the classification on synthetic loss curves, the
reachable loss against theory.Prediction.best_loss, the real depth-3 saddle at an lr far above the stable bound
(trained with the sweep's own engine), the stability warnings, and the phase diagram drawing the statuses."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import saxe
import theory
from experiments import cli
from experiments import sweep as S
from experiments import sweep_figures as F
from experiments import sweep_status as ST

FEATURES, HIDDEN, EPOCHS = 500, 30, 300


# ------------------------------------------------------------------------------------------- synthetic curves
def curve(T: int, L0: float, best: float, rate: float) -> np.ndarray:
    """Exponential approach L(k) = best + (L0 − best)·e^{−rate·k}."""
    return best + (L0 - best) * np.exp(-rate * np.arange(T))


def test_flat_curve_is_not_learned():
    c = ST.classify(np.full(301, 1.0), 0.0)
    assert (c.status, c.learned_fraction, c.drift) == ("not_learned", 0.0, 0.0)
    # drift at a small init's rounding level (1e-13 of the decrease) is still the saddle
    c = ST.classify(1.0 - 1e-13 * np.arange(301), 0.0)
    assert c.status == "not_learned" and 0 < c.learned_fraction < 1e-10


def test_converged_learning_and_boundaries():
    assert ST.classify(curve(301, 1.0, 0.2, 0.2), 0.2).status == "converged"  # e^{-60}: settled
    half = ST.classify(curve(301, 1.0, 0.0, 0.0023), 0.0)  # e^{-0.69} ≈ 0.5 left
    assert half.status == "learning" and half.learned_fraction == pytest.approx(1 - math.exp(-0.69), rel=1e-12)
    # just arrived inside the tolerance, off a plateau within the last tenth: not yet called converged
    L = np.concatenate([np.ones(280), curve(21, 1.0, 0.0, 0.5)])  # e^{-10} = 4.5e-5 left at the end
    c = ST.classify(L, 0.0)
    assert c.learned_fraction >= 1 - ST.CONVERGED_TOL and c.drift > ST.STALL_TOL and c.status == "learning"
    # the same end approached steadily over the whole run has stopped moving: converged
    c = ST.classify(curve(301, 1.0, 0.0, 10 / 300), 0.0)
    assert c.learned_fraction >= 1 - ST.CONVERGED_TOL and c.drift < ST.STALL_TOL and c.status == "converged"
    # just below the not-learned threshold, and just above
    for f, want in ((0.5 * ST.NOT_LEARNED_FRACTION, "not_learned"), (2 * ST.NOT_LEARNED_FRACTION, "learning")):
        assert ST.classify(np.linspace(1.0, 1.0 - f, 301), 0.0).status == want


def test_oscillation_around_learned_state_is_learning():
    """A period-2 orbit around the best loss (lr above the stable bound) is never converged, however close."""
    L = np.concatenate([curve(200, 1.0, 0.0, 0.2), 1e-3 * (1 + (-1.0) ** np.arange(101))])
    c = ST.classify(L, 0.0)
    assert c.learned_fraction > 1 - 3e-3 and c.status == "learning" and c.drift == pytest.approx(2e-3)


def test_diverged_and_nothing_to_learn():
    c = ST.classify(curve(301, 1.0, 0.0, 0.1), 0.0, diverged=True)
    assert c.status == "diverged" and math.isnan(c.learned_fraction) and math.isnan(c.drift)
    L = curve(301, 1.0, 0.0, 0.1)
    L[-5:] = np.nan
    assert ST.classify(L, 0.0).status == "diverged"  # not flagged, but not finite: diverged all the same
    c = ST.classify(np.full(50, 0.3), 0.3)  # the init is already the best fit the widths allow
    assert c.status == "converged" and c.learned_fraction == 1.0


@pytest.mark.parametrize("args, match", [((np.ones((2, 3)), 0.0), "losses"), ((np.ones(1), 0.0), "losses"),
                                         ((np.ones(5), -1.0), "best_loss"), ((np.ones(5), math.nan), "best_loss"),
                                         ((np.r_[math.inf, 1.0], 0.0), "initial loss")])
def test_bad_input_names_the_argument(args, match):
    with pytest.raises(ValueError, match=match):
        ST.classify(*args)


@given(scale=st.floats(1e-6, 1e6), L0=st.floats(0.1, 10.0), frac_best=st.floats(0.0, 0.9),
       rate=st.floats(1e-4, 1.0), T=st.integers(3, 400))
def test_status_is_invariant_to_the_loss_units(scale, L0, frac_best, rate, T):
    """Statuses depend on fractions of the reachable decrease only: rescaling every loss changes nothing."""
    best = frac_best * L0
    L = curve(T, L0, best, rate)
    a, b = ST.classify(L, best), ST.classify(scale * L, scale * best)
    assert a.status == b.status
    assert a.learned_fraction == pytest.approx(b.learned_fraction, rel=1e-9, abs=1e-12)
    assert a.learned_fraction == pytest.approx((L[0] - L[-1]) / (L0 - best), rel=1e-9, abs=1e-12)


# ------------------------------------------------------------------------------------------- reachable loss
@pytest.fixture(scope="module")
def problem() -> S.Problem:
    return S.load_problem(None, FEATURES, 0)


def test_reachable_loss_is_prediction_best_loss(problem):
    P, n_out = problem.Y.shape
    got = ST.reachable_losses(problem.X, problem.Y, [None, 30, 8, 5, 2, 1])
    for w, value in zip([None, 30, 8, 5, 2, 1], got):
        depth, hidden = (1, None) if w is None else (2, w)
        want = theory.predictor(problem.X, problem.Y, 1.0, depth=depth, hidden=hidden, a0=0.0,
                                unstable=True).best_loss()
        assert value == pytest.approx(want, rel=1e-12, abs=1e-15)
        # one-hot X: Eckart–Young drops the weakest modes' s² (Ŷ = Y, its σ are the s of Σʸˣ)
        assert value == pytest.approx(np.sum(problem.s[(w or 8):] ** 2) / (P * n_out), rel=1e-10, abs=1e-15)


def test_reachable_loss_non_whitened_inputs():
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((12, 5)), rng.standard_normal((12, 7))
    for h in (1, 2, 5):
        ws = [rng.standard_normal((h, 5)), rng.standard_normal((7, h))]
        want = theory.predictor(X, Y, 1e-6, weights=ws, unstable=True).best_loss()
        assert ST.reachable_losses(X, Y, [h])[0] == pytest.approx(want, rel=1e-10)
    with pytest.raises(ValueError, match="widths"):
        ST.reachable_losses(X, Y, [0])


@pytest.mark.parametrize("n_out", [2, 7])  # fewer outputs than rank(X) (the other Gram matrix), and more
def test_fit_spectrum_equals_svd_of_the_least_squares_fit(n_out):
    rng = np.random.default_rng(n_out)
    X = rng.standard_normal((12, 5))
    X[:, 4] = X[:, 0] - 2 * X[:, 1]  # rank 4: the projection, not the inverse
    Y = rng.standard_normal((12, n_out))
    fit = X @ np.linalg.lstsq(X, Y, rcond=None)[0]
    unfittable, sig = ST.fit_spectrum(X, Y)
    assert unfittable == pytest.approx(np.sum((Y - fit) ** 2), rel=1e-12)
    want = np.linalg.svd(fit, compute_uv=False)
    k = min(sig.size, want.size)  # beyond k both are zero (rank ≤ min(rank X, N_out))
    np.testing.assert_allclose(sig[:k], want[:k], rtol=0, atol=1e-12 * want[0])
    assert k == min(4, n_out) and np.all(np.r_[sig[k:], want[k:]] <= 1e-12 * want[0])


# ------------------------------------------------------------------------------------------- real runs
def train(X, Y, depth: int, lr: float, gamma: float, epochs: int, seed: int = 0) -> tuple[np.ndarray, float, bool]:
    """(losses, best loss, diverged) of one float64 run through saxe.train's reduced engine (the network's SGD
    iterates to ~1e-12; ``auto`` would pick the 40× slower autograd above the stable bound)."""
    net = saxe.make_net(X.shape[1], [HIDDEN] * (depth - 1), Y.shape[1]).double()
    saxe.initializer_(net, gamma, generator=torch.Generator().manual_seed(seed))
    try:
        losses, diverged = saxe.train(net, X, Y, epochs, lr, record_rsm=False, engine="reduced").losses, False
    except saxe.DivergenceError:
        losses, diverged = np.full(epochs + 1, np.nan), True
    return losses, float(ST.reachable_losses(X, Y, [HIDDEN if depth > 1 else None])[0]), diverged


@pytest.fixture(scope="module")
def depth3(problem, tmp_path_factory):
    """The issue's case scaled to 500 features: depth 3, an lr 12.8× the stable bound (400 vs 31.3 there) and one
    half of it, at γ = 1e-12 (saddle) and γ = 1, two seeds each: the rows of ``saxe sweep`` itself (in-process)."""
    bound = theory.max_stable_lr(problem.s[0], *problem.Y.shape, depth=3)
    lrs = (0.5 * bound, 12.8 * bound)
    out = tmp_path_factory.mktemp("depth3")
    args = ["sweep", "--depth", "3", "--hidden", str(HIDDEN), "--lr", *map(repr, lrs), "--gamma", "1e-12", "1",
            "--seeds", "2", "--epochs", str(EPOCHS), "--features", str(FEATURES), "--out", str(out), "--quiet"]
    assert cli.main(args) == 0
    with open(out / "sweep.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        header, rows = list(reader.fieldnames or []), list(reader)
    assert header == S.columns(problem.n_modes) and len(rows) == 8
    return bound, lrs, rows


def test_depth3_far_above_bound_is_not_agreement(depth3):
    bound, (lo, hi), rows = depth3
    assert {"status", "learned_fraction", "err_exact", "final_loss"} <= set(S.columns(8))
    by = {(float(r["lr"]), float(r["gamma"])): [] for r in rows}
    for r in rows:
        by[(float(r["lr"]), float(r["gamma"]))].append(r)
    for r in by[(hi, 1e-12)]:  # the rows: loss stays at L0, error "tiny", nothing learned
        assert r["status"] == "not_learned" and r["diverged"] == "False"
        assert float(r["learned_fraction"]) < ST.NOT_LEARNED_FRACTION
        assert float(r["err_exact"]) < 1e-20 and not ST.agreement(r)
    for r in by[(lo, 1e-12)]:  # depth 3 from γ = 1e-12 stays at the saddle even at a stable lr
        assert r["status"] == "not_learned"
    for r in by[(hi, 1.0)]:  # a large init leaves the saddle at once and diverges
        assert r["status"] == "diverged" and r["learned_fraction"] == "" and not ST.agreement(r)
    for r in by[(lo, 1.0)]:  # below the bound it converges, and the exact theory agrees
        assert r["status"] == "converged" and float(r["learned_fraction"]) > 1 - ST.CONVERGED_TOL
        assert ST.agreement(r) and float(r["err_exact"]) < 1e-9


def test_depth2_partial_run_is_learning():
    """The tutorial's lr = 50 at γ = 1e-12 is still on its way after 250 epochs (the issue's final_loss 0.47)."""
    X, Y = saxe.generate_hsd(n_features=10000, rng=0)
    losses, best, diverged = train(X, Y, 2, 50.0, 1e-12, 250)
    c = ST.classify(losses, best, diverged)
    assert c.status == "learning" and 0.3 < c.learned_fraction < 0.7 and losses[-1] == pytest.approx(0.46, abs=0.02)


# ------------------------------------------------------------------------------------------- agreement
def test_agreement_only_where_something_was_learned():
    assert ST.agreement("converged", 1.0) and ST.agreement("learning", 0.3)
    assert not ST.agreement("not_learned", 0.0) and not ST.agreement("diverged", math.nan)
    assert not ST.agreement("learning", 0.5 * ST.NOT_LEARNED_FRACTION)  # inconsistent row: never agreement
    assert ST.agreement({"status": "learning", "learned_fraction": "0.5"})
    assert not ST.agreement({"err_exact": "1e-30"})  # a row from before statuses
    assert not ST.agreement({"status": "converged", "learned_fraction": "x"})


# ------------------------------------------------------------------------------------------- warnings
def test_warnings_depth3_name_lr_bound_and_expectation(problem, depth3):
    bound, (lo, hi), _ = depth3
    runs = [(3, HIDDEN, lr) for lr in (lo, hi) for _ in range(2)] + [(3, 8, hi)]
    warnings = ST.stability_warnings(problem.X, problem.Y, runs)
    assert len(warnings) == 1  # one per (depth, lr), widths listed
    w = warnings[0]
    assert f"lr {hi:g}" in w and f"{bound:.4g}" in w and "hidden 8, 30" in w and "not_learned" in w
    assert ST.stability_warnings(problem.X, problem.Y, [(3, HIDDEN, lo), (2, HIDDEN, lo)]) == []


def test_warnings_depth2_divergence_matches_training(problem):
    """Depth 2 gives theory.divergence_lr: above it the run diverges, between the bounds it only oscillates."""
    P, n_out = problem.Y.shape
    bound = theory.max_stable_lr(problem.s[0], P, n_out, depth=2)
    lrs = (1.05 * bound, 2.0 * bound)
    warnings = ST.stability_warnings(problem.X, problem.Y, [(2, HIDDEN, lr) for lr in lrs])
    assert len(warnings) == 2 and "stays bounded" in warnings[0] and "expect divergence" in warnings[1]
    statuses = [ST.classify(*train(problem.X, problem.Y, 2, lr, 1.0, EPOCHS)).status for lr in lrs]
    assert statuses == ["learning", "diverged"]
    depth1 = ST.stability_warnings(problem.X, problem.Y, [(1, 0, 2.0 * P * n_out)])
    assert len(depth1) == 1 and "quadratic" in depth1[0]


# ------------------------------------------------------------------------------------------- figure
def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_phase_diagram_draws_statuses(depth3, tmp_path):
    bound, (lo, hi), rows = depth3
    fig = F.draw_phase_diagram(rows)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any(t.startswith("not learned") for t in legend) and "diverged" in legend
    assert any(t.startswith("learning") for t in legend)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 3
    table = F.cell_table(rows)[(3, HIDDEN)]
    i_hi, j_small = table["lrs"].index(hi), table["gammas"].index(1e-12)
    i_lo, j_big = table["lrs"].index(lo), table["gammas"].index(1.0)
    for ax in panels:
        gids = {c.get_gid(): len(c.get_paths()) for c in ax.collections}
        assert gids["not_learned"] == 2 and gids["diverged"] == 1  # two saddle cells, one diverged cell
        data = ax.images[0].get_array()
        # the tiny errors of the saddle runs are not coloured; the converged runs are
        assert data.mask[i_hi, j_small] and data.mask[i_lo, j_small] and not data.mask[i_lo, j_big]
    texts = _texts(fig)
    assert texts.count("not learned") == 6 and texts.count("diverged") == 3
    assert F.phase_diagram(rows, tmp_path / "pd.png").stat().st_size > 1000


def test_cell_table_medians_ignore_runs_without_learning():
    base = {"depth": "2", "hidden": "6", "lr": "1.0", "gamma": "1e-12", "diverged": "False"}
    rows = [dict(base, status="not_learned", learned_fraction="0.0", err_continuous="1e-40", err_discrete="1e-40",
                 err_exact="1e-40"),
            dict(base, status="learning", learned_fraction="0.4", err_continuous="0.2", err_discrete="0.1",
                 err_exact="1e-14"),
            dict(base, status="diverged", diverged="True", learned_fraction="", err_continuous="", err_discrete="",
                 err_exact=""),
            dict(base, gamma="1.0", err_continuous="1e-30", err_discrete="1e-30", err_exact="1e-30")]  # no status
    p = F.cell_table(rows)[(2, 6)]
    assert p["median"]["exact"][0, 0] == 1e-14 and p["median"]["continuous"][0, 0] == 0.2
    assert np.isnan(p["median"]["exact"][0, 1]) and p["unknown"][0, 1] == 1
    assert (p["not_learned"][0, 0], p["learning"][0, 0], p["diverged"][0, 0], p["count"][0, 0]) == (1, 1, 1, 3)
    fig = F.draw_phase_diagram(rows)
    texts = _texts(fig)
    assert "1.0e-14\nnot learned 1/3\ndiv 1/3\nlearning 1/3" in texts and "no status 1/1" in texts
    assert sum(len(c.get_offsets()) for ax in fig.axes for c in ax.collections if c.get_gid() == "learning") == 3
