"""Print the lazy → rich table of the tutorial net (8-30-10000): γ × {λ-balanced error, random-init error, λ, ...}.

Usage: ``python bench/lazy_rich_table.py [--lr 100] [--gammas 1e-6 1e-2 1 10] [--figure out.png]``.
Errors: max over N_EVAL evenly spaced epochs and the first EARLY_EPOCHS of |σ_α^theory − σ_α^SGD| / s₁ (σ the
singular values of W_tot), for the gradient-flow closed form ('flow'), the flow plus SGD's first- and
second-order corrections ('1st', '2nd', :mod:`theory.sgd_expansion`; nan: outside their domain), SGD's modified
equation ('mod', :mod:`theory.modified_equation`, from the init's own weights after 'k0' exact SGD steps; nan where it
refuses) and the rate-corrected form ('finlr') of :mod:`theory.balanced`, and of the flow form against the init's
own exact gradient flow ('v ivp', solve_ivp); the random init uses the same formula with its fitted λ (an
approximation), so its 'v ivp' column is the error the ignored imbalance D − λI causes. Changes:
‖K(T) − K(0)‖/‖K(0)‖ of the hidden RSM and of the NTK, measured (SGD) / predicted.
Reference: Dominé et al., ICLR 2025, arXiv:2409.14623.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from experiments.lazy_rich import DEFAULT_GAMMAS, lazy_rich, lazy_rich_figure  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lr", type=float, default=100.0)
    ap.add_argument("--gammas", type=float, nargs="+", default=list(DEFAULT_GAMMAS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--figure", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows = lazy_rich(args.gammas, lr=args.lr, seed=args.seed, inits=("balanced", "random", "balanced_lazy"))
    by = {(r.gamma, r.init): r for r in rows}
    print(f"tutorial 8-30-10000, requested lr={args.lr:g}, seed={args.seed}; errors in units of s1")
    print(f"{'gamma':>7} | {'bal flow':>8} {'bal 1st':>8} {'bal 2nd':>8} {'bal mod':>8} {'k0':>2} {'bal finlr':>9} "
          f"{'bal v ivp':>9} | {'rnd flow':>8} {'rnd 1st':>8} {'rnd 2nd':>8} {'rnd mod':>8} {'k0':>2} {'rnd finlr':>9} "
          f"{'rnd v ivp':>9} | {'lambda(rnd)':>11} "
          f"{'dev(rnd)':>8} | {'lr used':>7} {'rnd lr':>7} {'epochs':>6} | "
          f"{'RSM chg bal':>11} {'(theory)':>9} {'RSM chg rnd':>11} | "
          f"{'NTK chg bal':>11} {'(theory)':>9} {'NTK chg rnd':>11} {'(theory)':>9}")
    for g in args.gammas:
        b, r = by[(g, "balanced")], by[(g, "random")]
        print(f"{g:7.0e} | {b.error_continuous:8.2e} {b.error_first_order:8.2e} {b.error_second_order:8.2e} "
              f"{b.error_modified:8.2e} {b.modified_exact_steps:2d} {b.error_finite_lr:9.2e} {b.error_vs_flow:9.2e} | "
              f"{r.error_continuous:8.2e} {r.error_first_order:8.2e} {r.error_second_order:8.2e} "
              f"{r.error_modified:8.2e} {r.modified_exact_steps:2d} "
              f"{r.error_finite_lr:9.2e} "
              f"{r.error_vs_flow:9.2e} | {r.lam:11.4g} "
              f"{r.deviation:8.3f} | {b.lr:7.3g} {r.lr:7.3g} {b.n_epochs:6d} | "
              f"{b.rsm_change:11.3g} {b.rsm_change_theory:9.3g} {r.rsm_change:11.3g} | "
              f"{b.ntk_change:11.3g} {b.ntk_change_theory:9.3g} {r.ntk_change:11.3g} {r.ntk_change_theory:9.3g}")
    print("output-lazy family (λ-balanced, W1 ≈ 0, same λ(γ)):")
    print(f"{'gamma':>7} | {'flow':>8} {'1st':>8} {'2nd':>8} {'mod':>8} {'k0':>2} {'finlr':>9} {'v ivp':>9} | "
          f"{'lr used':>7} "
          f"{'epochs':>6} | "
          f"{'RSM chg':>9} "
          f"{'(theory)':>9} | {'NTK chg':>9} {'(theory)':>9}")
    for g in args.gammas:
        z = by[(g, "balanced_lazy")]
        print(f"{g:7.0e} | {z.error_continuous:8.2e} {z.error_first_order:8.2e} {z.error_second_order:8.2e} "
              f"{z.error_modified:8.2e} {z.modified_exact_steps:2d} {z.error_finite_lr:9.2e} "
              f"{z.error_vs_flow:9.2e} | {z.lr:7.3g} "
              f"{z.n_epochs:6d} | {z.rsm_change:9.3g} {z.rsm_change_theory:9.3g} | {z.ntk_change:9.3g} "
              f"{z.ntk_change_theory:9.3g}")
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.figure is not None:
        print("figure:", lazy_rich_figure(rows, args.figure))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
