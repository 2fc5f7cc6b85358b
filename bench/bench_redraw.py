"""Benchmark: one redraw of the notebook's widgets at the tutorial's size (8-30-10000, 250 epochs).

A redraw is what a slider change costs: train a fresh network with the fast exact engine, predict it with the
exact theory state, draw the figure and render it (PNG, as the notebook displays it). Median of ``--repeats``
after one warm-up, 1 torch thread. The issue's target: < 0.5 s.

    python bench/bench_redraw.py [--repeats 7] [--features 10000]
"""
from __future__ import annotations

import argparse
import io
import statistics
import time

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

from experiments import interactive as demo  # noqa: E402


def redraw(X, Y, which: str) -> None:
    run = demo.train_with_theory(X, Y, lr=100.0, gamma=1e-12)
    fig = demo.loss_figure(run) if which == "demo1" else demo.rsa_figure(run, 61)
    fig.savefig(io.BytesIO(), format="png", dpi=72)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--features", type=int, default=10000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    X, Y = demo.tutorial_data(args.features)
    for which in ("demo1", "rsa"):
        redraw(X, Y, which)  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            redraw(X, Y, which)
            times.append(time.perf_counter() - t0)
        print(f"{which}: median {statistics.median(times) * 1000:.0f} ms over {args.repeats} redraws "
              f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f})")


if __name__ == "__main__":
    main()
