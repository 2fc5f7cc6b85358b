"""Benchmark: a ``saxe sweep`` vs the same runs by a faithful copy of the tutorial's training loop, per run.

Default grid, the tutorial's regimes: 8-30-10000 net (tree data, 10000 features), lr ∈ {50, 100}, γ ∈ {1e-12, 1e-6,
1e-3, 1}, 16 seeds (128 runs), 250 epochs; ``--lr 25 50 100 200 --seeds 64`` is the 1024-run sweep. Measured in
one run on the same machine:

(a) the tutorial: ``LNNet`` + ``initializer_`` + ``train`` from ``tests/tutorial_reference.py`` (verbatim copies of
    the tutorial's code), float32 as in the tutorial, called once per config in a child process (torch already
    imported, data already made: process start and data generation are *not* counted, which favours the
    baseline), at each of ``--tutorial-threads`` (default ``1 0``): 1 torch thread, the per-core comparison, and
    0 = torch's default thread count, which is how the tutorial runs (it never sets one; on a small shared machine
    its threads contend, so it can be slower than 1 thread). Each is reported with its own ratio;
(b) ``saxe sweep`` with the same grid as a subprocess (``--quiet``), wall clock from spawn to exit: process start
    (imports), data, init, training, every theory, the CSV, the phase diagram and ``sweep.json`` included;
    float64, 1 torch thread (``--threads 1``, the default). Run ``--repeats`` times (interleaved with (a)), the
    median is compared, since the machine may be shared and noisy;
(c) optionally (``--autograd``) the same sweep with ``--engine autograd`` (``saxe.train`` per run, float64).

(a) may be timed on the first ``--tutorial-seeds`` seeds of every (lr, γ) only (every config still covered), and
the comparison is **per run**: (a) seconds per call vs (b) wall seconds / runs. Peak RSS of each sweep process is
measured by the kernel (``os.wait4``'s ``ru_maxrss``).

Prints the times and the ratio; ``--json PATH`` also writes them. Shrink for a smoke run with
``--seeds 1 --features 500``.

    python bench/bench_sweep.py [--lr 50 100] [--seeds 16] [--tutorial-seeds N] [--features 10000]
                                [--epochs 250] [--repeats 3] [--tutorial-threads 1 0] [--autograd] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LRS = (50.0, 100.0)
CONFIG = {"lr": LRS}
GAMMAS = (1e-12, 1e-6, 1e-3, 1.0)
HIDDEN = 30


def tutorial_loop(seeds: int, features: int, epochs: int, threads: int = 1) -> tuple[float, int]:
    """Seconds for the 2 × 4 × seeds calls of the tutorial's loop (see module docstring, (a); ``threads`` torch
    threads, 0: torch's default), and how many calls
    crashed (a diverging config makes the tutorial's ``torch.svd`` raise on NaN weights; with few features
    lr = 100 is beyond the stable bound — that call's time up to the crash is counted and the loop goes on)."""
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    import tutorial_reference as tut  # noqa: E402  (the faithful copy of the tutorial's code)

    import saxe

    if threads:
        torch.set_num_threads(threads)
    labels, feats = saxe.generate_hsd(n_features=features, rng=0)
    label_tensor = torch.tensor(labels).float()  # as the tutorial: torch.tensor(tree_labels).float()
    feature_tensor = torch.tensor(feats).float()
    dim_input, dim_output = label_tensor.shape[1], feature_tensor.shape[1]
    crashed = 0
    t0 = time.perf_counter()
    for lr in CONFIG["lr"]:
        for gamma in GAMMAS:
            for seed in range(seeds):
                torch.manual_seed(seed)  # the tutorial's set_seed
                dlnn_model = tut.LNNet(dim_input, HIDDEN, dim_output)
                tut.initializer_(dlnn_model, gamma)
                try:
                    tut.train(dlnn_model, label_tensor, feature_tensor, n_epochs=epochs, lr=lr)
                except RuntimeError:  # torch.linalg.LinAlgError on NaN weights
                    crashed += 1
    return time.perf_counter() - t0, crashed


def tutorial_subprocess(args, seeds: int, threads: int) -> tuple[float, int]:
    """(a) in a child process: this process stays small, so the peak RSS the kernel reports for each sweep child
    is the sweep's own (a child forked from a process holding torch inherits that process's resident size in its
    ru_maxrss)."""
    cmd = [sys.executable, __file__, "--tutorial-only", "--lr", *map(repr, CONFIG["lr"]), "--seeds", str(args.seeds),
           "--tutorial-seeds", str(seeds), "--features", str(args.features), "--epochs", str(args.epochs),
           "--tutorial-threads", str(threads)]
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    return out["seconds"], out["crashed"]


def _threads(n: int) -> str:
    return "torch's default threads" if n == 0 else f"{n} thread{'s' if n > 1 else ''}"


def sweep_command(seeds: int, features: int, epochs: int, out: Path, engine: str) -> list[str]:
    exe = shutil.which("saxe")
    head = [exe] if exe else [sys.executable, "-m", "experiments"]
    return [*head, "sweep", "--lr", *map(repr, CONFIG["lr"]), "--gamma", *map(repr, GAMMAS), "--depth", "2", "--hidden",
            str(HIDDEN), "--seeds", str(seeds), "--epochs", str(epochs), "--features", str(features), "--engine",
            engine, "--out", str(out), "--quiet"]


def run_sweep(seeds: int, features: int, epochs: int, engine: str) -> tuple[float, dict]:
    """Wall seconds of one ``saxe sweep`` subprocess, and its own timing breakdown (sweep.json)."""
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        out = Path(tmp) / "out"
        cmd = sweep_command(seeds, features, epochs, out, engine)
        t0 = time.perf_counter()
        with open(Path(tmp) / "stderr", "w+") as err:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)
            err.seek(0)
            stderr = err.read()
        if proc.returncode != 0:
            raise SystemExit(f"saxe sweep failed ({proc.returncode}):\n{stderr}")
        info = json.loads((out / "sweep.json").read_text())
        n_rows = info["n_rows"]
        expected = len(CONFIG["lr"]) * len(GAMMAS) * seeds
        if n_rows != expected:
            raise SystemExit(f"saxe sweep wrote {n_rows} rows, expected {expected}")
        return wall, {"timings": info["timings"], "n_rows": n_rows, "n_diverged": info["n_diverged"],
                      "command": " ".join(cmd), "peak_rss_mb": usage.ru_maxrss / 1024}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lr", type=float, nargs="+", default=list(LRS), help="learning rates (default 50 100)")
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--tutorial-seeds", type=int, help="time (a) on this many seeds per config (default: all)")
    ap.add_argument("--features", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=250)
    ap.add_argument("--repeats", type=int, default=3, help="runs of (b), interleaved around (a) (default 3)")
    ap.add_argument("--tutorial-threads", type=int, nargs="+", default=[1, 0],
                    help="torch threads of (a), each measured (0: torch's default, as the tutorial runs; default 1 0)")
    ap.add_argument("--autograd", action="store_true", help="also time the sweep with --engine autograd (c)")
    ap.add_argument("--json", help="also write the numbers to this JSON file")
    ap.add_argument("--tutorial-only", action="store_true", help=argparse.SUPPRESS)  # (a) in its own process
    args = ap.parse_args(argv)
    CONFIG["lr"] = tuple(args.lr)
    if args.tutorial_only:
        t, crashed = tutorial_loop(min(args.tutorial_seeds or args.seeds, args.seeds), args.features, args.epochs,
                                   args.tutorial_threads[0])
        print(json.dumps({"seconds": t, "crashed": crashed}))
        return 0
    n_runs = len(CONFIG["lr"]) * len(GAMMAS) * args.seeds
    tut_seeds = min(args.tutorial_seeds or args.seeds, args.seeds)
    n_tut = len(CONFIG["lr"]) * len(GAMMAS) * tut_seeds
    print(f"grid: {n_runs} runs of 8-{HIDDEN}-{args.features}, {args.epochs} epochs; lr {CONFIG['lr']}, "
          f"gamma {GAMMAS}, "
          f"{args.seeds} seeds; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)

    sweep_walls, sweep_info = [], None
    wall, sweep_info = run_sweep(args.seeds, args.features, args.epochs, "auto")
    sweep_walls.append(wall)
    print(f"(b) saxe sweep (reduced engine), subprocess: {wall:.2f} s, peak RSS {sweep_info['peak_rss_mb']:.0f} MB",
          flush=True)
    tut = {}
    for threads in args.tutorial_threads:
        t_tut, crashed = tutorial_subprocess(args, tut_seeds, threads)
        tut[threads] = (t_tut, crashed)
        note = f"; {crashed} calls crashed (diverged)" if crashed else ""
        print(f"(a) tutorial loop, {_threads(threads)}, {n_tut} calls: {t_tut:.2f} s ({t_tut / n_tut:.3f} s/run{note})",
              flush=True)
    t_tut, crashed = tut[args.tutorial_threads[0]]
    per_tut = t_tut / n_tut
    for _ in range(args.repeats - 1):
        wall, sweep_info = run_sweep(args.seeds, args.features, args.epochs, "auto")
        sweep_walls.append(wall)
        print(f"(b) saxe sweep (reduced engine), subprocess: {wall:.2f} s, peak RSS {sweep_info['peak_rss_mb']:.0f} "
              "MB", flush=True)
    t_sweep = statistics.median(sweep_walls)
    per_sweep = t_sweep / n_runs
    result = {
        "grid": {"runs": n_runs, "lr": CONFIG["lr"], "gamma": GAMMAS, "seeds": args.seeds, "hidden": HIDDEN,
                 "features": args.features, "epochs": args.epochs},
        "tutorial_loop_s": t_tut,
        "tutorial_calls": n_tut,
        "tutorial_s_per_run": per_tut,
        "sweep_s_per_run": per_sweep,
        "sweep_peak_rss_mb": sweep_info["peak_rss_mb"],
        "tutorial_calls_crashed": crashed,
        "sweep_s": sweep_walls,
        "sweep_median_s": t_sweep,
        "speedup_per_run": per_tut / per_sweep,
        "tutorial_threads": args.tutorial_threads[0],
        "by_tutorial_threads": {str(th): {"tutorial_s_per_run": t / n_tut, "speedup_per_run": t / n_tut / per_sweep,
                                          "crashed": c} for th, (t, c) in tut.items()},
        "sweep_breakdown_last": sweep_info["timings"],
        "sweep_command": sweep_info["command"],
        "machine": {"cpus": os.cpu_count(), "load_average_1min_end": os.getloadavg()[0],
                    "python": platform.python_version(), "platform": platform.platform()},
    }
    if args.autograd:
        wall, info = run_sweep(args.seeds, args.features, args.epochs, "autograd")
        result["sweep_autograd_s"] = wall
        result["sweep_autograd_breakdown"] = info["timings"]
        print(f"(c) saxe sweep --engine autograd, subprocess: {wall:.2f} s", flush=True)
    b = sweep_info["timings"]
    print(f"\nsaxe sweep {per_sweep * 1e3:.2f} ms/run ({t_sweep:.2f} s "
          f"for {n_runs} runs, median of {len(sweep_walls)}; last run: train {b['train_s']:.2f} s, theory "
          f"{b['theory_s']:.2f} s, figure {b['figure_s']:.2f} s, in-process total {b['total_s']:.2f} s, the rest is "
          f"process start; peak RSS {sweep_info['peak_rss_mb']:.0f} MB)")
    for threads, (t, _) in tut.items():
        print(f"  against the tutorial loop at {_threads(threads)}: {t / n_tut * 1e3:.1f} ms/run  →  "
              f"{t / n_tut / per_sweep:.1f}× faster per run")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
