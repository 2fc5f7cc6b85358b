r"""The grid of ``saxe sweep`` and its CSV: the runs, their shards, the columns, the rows and reading/writing them.

**Grid.** Each axis is deduplicated and sorted ascending; the grid is the product in the fixed order
depth → hidden → lr → γ → seed (seeds ``--seed-start … --seed-start + --seeds − 1``), and a run's ``index`` is
its position in that order. Depth 1 (linear regression) has no hidden layer: its ``hidden`` is 0 whatever
``--hidden`` says. Every hidden layer of a run has the same width. A run's ``run_id`` is
``d{depth}-h{hidden}-lr{lr!r}-g{gamma!r}-s{seed}``: stable across grids, shards and resumes.

**Shards.** ``--shard i/n`` keeps the runs with ``index % n == i``: the n shards are disjoint and cover the grid
(:func:`shard_runs`); :func:`output_names` gives each shard its own file names.

**Columns** of ``sweep.csv`` (csv module, one row per run, pandas-readable; NaN is an empty cell, "never" is
``inf``): run_id, data (the data set: ``hsd-f{features}-s{data_seed}`` or ``{file stem}-{sha256[:12]}``), depth,
hidden, lr, gamma, seed, eta, a0 (a priori), n_epochs, engine, dtype, device, final_loss (after the last
update), diverged, diverged_epoch, status (``converged``, ``learning``, ``not_learned`` or ``diverged``) and
learned_fraction ((L₀ − L_T)/(L₀ − L_best), empty if diverged; :mod:`experiments.sweep_status`), err_continuous,
err_discrete, err_exact (``experiments.metrics.modes_error``: max over epochs and modes of |pred − meas|/s_max,
singular values sorted descending; a number for every run that did not diverge, but agreement only where the
status is ``converged`` or ``learning``: a run at its saddle matches every theory's a = 0 to rounding),
half_measured_1..r, half_continuous_1..r, half_discrete_1..r, half_exact_1..r (``metrics.half_learning_epochs``:
first epoch at which the α-th singular value reaches s_α/2), batch_seconds and batch_runs (the wall time of the
batch that trained the run and how many runs it trained together: runs are trained in batches, so a run's own cost
is batch_seconds / batch_runs; an autograd run is its own batch of 1).

**Resume.** :func:`existing_rows` returns the rows already in a sweep's CSV for ``--resume`` (refusing a file made
with other data, epochs or dtype), and refuses to clobber a non-empty one without ``--resume``.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import metrics as M
from . import sweep_status as ST
from .cli import UsageError
from .report import atomic_write

if TYPE_CHECKING:  # annotations only (sweep_engine imports this module)
    from .sweep_engine import BatchTraining, Problem

THEORIES = ("continuous", "discrete", "exact")
BASE_COLUMNS = ("run_id", "data", "depth", "hidden", "lr", "gamma", "seed", "eta", "a0", "n_epochs", "engine", "dtype",
                "device", "final_loss", "diverged", "diverged_epoch", "status", "learned_fraction", "err_continuous",
                "err_discrete", "err_exact")
HALF_KINDS = ("measured",) + THEORIES


def columns(n_modes: int) -> list[str]:
    """The CSV header for data with ``n_modes`` = min(N_in, N_out) singular modes."""
    cols = list(BASE_COLUMNS)
    for kind in HALF_KINDS:
        cols += [f"half_{kind}_{a}" for a in range(1, n_modes + 1)]
    return cols + ["batch_seconds", "batch_runs"]


# ------------------------------------------------------------------------------------------------ grid
@dataclass(frozen=True)
class Run:
    """One grid point; ``index`` is its position in the full grid (see module docstring)."""

    index: int
    depth: int
    hidden: int
    lr: float
    gamma: float
    seed: int

    @property
    def run_id(self) -> str:
        return f"d{self.depth}-h{self.hidden}-lr{self.lr!r}-g{self.gamma!r}-s{self.seed}"

    @property
    def hidden_sizes(self) -> list[int]:
        return [self.hidden] * (self.depth - 1)

    @property
    def shape(self) -> tuple[int, int]:
        return self.depth, self.hidden


def build_grid(depths, hiddens, lrs, gammas, seeds) -> list[Run]:
    """The full grid in its fixed order: depth → hidden → lr → γ → seed, each axis sorted and deduplicated."""
    depths, hiddens = sorted(set(int(d) for d in depths)), sorted(set(int(h) for h in hiddens))
    lrs, gammas = sorted(set(float(v) for v in lrs)), sorted(set(float(v) for v in gammas))
    seeds = sorted(set(int(s) for s in seeds))
    runs: list[Run] = []
    for d in depths:
        for h in (hiddens if d > 1 else [0]):
            for lr in lrs:
                for g in gammas:
                    for s in seeds:
                        runs.append(Run(len(runs), d, h, lr, g, s))
    return runs


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` → (i, n) with 0 ≤ i < n; ``None`` → ``None``; anything else → :class:`UsageError`."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise UsageError(f"--shard must be i/n with integers 0 <= i < n (e.g. 0/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def shard_runs(runs: list[Run], shard: tuple[int, int] | None) -> list[Run]:
    """The runs of shard (i, n): those whose grid index is i modulo n."""
    if shard is None:
        return list(runs)
    i, n = shard
    return [r for r in runs if r.index % n == i]


def output_names(shard: tuple[int, int] | None) -> dict[str, str]:
    """File names in --out for an unsharded sweep or shard (i, n)."""
    if shard is None:
        suffix = ""
    else:
        i, n = shard
        suffix = f".shard-{i:0{len(str(n - 1))}d}-of-{n}"
    return {"csv": f"sweep{suffix}.csv", "json": f"sweep{suffix}.json", "figure": f"phase_diagram{suffix}.png"}


# ------------------------------------------------------------------------------------------------ rows
def fmt(v) -> str:
    """A CSV cell: shortest round-trip float, ``inf``, or empty for NaN/None."""
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if math.isnan(v):
        return ""
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return repr(v)


def _half(values: np.ndarray) -> list[str]:
    return [fmt(int(v)) if np.isfinite(v) else fmt(v) for v in values]


def make_rows(problem: Problem, runs: list[Run], tr: BatchTraining, preds: dict[str, np.ndarray], n_epochs: int,
              dtype: str, device: str) -> list[dict[str, str]]:
    """One CSV row per run (module docstring): from ``tr`` the losses (R, T), modes (R, T, r) and diverged_at;
    the status from :func:`experiments.sweep_status.classify` against the least loss its width allows."""
    s, r = problem.s, problem.n_modes
    best = ST.reachable_losses(problem.X, problem.Y, [run.hidden if run.depth > 1 else None for run in runs])
    rows = []
    for i, run in enumerate(runs):
        diverged = bool(tr.diverged_at[i] >= 0)
        status = ST.classify(tr.losses[i], float(best[i]), diverged)
        row = {"run_id": run.run_id, "data": problem.name, "depth": fmt(run.depth), "hidden": fmt(run.hidden),
               "lr": fmt(run.lr), "gamma": fmt(run.gamma), "seed": fmt(run.seed), "eta": fmt(problem.eta(run.lr)),
               "a0": fmt(problem.a0(run)), "n_epochs": fmt(n_epochs), "engine": tr.engines[i], "dtype": dtype,
               "device": device, "final_loss": "" if diverged else fmt(tr.losses[i, -1]), "diverged": fmt(diverged),
               "diverged_epoch": fmt(int(tr.diverged_at[i])) if diverged else "", "status": status.status,
               "learned_fraction": fmt(status.learned_fraction),
               "batch_seconds": fmt(float(tr.batch_seconds[i])), "batch_runs": fmt(int(tr.batch_runs[i]))}
        meas = tr.modes[i]
        halves = {"measured": np.full(r, np.nan)}
        for th in THEORIES:
            row[f"err_{th}"] = ""
            halves[th] = np.full(r, np.nan)
        if not diverged:
            halves["measured"] = M.half_learning_epochs(meas, s)
            for th in THEORIES:
                pred = preds[th][i]
                if np.isfinite(pred).all():
                    row[f"err_{th}"] = fmt(M.modes_error(pred, meas, s))
                    halves[th] = M.half_learning_epochs(pred, s)
        for kind in HALF_KINDS:
            for a, v in enumerate(_half(halves[kind]), start=1):
                row[f"half_{kind}_{a}"] = v
        rows.append(row)
    return rows


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows (as strings) of a sweep CSV; :class:`UsageError` if it does not parse."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path}: cannot be read as a sweep CSV ({exc})") from None
    if "run_id" not in header or any(None in row or None in row.values() for row in rows):
        raise UsageError(f"{path}: not a complete sweep CSV (missing run_id column or ragged rows)")
    return header, rows


def write_rows(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    """Rewrite the whole CSV atomically (temp file + rename)."""
    with atomic_write(path) as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        for row in rows:
            w.writerow([row.get(c, "") for c in header])


def sweep_identity(row: dict[str, str]) -> tuple[str, str, str]:
    """What makes rows parts of one sweep: the data, the number of epochs and the dtype (as CSV strings)."""
    return row["data"], row["n_epochs"], row["dtype"]


def existing_rows(path: Path, header: list[str], resume: bool, problem: Problem, epochs: int, dtype: str):
    """Rows already in ``path`` (only with --resume; refuse a foreign or clobbered file)."""
    if not path.exists():
        return []
    old_header, rows = read_rows(path)
    if not resume:
        if rows:
            raise UsageError(f"{path} already holds {len(rows)} runs: pass --resume to continue that sweep, or "
                             "choose another --out")
        return []
    if old_header != header:
        raise UsageError(f"{path}: its columns differ from this sweep's (other data, or a CSV from an older "
                         "version without the status columns); choose another --out")
    for row in rows:
        if sweep_identity(row) != (problem.name, str(epochs), dtype):
            raise UsageError(f"{path} holds runs of another sweep (data={row['data']}, epochs={row['n_epochs']}, "
                             f"dtype={row['dtype']}; this one: data={problem.name}, epochs={epochs}, dtype={dtype}); "
                             "choose another --out")
    return rows


