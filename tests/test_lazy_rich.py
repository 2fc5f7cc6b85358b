"""experiments.lazy_rich on a small tree data set: every row's fields, the λ-balanced errors in their order, and the
corrected forms' refusal outside their domain (NaN in the row, the run goes on)."""
from __future__ import annotations

import numpy as np

import saxe
from experiments.lazy_rich import lazy_rich, rows_as_dicts


def test_lazy_rich_rows_on_a_small_problem():
    X, Y = saxe.generate_hsd(n_features=60, rng=0)  # η·s₁ = 0.053 per unit lr
    rows = lazy_rich([1e-3, 1.0], lr=2.0, data=(X, Y), inits=("balanced", "random"))
    assert [(r.gamma, r.init) for r in rows] == [(1e-3, "balanced"), (1e-3, "random"), (1.0, "balanced"),
                                                 (1.0, "random")]
    for r in rows:
        errors = (r.error_continuous, r.error_first_order, r.error_second_order, r.error_finite_lr, r.error_vs_flow,
                  r.error_modified)
        assert all(np.isfinite(e) and e >= 0 for e in errors) and r.n_epochs > 0 and r.lr <= 2.0
    for r in (r for r in rows if r.init == "balanced"):
        assert r.deviation <= 1e-12 and r.error_vs_flow <= 1e-6  # the closed form is this init's own flow
        assert r.error_first_order <= 0.2 * r.error_continuous  # SGD's first-order correction
        assert r.error_second_order <= 0.5 * r.error_first_order  # and its second order
    for r in rows:  # SGD's modified equation, from any init's own weights
        assert r.error_modified <= 0.5 * min(r.error_second_order, r.error_finite_lr)
    assert set(rows_as_dicts(rows)[0]) >= {"error_first_order", "error_second_order", "rsm_change", "ntk_change_theory"}


def test_first_order_outside_its_domain_is_nan_not_a_number_that_looks_measured():
    X, Y = saxe.generate_hsd(n_features=60, rng=0)
    (row,) = lazy_rich([1e-3], lr=20.0, data=(X, Y), inits=("balanced",))  # η·s₁ ≈ 1: a secular escape
    assert np.isnan(row.error_first_order) and np.isnan(row.error_second_order) and np.isfinite(row.error_continuous)
    # where the expansions' secular timing error refuses them, SGD's modified equation (its escape rate exact) answers
    assert row.error_modified <= 0.02 * row.error_continuous
