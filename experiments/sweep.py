r"""``saxe sweep``: map where each theory holds over depth × width × lr × init scale × seeds, fast and exact.

Example (the tutorial's regimes, 128 runs)::

    saxe sweep --lr 50 100 --gamma 1e-12 1e-6 1e-3 1 --depth 2 --hidden 30 --seeds 16 --epochs 250 --out DIR

**Modules.** This one is the command line (arguments, the run loop); the rest lives in
:mod:`experiments.sweep_grid` (the grid, shards, CSV columns and rows), :mod:`experiments.sweep_engine` (the data;
training is :mod:`saxe.batched`, the one home of the batched engine), :mod:`experiments.sweep_theory` (the
batched theories, calls into :mod:`theory.state`), :mod:`experiments.sweep_status` (run statuses and stability
warnings), :mod:`experiments.sweep_figures` (the phase diagram), :mod:`experiments.sweep_merge` (``--merge``) and
:mod:`experiments.sweep_dask` (``--dask``).

**Shards.** ``--shard i/n`` keeps the runs with ``index % n == i``: the n shards are disjoint and cover the grid.
Shard files get their own names (``sweep.shard-i-of-n.csv``, ``sweep.shard-i-of-n.json``,
``phase_diagram.shard-i-of-n.png``), so a SLURM array can write every shard into one ``--out``. Each ``.json`` is
a completion marker (``"complete": false`` from the start, ``true`` once the last row is written);
``saxe sweep --out DIR --merge`` joins the shards and exits 1, naming them, if any is missing or incomplete
(``--partial`` merges anyway and marks the result partial), see :mod:`experiments.sweep_merge`.

**Many machines.** ``--dask local[:N]`` runs the chunks on a local Dask cluster of N worker processes,
``--dask tcp://HOST:PORT`` on a running scheduler (SLURM via dask-jobqueue: README); rows are identical to a
single-process sweep, see :mod:`experiments.sweep_dask`.

**Runs.** Data: the tutorial's tree (``saxe.generate_hsd(n_features=--features, rng=--data-seed)``), or
``--data items.csv`` (one-hot item inputs). A run's init is bit for bit that of ``saxe.initializer_`` with its
seed (:mod:`saxe.batched`), so batching, shards, workers and resume never change a row (on the CPU the numbers
are even bit-identical: per-run arithmetic does not depend on the batch). Training is full-batch SGD on
``nn.MSELoss()`` for ``--epochs`` updates in ``--dtype`` (float64 by default), ``--threads`` torch and BLAS
threads (default 1: small matrices, and a shared machine stalls multi-threaded BLAS badly), on ``--device``
(``cuda`` moves the batched engine to the GPU; the theory stays on the CPU in float64).

**Engines** (``--engine``): ``reduced`` (the exact reduced-coordinate SGD, batched), ``autograd``
(``saxe.train`` per run) or ``auto`` (default: ``reduced`` where it applies); the ``engine`` column says which
one ran each row. A diverging run is recorded with ``diverged=True`` and the sweep goes on.

**Files** (all through :mod:`experiments.report`'s atomic writers): after every chunk the whole CSV is rewritten
(in grid order) to a temp file and renamed over ``sweep.csv``, so an interrupted sweep leaves only complete rows
and ``--resume`` skips the run_ids already there, whichever way they were computed (it refuses a file made with
other data, epochs or dtype). Without ``--resume`` an existing, non-empty ``sweep.csv`` is an error, and a folder
holding anything but a sweep's files (hidden files aside) is refused (exit 2). With ``--dask`` the scheduler is
reached (or the local cluster started) after those checks and before anything is written. At the end:
``phase_diagram.png`` (:mod:`experiments.sweep_figures`) and ``sweep.json`` (the command, counts, timings,
versions, ``"complete": true``).

Batches: runs of one (depth, hidden) in grid order, ``--batch`` at a time, capped so that the per-epoch records
of a batch (measured and predicted singular values, the exact M_k) stay below ~1 GiB.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from saxe.train import torch_threads

from .cli import MAX_SEED, OutputError, UsageError
from .progress import items_bar
from .report import package_versions, write_json

# Re-exported: tests and other code use these names from ``experiments.sweep``. ``run`` looks up ``train_batch``
# and ``theory_batch`` here, so monkeypatching ``experiments.sweep.train_batch`` takes effect.
from .sweep_engine import (  # noqa: F401
    BatchTraining,
    InitCache,
    Problem,
    init_weights,
    layer_sigmas,
    load_problem,
    train_batch,
)
from .sweep_grid import (  # noqa: F401
    BASE_COLUMNS,
    HALF_KINDS,
    THEORIES,
    Run,
    build_grid,
    columns,
    existing_rows,
    fmt,
    make_rows,
    output_names,
    parse_shard,
    read_rows,
    shard_runs,
    write_rows,
)
from .sweep_status import STATUSES, stability_warnings
from .sweep_theory import decoupled_predictions, exact_modes_batch, theory_batch  # noqa: F401

ENGINES = ("auto", "reduced", "autograd")
#: malloc_trim after this many new seeds (each leaves ~10 MB of freed N_out-sized temporaries; a trim costs ~1 ms).
SEEDS_PER_RELEASE = 4
#: Largest memory (bytes) the per-epoch records of one batch may take (float64: measured singular values, the
#: exact trajectory M_k (r × r per epoch) and the three predictions); --batch is lowered to fit.
BATCH_RECORD_BYTES = 1 << 30


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lr", type=float, nargs="+", default=[50.0, 100.0], help="learning rates (default 50 100)")
    p.add_argument("--gamma", type=float, nargs="+", default=[1e-12, 1e-6, 1e-3, 1.0],
                   help="init scales γ (default 1e-12 1e-6 1e-3 1)")
    p.add_argument("--depth", type=int, nargs="+", default=[2], help="numbers of weight matrices (default 2)")
    p.add_argument("--hidden", type=int, nargs="+", default=[30], help="hidden widths (default 30)")
    p.add_argument("--seeds", type=int, default=16, help="seeds per configuration (default 16)")
    p.add_argument("--seed-start", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--epochs", type=int, default=250, help="SGD updates per run (default 250)")
    p.add_argument("--out", default="sweep_out", help="output folder (default sweep_out)")
    p.add_argument("--data", help="items × features CSV instead of the tutorial's tree data")
    p.add_argument("--features", type=int, default=10000, help="tree features (default 10000)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the tree data (default 0)")
    p.add_argument("--engine", choices=ENGINES, default="auto", help="training engine (default auto)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="training precision")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device for training (default cpu)")
    p.add_argument("--batch", type=int, default=64, help="runs trained at once and written per chunk (default 64)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--shard", help="i/n: run only the grid points with index %% n == i")
    p.add_argument("--resume", action="store_true", help="keep the rows already in the CSV and skip their runs")
    p.add_argument("--merge", action="store_true",
                   help="merge the shard files in --out into sweep.csv and draw the phase diagram (no training); "
                        "exit 1 if a shard is missing or incomplete")
    p.add_argument("--partial", action="store_true",
                   help="with --merge: merge even if shards are missing or incomplete (marked partial in sweep.json)")
    p.add_argument("--dask", metavar="local[:N]|tcp://HOST:PORT",
                   help="run the chunks as Dask tasks: a local cluster of N worker processes (default: one per "
                        "core) or an existing scheduler (needs the [distributed] extra)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def _check_args(args) -> tuple[int, int] | None:
    for v in args.lr:
        if not (math.isfinite(v) and v > 0):
            raise UsageError(f"--lr values must be finite and > 0, got {v}")
    for v in args.gamma:
        if not (math.isfinite(v) and v >= 0):
            raise UsageError(f"--gamma values must be finite and >= 0, got {v}")
    for name, values in (("depth", args.depth), ("hidden", args.hidden)):
        for v in values:
            if v < 1:
                raise UsageError(f"--{name} values must be >= 1, got {v}")
    for name, lo in (("seeds", 1), ("seed_start", 0), ("epochs", 1), ("features", 1), ("data_seed", 0),
                     ("batch", 1), ("threads", 1)):
        v = getattr(args, name)
        if v < lo:
            raise UsageError(f"--{name.replace('_', '-')} must be >= {lo}, got {v}")
    for name, last in (("seed-start", args.seed_start + args.seeds - 1), ("data-seed", args.data_seed)):
        if last > MAX_SEED:
            raise UsageError(f"--{name}: the seeds must stay <= {MAX_SEED} (64-bit), got {last}"
                             + (" as the last seed (--seed-start + --seeds − 1)" if name == "seed-start" else ""))
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False); "
                         "use --device cpu")
    if args.merge and (args.shard or args.resume or args.dask):
        raise UsageError("--merge takes no --shard, --resume or --dask")
    if args.partial and not args.merge:
        raise UsageError("--partial applies to --merge only")
    if args.dask is not None:
        from .sweep_dask import _import_distributed, parse_dask

        parse_dask(args.dask)  # a malformed address or a missing extra is an error before anything is written
        _import_distributed()
    return parse_shard(args.shard)


#: The names a sweep (or a shard of one) writes into --out; any other file there is not a sweep's.
SWEEP_FILE = re.compile(r"(sweep(\.shard-\d+-of-\d+)?\.(csv|json)|phase_diagram(\.shard-\d+-of-\d+)?\.png)")
#: An atomic writer's temp file of one of those names (``.NAME.XXXX.tmp``, left by a killed run).
SWEEP_TEMP = re.compile(r"\.(?P<name>.+)\.[^.]+\.tmp")


def _foreign(out: Path) -> list[str]:
    """Names in --out that no sweep writes (the shards of a sweep share a folder, so only other files count)."""
    def ours(name: str) -> bool:
        m = SWEEP_TEMP.fullmatch(name)
        return bool(SWEEP_FILE.fullmatch(m.group("name") if m else name))

    # hidden files are left out: a sweep never writes over one (the system's .DS_Store, a killed write probe's file)
    return sorted(p.name for p in out.iterdir() if not (ours(p.name) or p.name.startswith(".")))


def _check_out(out: Path) -> None:
    """--out a folder (or not there yet) holding nothing but a sweep's files: a sweep never writes beside other
    files (a user's notes, another command's results), while the shards of one sweep share a folder."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    if out.is_dir():
        other = _foreign(out)
        if other:
            what = "entry that is" if len(other) == 1 else "entries that are"
            raise UsageError(f"--out {out}: holds {len(other)} {what} not a sweep's (e.g. {other[0]!r}); a sweep "
                             "writes into a new or empty folder, or one holding only sweep files (sweep.csv, "
                             "sweep.json, phase_diagram.png and their shard forms sweep.shard-i-of-n.csv, …): "
                             "choose another --out")


