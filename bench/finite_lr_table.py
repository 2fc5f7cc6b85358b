"""Finite-learning-rate closed forms against the exact maps on the tutorial spectrum (prints markdown tables).

Errors are max over epochs and modes of |Δa|/s₁ (s₁ = 155.97 the largest singular value) against the exact SGD
map: :func:`theory.modes.mode_strength_discrete` (balanced decoupled, depth L) or
:func:`theory.coupled.coupled_modes_discrete` (coupled depth 2, entries of M). Columns: Saxe's gradient-flow
closed form (τ = 1/η), the same form with growth rate 2 ln(1 + ηs) instead of 2ηs (depth 2), and
:func:`theory.finite_lr.mode_strength_finite_lr` at order 0 and 1. Horizons: "250 ep" = epochs 0…250 (the
tutorial's run); "full" = epochs 0…⌈250·100/lr⌉ (the same share of the learning curve at every lr). Depth 3/4 and
the coupled table use the full horizon, closed forms evaluated on at most ``MAX_POINTS`` evenly spaced epochs.
The exponent p is the least-squares slope of log(error) on log(lr) over the rows that are not refused.

    python bench/finite_lr_table.py
"""
from __future__ import annotations

import numpy as np
import torch

import saxe
import theory
from theory.finite_lr import mode_strength_finite_lr
from theory.finite_lr_coupled import coupled_modes_finite_lr

P, N_OUT, HIDDEN, GAMMA = 8, 10000, 30, 1e-12
LRS = (6.25, 12.5, 25.0, 50.0, 100.0, 120.0, 200.0)
DEEP_A0 = 1e-4  # the deep3 run of `saxe verify`
DEEP_FRACTIONS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 0.4, 0.49)  # of the stable bound max_stable_lr; < ½ is monotone
COUPLED_LRS = (6.25, 12.5, 25.0, 50.0, 100.0)
MAX_POINTS = 3000


def _eta(lr: float) -> float:
    return theory.learning_rate_to_eta(lr, P, N_OUT)


def _err(a: np.ndarray, exact: np.ndarray, s1: float) -> float:
    return float(np.abs(a - exact).max() / s1)


def _fmt(x: float | None) -> str:
    return "refused" if x is None else f"{x:.2e}"


def _slope(lrs, errs) -> str:
    pts = [(np.log(x), np.log(e)) for x, e in zip(lrs, errs) if e is not None and e > 0]
    if len(pts) < 2:
        return "–"
    x, y = np.array(pts).T
    return f"{np.polyfit(x, y, 1)[0]:.2f}"


def _closed(t, s, a0, eta, depth, order):
    try:
        return mode_strength_finite_lr(t, s, a0, eta, depth=depth, order=order)
    except ValueError:
        return None


def depth2_table(s: np.ndarray, a0: float) -> None:
    print(f"\n### Depth 2, tutorial spectrum, a0 = {a0:.3g}\n")
    print("| lr | η·s₁ | horizon | Saxe | 2 ln(1+ηs) form | order 0 | order 1 |")
    print("|---|---|---|---|---|---|---|")
    cols: dict[str, list] = {k: [] for k in ("saxe", "log", "o0", "o1")}
    for lr in LRS:
        eta = _eta(lr)
        for horizon in ("250 ep", "full"):
            n = 250 if horizon == "250 ep" else int(np.ceil(250 * 100 / lr))
            t = np.arange(n + 1.0)[:, None]
            exact = theory.mode_strength_discrete(n, s, a0, eta)
            row = {"saxe": _err(theory.mode_strength(t, s, a0, 1 / eta), exact, s[0]),
                   "log": _err(theory.mode_strength(t, s, a0, s / np.log1p(eta * s)), exact, s[0])}
            for o in (0, 1):
                a = _closed(t, s, a0, eta, 2, o)
                row[f"o{o}"] = None if a is None else _err(a, exact, s[0])
            print(f"| {lr:g} | {eta * s[0]:.3f} | {horizon} | " + " | ".join(_fmt(row[k]) for k in cols) + " |")
            if horizon == "full":
                for k in cols:
                    cols[k].append(row[k])
    print("| fit p (error ∝ lr^p, full, lr ≤ 100) | | | "
          + " | ".join(_slope(LRS[:5], cols[k][:5]) for k in cols) + " |")
    print("| fit p (full, lr ≤ 25) | | | " + " | ".join(_slope(LRS[:3], cols[k][:3]) for k in cols) + " |")


