"""Measure where full-batch SGD diverges and compare with ``theory.divergence_lr`` (a measurement, not a speed test).

For each depth, number of features and seed (data and init), the tutorial's tree data and an 8-30(-30)-N network
are trained from the tutorial's init (γ = 1e-6 at depth 2; γ = 0.3 at depth 3, where a small init would sit on
its saddle for 10⁵ epochs) at every lr of a grid f = lr / max_stable_lr ∈ [1.00, 1.40] in steps of 0.01, for
``--epochs`` epochs. The exact reduced engine trains the whole grid in one batch (float64); the measured edge of a
seed is the smallest f on the grid whose run diverges. Autograd (the network's own arithmetic, as a plain loop)
then re-runs f_edge − 0.01 and f_edge to confirm the edge. Prints a markdown table; ``--json`` writes it.

    python bench/divergence_edge.py [--features 1000 10000] [--seeds 0 1] [--depths 2 3] [--epochs 5000]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import saxe
import theory
from saxe.engines import reduced_sgd

GAMMA = {2: 1e-6, 3: 0.3}


def _weights(X, Y, depth: int, seed: int):
    net = saxe.make_net(X.shape[1], [30] * (depth - 1), Y.shape[1]).double()
    saxe.initializer_(net, GAMMA[depth], generator=torch.Generator().manual_seed(seed))
    return [w.detach() for w in saxe.weights(net)]


def measured_edge(X, Y, depth: int, seed: int, grid: np.ndarray, bound: float, epochs: int) -> float:
    w0 = _weights(X, Y, depth, seed)
    ws = [w.unsqueeze(0).expand(grid.size, -1, -1).clone() for w in w0]
    lr = torch.tensor(grid * bound, dtype=torch.float64)
    res = reduced_sgd(torch.tensor(X), torch.tensor(Y), ws, lr, epochs, record_modes=False, record_rsm=False,
                      stop_on_divergence=False)
    div = (res.diverged_at >= 0).numpy()
    return float(grid[np.argmax(div)]) if div.any() else float("inf")


def autograd_diverges(X, Y, depth: int, seed: int, lr: float, epochs: int) -> bool:
    net = saxe.make_net(X.shape[1], [30] * (depth - 1), Y.shape[1]).double()
    with torch.no_grad():
        for p, w in zip(saxe.weights(net), _weights(X, Y, depth, seed)):
            p.copy_(w)
    try:
        saxe.train(net, X, Y, epochs, lr, engine="autograd", record_rsm=False)
        return False
    except saxe.DivergenceError:
        return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--depths", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--epochs", type=int, default=5000)
    ap.add_argument("--no-autograd", action="store_true", help="skip the autograd confirmation (slow at 10000)")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    grid = np.round(np.arange(1.0, 1.4001, 0.01), 4)
    rows = []
    print("| depth | features | seed | s₂/s₁ | predicted f | measured f (reduced) | autograd at f−0.01 / f | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for depth in args.depths:
        for n_features in args.features:
            for seed in args.seeds:
                t0 = time.perf_counter()
                X, Y = saxe.generate_hsd(n_features=n_features, rng=seed)
                s = theory.io_svd(X, Y)[1]
                bound = theory.stable_lr(X, Y, depth=depth).learned
                predicted = theory.divergence_lr(X, Y, depth=depth) / bound
                edge = measured_edge(X, Y, depth, seed, grid, bound, args.epochs)
                confirm = "—"
                if not args.no_autograd and np.isfinite(edge):
                    below = autograd_diverges(X, Y, depth, seed, (edge - 0.01) * bound, args.epochs)
                    at = autograd_diverges(X, Y, depth, seed, edge * bound, args.epochs)
                    confirm = f"{'diverges' if below else 'bounded'} / {'diverges' if at else 'bounded'}"
                row = {"depth": depth, "features": n_features, "seed": seed, "rho": float(s[1] / s[0]),
                       "predicted_f": predicted, "measured_f": edge, "autograd": confirm,
                       "seconds": time.perf_counter() - t0}
                rows.append(row)
                print(f"| {depth} | {n_features} | {seed} | {row['rho']:.3f} | {predicted:.3f} | {edge:.2f} | "
                      f"{confirm} | {row['seconds']:.0f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
