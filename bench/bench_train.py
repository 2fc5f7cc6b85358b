"""Benchmark: one fully recorded 8-30-10000 run, 250 epochs — saxe.train vs a faithful copy of the tutorial.

All variants run in the same process with 1 torch thread, interleaved over repeats (the machine is shared and
noisy, so the median of interleaved repeats is what we compare), after one warm-up call each. Prints a table
and the speed-up ratios; ``--json PATH`` also writes the numbers.

    python bench/bench_train.py [--repeats 5] [--epochs 250] [--features 10000] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import tutorial_reference as tut  # noqa: E402  (the faithful copy of the tutorial's loop)

import saxe  # noqa: E402


def make_model(kind: str, seed: int, features: int, dtype=torch.float32):
    torch.manual_seed(seed)
    net = (tut.LNNet if kind == "tutorial" else saxe.LNNet)(8, 30, features).to(dtype)
    tut.initializer_(net, 1e-12)  # the same draw for every variant
    return net


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=250)
    ap.add_argument("--features", type=int, default=10000)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    X, Y = saxe.generate_hsd(n_features=args.features, rng=0)
    xt, yt = torch.tensor(X).float(), torch.tensor(Y).float()

    variants = {
        "tutorial (faithful copy)": lambda net: tut.train(net, xt, yt, args.epochs, 100.0),
        "saxe.train engine=autograd": lambda net: saxe.train(net, X, Y, args.epochs, 100.0, engine="autograd"),
        "saxe.train engine=reduced (default)": lambda net: saxe.train(net, X, Y, args.epochs, 100.0),
    }
    times = {k: [] for k in variants}
    for rep in range(args.repeats + 1):  # repeat 0 is the warm-up
        for name, fn in variants.items():
            net = make_model("tutorial" if name.startswith("tutorial") else "saxe", rep, args.features)
            t0 = time.perf_counter()
            fn(net)
            dt = time.perf_counter() - t0
            if rep:
                times[name].append(dt)

    base = statistics.median(times["tutorial (faithful copy)"])
    rows = {k: {"median_s": statistics.median(v), "min_s": min(v), "speedup_vs_tutorial": base / statistics.median(v)}
            for k, v in times.items()}
    print(f"8-30-{args.features}, {args.epochs} epochs, float32, 1 thread, {args.repeats} interleaved repeats")
    for k, r in rows.items():
        print(f"  {k:<38s} median {r['median_s'] * 1e3:8.1f} ms  min {r['min_s'] * 1e3:8.1f} ms  "
              f"speed-up {r['speedup_vs_tutorial']:5.1f}×")
    if args.json:
        Path(args.json).write_text(json.dumps({"config": vars(args), "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