def deep_table(s: np.ndarray, depth: int) -> None:
    lr_max = theory.max_stable_lr(s[0], P, N_OUT, depth=depth)
    print(f"\n### Depth {depth}, tutorial spectrum, a0 = {DEEP_A0:g}, stable bound lr_max = {lr_max:.4g}\n")
    print("| lr | L·η·s₁^(2−2/L) | epochs | Saxe | order 0 | order 1 |")
    print("|---|---|---|---|---|---|")
    lrs, cols = [], {"saxe": [], "o0": [], "o1": []}
    for frac in DEEP_FRACTIONS:
        lr = frac * lr_max
        eta = _eta(lr)
        n = int(1.3 * theory.time_to_learn(0.999, s[-1], DEEP_A0, eta=eta, depth=depth, method="discrete"))
        exact_all = theory.mode_strength_discrete(n, s, DEEP_A0, eta, depth=depth)
        k = np.unique(np.linspace(0, n, min(n + 1, MAX_POINTS)).round().astype(int))
        t, exact = k[:, None].astype(float), exact_all[k]
        row = {"saxe": _err(theory.mode_strength(t, s, DEEP_A0, 1 / eta, depth=depth), exact, s[0])}
        for o in (0, 1):
            a = _closed(t, s, DEEP_A0, eta, depth, o)
            row[f"o{o}"] = None if a is None else _err(a, exact, s[0])
        lrs.append(lr)
        for key in cols:
            cols[key].append(row[key])
        lh = depth * eta * s[0] ** (2 - 2 / depth)
        print(f"| {lr:.4g} | {lh:.3f} | {n} | " + " | ".join(_fmt(row[key]) for key in cols) + " |")
    print("| fit p (error ∝ lr^p, all rows) | | | " + " | ".join(_slope(lrs, cols[key]) for key in cols) + " |")
    print("| fit p (L·η·s₁^(2−2/L) ≤ 0.25) | | | "
          + " | ".join(_slope(lrs[:3], cols[key][:3]) for key in cols) + " |")


def coupled_table(X: np.ndarray, Y: np.ndarray) -> None:
    U, s, V = theory.io_svd(X, Y)
    print(f"\n### Coupled depth 2, tutorial, random init γ = {GAMMA:g} (8-{HIDDEN}-10000), seeds 0–3: "
          "max over seeds\n")
    print("| lr | η·s₁ | epochs | continuous coupled (before) | finite-lr order 0 | finite-lr order 1 (after) |")
    print("|---|---|---|---|---|---|")
    Ks = []
    for seed in range(4):
        net = saxe.make_net(P, [HIDDEN], N_OUT).double()
        saxe.initializer_(net, GAMMA, generator=torch.Generator().manual_seed(seed))
        Ks.append(theory.initial_mode_matrix([w.detach().numpy() for w in saxe.weights(net)], U, V))
    cols: dict[str, list] = {"before": [], "o0": [], "o1": []}
    for lr in COUPLED_LRS:
        eta = _eta(lr)
        n = int(np.ceil(250 * 100 / lr))
        k = np.unique(np.linspace(0, n, min(n + 1, MAX_POINTS // 3)).round().astype(int))
        t = k.astype(float)
        row = dict.fromkeys(cols, 0.0)
        for K in Ks:
            exact = theory.coupled_modes_discrete(n, s, K, eta)[k]
            row["before"] = max(row["before"], _err(theory.coupled_modes_continuous(t, s, K, 1 / eta), exact, s[0]))
            for o in (0, 1):
                row[f"o{o}"] = max(row[f"o{o}"], _err(coupled_modes_finite_lr(t, s, K, eta, order=o), exact, s[0]))
        for key in cols:
            cols[key].append(row[key])
        print(f"| {lr:g} | {eta * s[0]:.3f} | {n} | " + " | ".join(_fmt(row[key]) for key in cols) + " |")
    print("| fit p (error ∝ lr^p) | | | " + " | ".join(_slope(COUPLED_LRS, cols[key]) for key in cols) + " |")


def main() -> None:
    torch.set_num_threads(1)
    X, Y = (np.asarray(m, dtype=float) for m in saxe.generate_hsd(rng=0))
    _, s, _ = theory.io_svd(X, Y)
    a0 = theory.expected_initial_mode_strength(GAMMA, [P, HIDDEN, N_OUT])
    depth2_table(s, a0)
    for depth in (3, 4):
        deep_table(s, depth)
    coupled_table(X, Y)


if __name__ == "__main__":
    main()