def _prepare_out(out: Path) -> None:
    """--out (already checked by :func:`_check_out`) made and probed for writing."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # an environment problem (exit 4), as for verify and tutorial
        raise OutputError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from None
    from .outdir import probe_writable

    probe_writable(out)


def _batches(pending: list[Run], size: int) -> list[list[Run]]:
    groups: dict[tuple[int, int], list[Run]] = {}
    for run in pending:
        groups.setdefault(run.shape, []).append(run)
    return [g[i:i + size] for g in groups.values() for i in range(0, len(g), size)]


def compute_chunk(problem, cache, runs: list[Run], n_epochs: int, engine: str, dtype: torch.dtype,
                  device: torch.device) -> tuple[list[dict], dict]:
    """Train and predict one chunk (runs of one shape): its CSV rows and timings. The single-process loop and the
    Dask workers (:mod:`experiments.sweep_dask`) both call this, so their rows are identical."""
    t0 = time.perf_counter()
    for i, run in enumerate(runs):  # each new seed's N_out-sized temporaries leave heap pages free: hand them back
        if cache.seed_is_new(run):
            cache.seed(run)
            if i % SEEDS_PER_RELEASE == SEEDS_PER_RELEASE - 1:
                _release_heap()
    tr = train_batch(problem, cache, runs, n_epochs, engine=engine, dtype=dtype, device=device)
    t1 = time.perf_counter()
    preds = theory_batch(problem, cache, runs, n_epochs, {})  # decoupled theory: shared by a chunk's seeds
    rows = make_rows(problem, runs, tr, preds, n_epochs, str(dtype).replace("torch.", ""), str(device))
    return rows, {"train_s": t1 - t0, "theory_s": time.perf_counter() - t1}


def _local_chunks(problem, batches, args, dtype, device):
    cache = InitCache(problem, dtype)
    shape = None
    for runs in batches:
        if shape is not None and runs[0].shape != shape:
            cache.drop(shape)
        shape = runs[0].shape
        yield compute_chunk(problem, cache, runs, args.epochs, args.engine, dtype, device)


def _sorted(rows: list[dict], order: dict[str, int]) -> list[dict]:
    """Rows in grid order (chunks may finish in any order on Dask workers); unknown run_ids keep their place last."""
    return sorted(rows, key=lambda row: order.get(row["run_id"], len(order)))


def _release_heap() -> None:
    """Give the C heap's free pages back to the system (glibc ``malloc_trim``; a no-op elsewhere). Each chunk
    allocates and frees many N_out-sized temporaries (the per-seed draws and QRs) and the pages they leave free
    would otherwise stay resident: measured peak RSS of a 1024-run sweep 457–500 MB without, see bench_sweep with.
    (Fixing the mmap threshold instead, mallopt(M_MMAP_THRESHOLD, 256 KiB), bounds RSS too but maps and zeroes every
    large temporary afresh: measured 2× slower.)"""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def run(args) -> int:
    shard = _check_args(args)
    if args.merge:
        from .sweep_merge import merge

        return merge(args)
    seeds = range(args.seed_start, args.seed_start + args.seeds)
    grid = build_grid(args.depth, args.hidden, args.lr, args.gamma, seeds)
    mine = shard_runs(grid, shard)
    problem = load_problem(args.data, args.features, args.data_seed)  # bad data → exit 2, nothing written
    if args.engine == "reduced":
        bad = [r for r in mine if not problem.reducible(r)]
        if bad:
            raise UsageError(f"--engine reduced needs γ > 0 and N_out > N_in + N_(L−1) (here "
                             f"N_in={problem.X.shape[1]}, N_out={problem.Y.shape[1]}); e.g. run {bad[0].run_id} "
                             "does not qualify: use --engine auto or autograd")
    for depth, hidden, gamma in sorted({(r.depth, r.hidden, r.gamma) for r in mine if r.gamma > 0}):
        try:  # a γ whose init overflows float64 is bad input, refused before anything is written
            problem.a0(Run(0, depth, hidden, 1.0, gamma, 0))
        except ValueError as exc:
            raise UsageError(f"--gamma {gamma!r} (depth {depth}, hidden {hidden}): {exc}") from None
    warnings = stability_warnings(problem.X, problem.Y, sorted({(r.depth, r.hidden, r.lr) for r in mine}))
    for text in warnings:  # never hidden: these grid points cannot give an exact, settled run
        print(f"saxe sweep: warning: {text}", file=sys.stderr)
    out = Path(args.out)
    _check_out(out)  # these refusals read --out only, and come before a Dask cluster is started for nothing
    names = output_names(shard)
    rows = existing_rows(out / names["csv"], columns(problem.n_modes), args.resume, problem, args.epochs, args.dtype)
    foreign = sorted({row["run_id"] for row in rows} - {r.run_id for r in mine})
    if foreign:  # rows of another grid would be counted as resumed and the sweep called complete
        raise UsageError(f"--resume: {out / names['csv']} holds {len(foreign)} runs that are not in this grid "
                         f"(e.g. {foreign[0]}): it was written by a sweep with other --depth/--hidden/--lr/--gamma/"
                         "--seeds/--seed-start or --shard; rerun with that grid, or choose another --out")
    t_start = time.perf_counter()  # the sweep's total time includes starting (or reaching) a Dask cluster
    # the Dask client before any file: an unreachable scheduler or a cluster that cannot start leaves nothing behind
    with torch_threads(args.threads), _client(args) as client:
        return _execute(args, shard, grid, mine, problem, warnings, client, rows, t_start)


@contextmanager
def _client(args):
    """The ``distributed.Client`` of ``--dask`` (None without it), open for the whole sweep."""
    if args.dask is None:
        yield None
        return
    from .sweep_dask import client_for

    with client_for(args.dask, args.threads) as client:
        yield client


def _execute(args, shard, grid: list[Run], mine: list[Run], problem, warnings: list[str], client, rows: list[dict],
             t_start: float) -> int:
    """The sweep proper: --out made, the marker written, chunks computed and written, the marker completed."""
    out = Path(args.out)
    names = output_names(shard)
    header = columns(problem.n_modes)
    _prepare_out(out)
    done = {row["run_id"] for row in rows}
    pending = [r for r in mine if r.run_id not in done]
    order = {r.run_id: r.index for r in grid}
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    device = torch.device(args.device)
    r = problem.n_modes
    batch = max(1, min(args.batch, BATCH_RECORD_BYTES // (8 * (args.epochs + 1) * (r * r + 4 * r))))
    batches = _batches(pending, batch)
    base = {"command": {k: v for k, v in vars(args).items() if not k.startswith("_")}, "data": problem.name,
            "n_grid": len(grid), "n_expected": len(mine), "shard": args.shard, "batch": batch, "csv": names["csv"],
            "warnings": warnings}
    # the completion marker: "complete": false until the last row is written (a killed run leaves it so)
    write_json(out / names["json"], {**base, "complete": False, "n_rows": len(rows), "versions": package_versions()})
    timing = {"train_s": 0.0, "theory_s": 0.0, "write_s": 0.0}
    n_new = 0
    if client is None:
        chunks = _local_chunks(problem, batches, args, dtype, device)
    else:
        from .sweep_dask import map_chunks

        chunks = map_chunks(client, problem, batches, args.epochs, args.engine, args.dtype, args.device, args.threads)
    for new, times in items_bar(chunks, "sweep chunks", args.quiet, total=len(batches)):
        rows.extend(new)
        n_new += len(new)
        _release_heap()
        timing["train_s"] += times["train_s"]
        timing["theory_s"] += times["theory_s"]
        t0 = time.perf_counter()
        rows = _sorted(rows, order)
        write_rows(out / names["csv"], header, rows)
        timing["write_s"] += time.perf_counter() - t0
    if not (out / names["csv"]).exists():  # nothing to run (empty shard): still leave a readable file
        write_rows(out / names["csv"], header, rows)
    from .sweep_figures import phase_diagram

    t0 = time.perf_counter()
    figure = phase_diagram(rows, out / names["figure"])
    timing["figure_s"] = time.perf_counter() - t0
    n_div = sum(row["diverged"] == "True" for row in rows)
    by_status = {st: sum(row.get("status") == st for row in rows) for st in STATUSES}
    timing["total_s"] = time.perf_counter() - t_start
    summary = {**base, "complete": True, "n_shard": len(mine), "n_rows": len(rows), "n_new": n_new,
               "n_resumed": len(rows) - n_new, "n_diverged": n_div, "statuses": by_status,
               "n_chunks": len(batches), "dask": args.dask,
               "timings": timing, "figure": figure.name if figure else None, "versions": package_versions()}
    write_json(out / names["json"], summary)  # last: marks the sweep (or shard) complete
    if not args.quiet:
        counts = ", ".join(f"{n} {st.replace('_', ' ')}" for st, n in by_status.items())
        print(f"saxe sweep: {n_new} runs done, {len(rows) - n_new} resumed ({counts}); "
              f"{out / names['csv']} ({timing['total_s']:.1f} s: train {timing['train_s']:.1f} s, "
              f"theory {timing['theory_s']:.1f} s)")
    return 0
