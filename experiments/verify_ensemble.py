r"""``saxe verify``'s deep random-init ensembles: the a priori distribution over seeds of each mode's half-learning
epoch from s, the widths, γ and η only (no weights), twice: exact in law (:func:`theory.half_learning_exact_law`:
the exact SGD map of the reduced state from draws of its initial law) and the cheap reduced model
(:func:`theory.half_learning_distribution`), against the half-learning epochs of really trained networks, one per
seed.

Depth 3 and 4 on the tutorial's tree data (hidden width as the other runs), lr = ``DEEP_LR_FRACTION`` × the
depth's stable bound, γ such that the old a priori a₀ (:func:`theory.expected_initial_mode_strength`) is
``DEEP_A0`` (as the ``deep3_random`` run). The seeds are trained together by the batched exact engine of
:mod:`saxe.batched` (the tutorial's init rule, seed by seed, float64); a mode's half-learning epoch is the first
epoch at which the k-th singular value of W_tot reaches s_k/2 (:func:`experiments.metrics.half_learning_epochs`).
A seed whose mode has not got there within the run counts as +∞ (the median stays defined while fewer than half
do). The exact law is *checked*: its median and the measured one may differ only by sampling, so each mode's
difference in units of its standard error (z, with the standard error of a sample median ≈ IQR/√n) must stay
within :data:`Z_TOL`. The model's gaps are reported, not checked: it leaves out the modes' coupling through the
shared middle layers (see :mod:`theory.deep_init`), and its measured gap is the finding.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

import theory
from saxe.batched import train_batch

from . import metrics as M
from .sweep_engine import InitCache, Problem
from .sweep_grid import Run

DEEP_LR_FRACTION = 0.6
DEEP_A0 = 1e-4
#: Seeds per depth (the issue's 32) and a priori draws; --quick uses fewer.
SEEDS, QUICK_SEEDS = 32, 8
DRAWS, QUICK_DRAWS = 512, 128
#: Draws of the exact law (each costs an exact training of the reduced 38-output net: 8-30-30-30-38 at depth 4).
#: 128: the law's median has a relative standard error ≈ IQR/(median·√128) ≈ 1.5 % on these modes, below the
#: ≈ 3 % of the 32-seed measured median it is compared with.
LAW_DRAWS, QUICK_LAW_DRAWS = 128, 32
#: An exact-law median differs from the measured one by sampling only; |z| above this is a FAIL. Under that null
#: |z| > 4 has probability ≈ 6e-5 per mode (≈ 1e-3 over the 16 modes of both depths). What it catches: a law or a
#: map that moves the medians by several standard errors (a factor in σ_l of the Gaussian blocks, a wrong rate);
#: the complements' Gram blocks are O(γ²) here and move no median, so their law is checked by the KS test of
#: tests/test_theory_deep_law.py instead.
Z_TOL = 4.0
#: The run lasts this many times the latest predicted 90 % quantile, so that (nearly) every seed's every mode
#: crosses s/2 even where the a priori model is early (measured: by up to 10 %, depth 4's last mode) and for the
#: slowest seeds.
EPOCHS_OVER_Q90 = 2.5
DEPTHS = (3, 4)
#: The goal the report counts modes against: a predicted median within 5 % of the measured one.
GOAL_RTOL = 0.05


def deep_setting(s: np.ndarray, P: int, n_out: int, n_in: int, hidden: int, depth: int) -> tuple[float, float, list]:
    """(lr, γ, layer sizes) of a deep run: lr = ``DEEP_LR_FRACTION`` × the depth's stable bound, γ such that the
    a priori a₀ is ``DEEP_A0`` (a₀ scales as γ^L, so one evaluation inverts it)."""
    sizes = [n_in] + [hidden] * (depth - 1) + [n_out]
    lr = DEEP_LR_FRACTION * float(theory.max_stable_lr(s[0], P, n_out, depth=depth))
    gamma = (DEEP_A0 / float(theory.expected_initial_mode_strength(1.0, sizes))) ** (1 / depth)
    return lr, gamma, sizes


def ensemble(X: np.ndarray, Y: np.ndarray, hidden: int, depth: int, quick: bool) -> dict:
    """Predicted and measured half-learning epochs (per mode: medians, 10–90 % ranges, relative errors)."""
    problem = Problem(X, Y, "verify-ensemble")
    s = problem.s
    P, n_out = Y.shape
    lr, gamma, sizes = deep_setting(s, P, n_out, X.shape[1], hidden, depth)
    eta = theory.learning_rate_to_eta(lr, P, n_out)
    n_seeds = QUICK_SEEDS if quick else SEEDS
    t0 = time.perf_counter()
    pred = theory.half_learning_distribution(s, sizes, gamma, eta, n_draws=QUICK_DRAWS if quick else DRAWS)
    t1 = time.perf_counter()
    law = theory.half_learning_exact_law(s, sizes, gamma, eta, n_draws=QUICK_LAW_DRAWS if quick else LAW_DRAWS)
    t2 = time.perf_counter()
    old = theory.time_to_learn(0.5, s, theory.expected_initial_mode_strength(gamma, sizes), eta=eta, depth=depth,
                               method="discrete")
    n_epochs = int(math.ceil(EPOCHS_OVER_Q90 * float(max(np.max(pred.quantiles[-1]), np.max(law.quantiles[-1])))))
    runs = [Run(i, depth, hidden, lr, gamma, seed) for i, seed in enumerate(range(n_seeds))]
    with torch.no_grad():
        tr = train_batch(InitCache(problem, torch.float64), runs, n_epochs, engine="reduced",
                         device=torch.device("cpu"))
    halves = np.array([M.half_learning_epochs(tr.modes[i], s) for i in range(n_seeds)], dtype=float)
    halves[~np.isfinite(halves)] = np.inf
    measured = np.median(halves, axis=0)
    q = np.percentile(np.where(np.isfinite(halves), halves, np.nan), [10, 90], axis=0)
    t3 = time.perf_counter()
    rel = (pred.median - measured) / measured
    se = np.hypot(_median_se(halves), _median_se(law.samples))  # > 0 (floored); NaN where quartiles are not finite
    return {"depth": depth, "sizes": sizes, "lr": lr, "gamma": gamma, "eta": eta, "n_seeds": n_seeds,
            "n_epochs": n_epochs, "s": s.tolist(), "measured_median": measured.tolist(),
            "measured_q10": q[0].tolist(), "measured_q90": q[1].tolist(), "predicted_median": pred.median.tolist(),
            "predicted_q10": pred.quantiles[0].tolist(), "predicted_q90": pred.quantiles[-1].tolist(),
            "relative_error": rel.tolist(), "old_a_priori": np.asarray(old, dtype=float).tolist(),
            "law_draws": int(law.samples.shape[0]), "law_median": law.median.tolist(),
            "law_q10": law.quantiles[0].tolist(), "law_q90": law.quantiles[-1].tolist(),
            "law_relative_error": ((law.median - measured) / measured).tolist(),
            "law_z": _z(law.median - measured, se).tolist(),
            "seconds": {"model": t1 - t0, "exact_law": t2 - t1, "training": t3 - t2},
            "not_reached": int(np.sum(~np.isfinite(halves))), "diverged": int(np.sum(tr.diverged_at >= 0))}


def _median_se(samples: np.ndarray) -> np.ndarray:
    """Standard error of each column's sample median, ≈ IQR/√n (1/(2 f(m)√n) with the density at the median taken
    as ½/IQR: exact for a uniform law, 7 % high for a normal one), the IQR floored at one epoch (the resolution of
    integer epochs: a few seeds may share their quartiles). NaN where the quartiles are not finite (seeds that never
    got there): the z check then fails instead of passing on an infinite standard error."""
    with np.errstate(invalid="ignore"):
        q25, q75 = np.quantile(samples, [0.25, 0.75], axis=0)
        se = np.maximum(q75 - q25, 1.0) / np.sqrt(samples.shape[0])
    return np.where(np.isfinite(se), se, np.nan)


def _z(diff: np.ndarray, se: np.ndarray) -> np.ndarray:
    """diff/se, NaN (not a warning) where either is not finite."""
    with np.errstate(invalid="ignore", divide="ignore"):
        z = diff / se
    return np.where(np.isfinite(z), z, np.nan)


def _z_summary(law_z) -> tuple[float, bool, str]:
    """(max |z| over the modes with a defined z (NaN if none), passed, the verdict's words): a mode whose z is
    undefined fails the check and is named."""
    z = np.abs(np.asarray(law_z, dtype=float))
    undefined = [k + 1 for k in range(z.size) if not np.isfinite(z[k])]
    zmax = float(np.max(z[np.isfinite(z)])) if len(undefined) < z.size else float("nan")
    if undefined:
        return zmax, False, (f"**FAIL**: z undefined for mode(s) {', '.join(map(str, undefined))} (quartiles not "
                             "finite: seeds or draws that never got there)")
    if zmax > Z_TOL:
        return zmax, False, f"**FAIL**: max |z| = {zmax:.2f} > {Z_TOL:g} (mode {int(np.argmax(z)) + 1})"
    return zmax, True, f"within sampling (max |z| = {zmax:.2f} ≤ {Z_TOL:g})"


def ensemble_checks(results: list[dict]) -> list[dict]:
    """``deep{L}_ensemble.half_median_z.exact_law``: max over modes of |z| of the exact law's median, checked
    against :data:`Z_TOL`. Reported only: ``deep{L}_ensemble.half_median.{exact_law,a_priori,old_a_priori}`` (max
    over modes of the relative error of the median) and the same for mode 1."""
    checks = []
    for r in results:
        z, passed, _ = _z_summary(r["law_z"])
        checks.append({"name": f"deep{r['depth']}_ensemble.half_median_z.exact_law", "value": z, "tolerance": Z_TOL,
                       "passed": passed, "floor": None})
        meas = np.asarray(r["measured_median"])
        for name, pred in (("exact_law", r["law_median"]), ("a_priori", r["predicted_median"]),
                           ("old_a_priori", r["old_a_priori"])):
            rel = np.abs(np.asarray(pred) - meas) / meas
            for what, value in (("half_median_mode1", rel[0]), ("half_median", np.max(rel))):
                checks.append({"name": f"deep{r['depth']}_ensemble.{what}.{name}", "value": float(value),
                               "tolerance": None, "passed": None, "floor": None})
    return checks


def ensemble_report(results: list[dict]) -> list[str]:
    """Markdown: one table per depth, the exact law's and the model's half-learning epochs against the measured
    ones per mode; the sentences are generated from those numbers."""
    lines = ["## Deep random inits: a priori half-learning epochs over seeds", ""]
    for r in results:
        lines += [f"Depth {r['depth']} ({'-'.join(map(str, r['sizes']))}), lr = {r['lr']:.4g}, γ = {r['gamma']:.4g}, "
                  f"{r['n_seeds']} seeds trained for {r['n_epochs']} epochs"
                  + (f" ({r['not_reached']} mode crossings not reached)" if r["not_reached"] else "")
                  + ". Predicted from s, the widths, γ and η only: exact in law (`theory.half_learning_exact_law`, "
                  f"{r['law_draws']} draws, z = difference / its sampling standard error) and by the reduced model "
                  "(`theory.half_learning_distribution`).", "",
                  "| mode | s | measured median (10–90 %) | exact law median (10–90 %) | rel. error | z | "
                  "model median (10–90 %) | rel. error | old a priori |", "|---|---|---|---|---|---|---|---|---|"]
        for k in range(len(r["s"])):
            lines.append(f"| {k + 1} | {r['s'][k]:.4g} | {r['measured_median'][k]:.1f} "
                         f"({r['measured_q10'][k]:.0f}–{r['measured_q90'][k]:.0f}) | {r['law_median'][k]:.1f} "
                         f"({r['law_q10'][k]:.0f}–{r['law_q90'][k]:.0f}) | {r['law_relative_error'][k]:+.3f} | "
                         f"{r['law_z'][k]:+.2f} | {r['predicted_median'][k]:.1f} ({r['predicted_q10'][k]:.0f}–"
                         f"{r['predicted_q90'][k]:.0f}) | {r['relative_error'][k]:+.3f} | {r['old_a_priori'][k]:.0f} |")
        verdict = _z_summary(r["law_z"])[2]
        lines.append("")
        for label, key in (("Exact law", "law_relative_error"), ("Model", "relative_error")):
            rel = np.abs(np.asarray(r[key]))
            within = ", ".join(str(k + 1) for k in range(rel.size) if rel[k] <= GOAL_RTOL) or "none"
            lines.append(f"{label}: within {GOAL_RTOL:.0%} of the measured median for modes {within}; worst "
                         f"{rel.max():.1%} (mode {int(np.argmax(rel)) + 1})"
                         + (f"; against the measured medians {verdict}." if key == "law_relative_error" else "."))
        sec = r["seconds"]
        lines += ["", f"Cost: exact law {sec['exact_law']:.1f} s, model {sec['model']:.1f} s, training the seeds "
                      f"{sec['training']:.1f} s.", ""]
    return lines


def ensemble_figure(results: list[dict], path) -> str:
    """Half-learning epoch per mode: measured medians with their 10–90 % range over seeds, the exact law's and the
    model's a priori predictions (median and range) beside them, and the old balanced a priori value; one panel
    per depth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import save_figure

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4.2), layout="constrained",
                             squeeze=False)
    for ax, r in zip(axes[0], results):
        k = np.arange(1, len(r["s"]) + 1)
        for off, (med, lo, hi, color, label) in zip((-0.18, 0.0, 0.18), (
                (r["measured_median"], r["measured_q10"], r["measured_q90"], "k", "measured (median, 10–90 %)"),
                (r["law_median"], r["law_q10"], r["law_q90"], "tab:blue", "a priori, exact law"),
                (r["predicted_median"], r["predicted_q10"], r["predicted_q90"], "tab:red", "a priori, reduced model"))):
            med, lo, hi = (np.asarray(v, dtype=float) for v in (med, lo, hi))
            ax.errorbar(k + off, med, yerr=[med - lo, hi - med], fmt="o", color=color, ms=4, capsize=3, label=label)
        ax.plot(k, r["old_a_priori"], "x", color="tab:gray", label="old balanced a priori a₀")
        ax.set(xlabel="mode (s descending)", ylabel="half-learning epoch", yscale="log",
               title=f"depth {r['depth']}, {r['n_seeds']} seeds")
        ax.set_xticks(k)
    axes[0][0].legend(fontsize=8)
    return save_figure(fig, path).name
