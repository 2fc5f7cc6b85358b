r"""``saxe sweep``: map where each theory holds over depth × width × lr × init scale × seeds, fast and exact.

Example (the tutorial's regimes, 128 runs)::

    saxe sweep --lr 50 100 --gamma 1e-12 1e-6 1e-3 1 --depth 2 --hidden 30 --seeds 16 --epochs 250 --out DIR

**Grid.** Each axis is deduplicated and sorted ascending; the grid is the product in the fixed order
depth → hidden → lr → γ → seed (seeds ``--seed-start … --seed-start + --seeds − 1``), and a run's ``index`` is
its position in that order. Depth 1 (linear regression) has no hidden layer: its ``hidden`` is 0 whatever
``--hidden`` says. Every hidden layer of a run has the same width. A run's ``run_id`` is
``d{depth}-h{hidden}-lr{lr!r}-g{gamma!r}-s{seed}``: stable across grids, shards and resumes.

**Shards.** ``--shard i/n`` keeps the runs with ``index % n == i``: the n shards are disjoint and cover the grid.
Shard files get their own names (``sweep.shard-i-of-n.csv``, ``sweep.shard-i-of-n.json``,
``phase_diagram.shard-i-of-n.png``), so a SLURM array can write every shard into one ``--out``; they merge by
concatenation (every file has the same header), or with ``saxe sweep --out DIR --merge`` (which checks that no
run appears twice and also draws the full phase diagram).

**Runs.** Data: the tutorial's tree (``saxe.generate_hsd(n_features=--features, rng=--data-seed)``), or
``--data items.csv`` (one-hot item inputs). A run's init depends only on its shapes, γ, seed and dtype: it is
exactly ``saxe.initializer_(make_net(...).to(dtype), γ, generator=torch.Generator().manual_seed(seed))``
(bit for bit; see :func:`init_weights`), so batching, shards and resume never change a row (on the CPU the
numbers are even bit-identical: per-run arithmetic does not depend on the batch). Training is full-batch SGD on
``nn.MSELoss()`` for ``--epochs`` updates in ``--dtype`` (float64 by default), ``--threads`` torch threads
(default 1: small matrices, and a shared machine stalls 2-thread torch badly), on ``--device`` (``cuda`` moves
the batched engine to the GPU; the theory stays on the CPU in float64).

**Engines** (``--engine``; the ``engine`` column says which one ran each row):

* ``reduced``: the exact reduced-coordinate SGD of :func:`saxe.engines.reduced_sgd`, batched over up to
  ``--batch`` runs of one shape with per-run lr. Runs that share a seed (and shapes) share the directions of
  their init (W_l = σ_l(γ)·Z_l, Z_l drawn once per seed), so the N_out-sized work is done once per seed: with
  q1 an orthonormal basis of span(Σʸˣ) (N_out × N_in) and W_L = q1 A + q2 C (q2 ⟂ q1, C from a QR of the part of
  Z_L outside span q1), the whole problem lives in the N_in + N_h coordinates [A; C], where the targets are
  [Y q1, 0] for *every* seed (Y has no component along q2 since X is one-hot). ``reduced_sgd`` then runs on
  those small shared targets with ``reduction='sum'`` and lr/(P·N_out), which is the same arithmetic as the
  mean MSE, and losses are mapped back. Exact in exact arithmetic; equal to autograd to ~1e-12 in float64
  (tested ≤ 1e-9). It needs N_out > N_in + N_{L−1} and γ > 0 (a zero init gives no basis).
* ``autograd``: ``saxe.train(..., engine="autograd")`` per run (the plain reference, always available).
* ``auto`` (default): ``reduced`` where it applies, else ``autograd`` for that run.

A diverging run (loss non-finite or above ``saxe.DIVERGENCE_FACTOR`` × max(initial loss, mean Y²), the same
test in both engines) is recorded with ``diverged=True`` and ``diverged_epoch`` (the number of updates done when
it was detected); its other results are empty and the sweep goes on. In a batch, a diverged run is frozen and
the others' numbers are unchanged (per-run arithmetic does not depend on the batch; tested).

**Theories** (per run, as :func:`theory.predictor` builds them): ``continuous`` (closed form) and ``discrete``
(exact scalar SGD map), both from the a priori a₀ = ``theory.expected_initial_mode_strength(γ, sizes)`` (0 for
γ = 0); ``coupled`` from the run's actual init: depth 2 ``M_0 = ZᵀZ`` (``initial_mode_matrix``) and the matrix map
``coupled_modes_discrete``, other depths ``project_weights`` (with the complement directions) and
``projected_modes_discrete``. Both matrix maps are evaluated here batched over the runs
(:func:`coupled_modes_batch`, :func:`projected_modes_batch`: the same arithmetic, tested against the theory
functions to 1e-12; looping the theory functions costs ~20–40 ms per run, more than the training). A theory
that diverges (η beyond its stable range) leaves empty cells, never a crash. U, s, V and the zero modes
(rounding-level s set to 0) are those of ``theory.predictor``.

**Columns** of ``sweep.csv`` (csv module, one row per run, pandas-readable; NaN is an empty cell, "never" is
``inf``): run_id, data (the data set: ``hsd-f{features}-s{data_seed}`` or ``{file stem}-{sha256[:12]}``), depth,
hidden, lr, gamma, seed, eta, a0 (a priori), n_epochs, engine, dtype, device, final_loss (after the last
update), diverged, diverged_epoch, err_continuous, err_discrete, err_coupled (``experiments.metrics.modes_error``:
max over epochs and modes of |pred − meas|/s_α, singular values sorted descending), half_measured_1..r,
half_continuous_1..r, half_discrete_1..r, half_coupled_1..r (``metrics.half_learning_epochs``: first epoch at
which the α-th singular value reaches s_α/2), train_seconds (the run's share of its batch's training time).

**Files** (all through :mod:`experiments.report`'s atomic writers): after every batch ("chunk") the whole CSV is
rewritten to a temp file and renamed over ``sweep.csv``, so an interrupted sweep leaves only complete rows and
``--resume`` skips the run_ids already there (it refuses a file made with other data, epochs or dtype). Without
``--resume`` an existing, non-empty ``sweep.csv`` is an error. At the end: ``phase_diagram.png``
(:mod:`experiments.sweep_figures`) and ``sweep.json`` (the command, counts, timings, versions).

Batches: runs of one (depth, hidden) in grid order, ``--batch`` at a time, capped so that the per-epoch records
of a batch (measured and predicted singular values, the coupled M_k) stay below ~1 GiB.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import saxe
import theory
from saxe.engines import reduced_sgd
from saxe.train import torch_threads

from . import metrics as M
from .cli import UsageError
from .progress import items_bar
from .report import atomic_write, package_versions, write_json

THEORIES = ("continuous", "discrete", "coupled")
ENGINES = ("auto", "reduced", "autograd")
#: Largest memory (bytes) the per-epoch records of one batch may take (float64: measured singular values, the
#: coupled trajectory M_k (r × r per epoch) and the three predictions); --batch is lowered to fit.
BATCH_RECORD_BYTES = 1 << 30
BASE_COLUMNS = ("run_id", "data", "depth", "hidden", "lr", "gamma", "seed", "eta", "a0", "n_epochs", "engine", "dtype",
                "device", "final_loss", "diverged", "diverged_epoch", "err_continuous", "err_discrete", "err_coupled")
HALF_KINDS = ("measured",) + THEORIES


def columns(n_modes: int) -> list[str]:
    """The CSV header for data with ``n_modes`` = min(N_in, N_out) singular modes."""
    cols = list(BASE_COLUMNS)
    for kind in HALF_KINDS:
        cols += [f"half_{kind}_{a}" for a in range(1, n_modes + 1)]
    return cols + ["train_seconds"]


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


# ------------------------------------------------------------------------------------------------ data
@dataclass
class Problem:
    """The data set and its mode decomposition (float64 numpy; U, s, V as :func:`theory.predictor` has them,
    rounding-level singular values set to 0)."""

    X: np.ndarray
    Y: np.ndarray
    name: str
    U: np.ndarray = field(init=False)
    s: np.ndarray = field(init=False)
    V: np.ndarray = field(init=False)

    def __post_init__(self):
        self.reference = theory.predictor(self.X, self.Y, 1.0, depth=2, a0=0.0)
        ref = self.reference
        self.U, self.s, self.V = np.array(ref.U), np.array(ref.s), np.array(ref.V)
        if self.s.size == 0 or self.s[0] <= 0:
            raise UsageError(f"{self.name}: every feature is zero, there is nothing to learn")

    @property
    def n_modes(self) -> int:
        return self.s.size

    def sizes(self, run: Run) -> list[int]:
        return [self.X.shape[1], *run.hidden_sizes, self.Y.shape[1]]

    def eta(self, lr: float) -> float:
        return theory.learning_rate_to_eta(lr, *self.Y.shape)

    def a0(self, run: Run) -> float:
        return 0.0 if run.gamma == 0 else float(theory.expected_initial_mode_strength(run.gamma, self.sizes(run)))

    def reducible(self, run: Run) -> bool:
        """The reduced engine applies: N_out > N_in + N_{L−1} (it saves work and its basis exists) and γ > 0."""
        n_last = run.hidden if run.depth > 1 else self.X.shape[1]
        return run.gamma > 0 and self.Y.shape[1] > self.X.shape[1] + n_last


def load_problem(data: str | None, features: int, data_seed: int) -> Problem:
    if data is None:
        X, Y = saxe.generate_hsd(n_features=features, rng=data_seed)
        return Problem(X, Y, f"hsd-f{features}-s{data_seed}")
    table = saxe.load_items_csv(data)  # DataFileError (a ValueError) → exit 2
    digest = hashlib.sha256(Path(data).read_bytes()).hexdigest()[:12]
    return Problem(table.inputs, table.features, f"{table.name}-{digest}")


# ------------------------------------------------------------------------------------------------ init
def layer_sigmas(sizes: list[int], gamma: float) -> list[float]:
    """σ_l = γ/√(n_in + n_out) of :func:`saxe.initializer_`, for layer sizes [N_in, N_h…, N_out]."""
    return [gamma / math.sqrt(a + b) for a, b in zip(sizes[:-1], sizes[1:])]


def _draw(sizes: list[int], seed: int, dtype: torch.dtype, sigmas: list[float]) -> list[torch.Tensor]:
    """Weights [W_1 … W_L] (out, in) drawn as ``initializer_`` draws them (one generator, forward order)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for (n_in, n_out), sigma in zip(zip(sizes[:-1], sizes[1:]), sigmas):
        w = torch.empty(n_out, n_in, dtype=dtype)
        out.append(w.zero_() if sigma == 0 else w.normal_(mean=0.0, std=sigma, generator=gen))
    return out


def init_weights(sizes: list[int], gamma: float, seed: int, dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    """A run's initial weights: bit for bit ``saxe.initializer_`` on ``make_net(sizes).to(dtype)`` with a
    ``torch.Generator().manual_seed(seed)`` (tested)."""
    return _draw(sizes, seed, dtype, layer_sigmas(sizes, gamma))


@dataclass
class SeedBasis:
    """What the reduced engine and the coupled theory need from one seed's init directions (float64).

    For float64, torch's ``normal_(0, σ)`` equals σ × ``normal_(0, 1)`` bit for bit, so one unit draw Z_l per seed
    serves every γ (``scales`` = σ_l(γ)); for float32 it does not for small tensors, so the draw is per (seed, γ)
    and the scales are 1. Every field is linear in its layer's scale.
    """

    lower: list[torch.Tensor]  # Z_1 … Z_{L−1} in the training dtype (exact init / scale)
    last_a: np.ndarray | None  # q1ᵀ Z_L (N_in, N_{L−1})                     (reduced engine)
    last_c: np.ndarray | None  # R factor of Z_L − q1 q1ᵀ Z_L (N_{L−1}, N_{L−1})  (reduced engine)
    first_v: np.ndarray  # Z_1 V (N_1, r)  (depth 1: Uᵀ Z_1 V, (r, r))
    last_u: np.ndarray  # Uᵀ Z_L (r, N_{L−1})
    middle: list[np.ndarray]  # Z_2 … Z_{L−1} (float64)
    first_out: np.ndarray | None  # Z_1 Q_in (N_1, q_in): depth ≥ 3, see _complement_block
    last_out: np.ndarray | None  # Q_outᵀ Z_L (q_out, N_{L−1}): depth ≥ 3


def _complement_block(B: torch.Tensor, basis: torch.Tensor) -> np.ndarray:
    """``Qᵀ B`` for Q = ``theory.coupled._complement(B, basis)`` (orthonormal basis of the part of B's columns
    outside span(basis), rounding-level directions dropped with the same threshold), computed without the tall Q:
    ``rest = (I − basis basisᵀ) B = Q_r R`` (thin QR) and the SVD ``R = A Σ Wᵀ`` give ``Qᵀ B = Qᵀ rest = Σ Wᵀ``
    with Q = Q_r A. (Q's sign/rotation differs from the theory's; the projected dynamics are invariant to it.)
    float64 torch in (torch's BLAS is much faster than numpy's here on tall matrices), numpy out."""
    head = basis.mT @ B
    rest = B - basis @ head
    R = torch.linalg.qr(rest, mode="r")[1] if rest.shape[0] > rest.shape[1] else rest
    _, sv, Wt = torch.linalg.svd(R, full_matrices=False)
    # ‖B‖₂ = ‖[basisᵀB; R]‖₂ (orthogonal split of B's columns)
    scale = max(float(torch.linalg.matrix_norm(torch.cat([head, R]), 2)) if B.numel() else 0.0,
                np.finfo(float).tiny)
    keep = sv > 10.0 * np.finfo(float).eps * max(B.shape) * scale  # theory.coupled.RANK_EPS_FACTOR = 10
    return (sv[keep, None] * Wt[keep]).numpy()


class InitCache:
    """Per-seed init directions and their reduced coordinates, shared by the runs of one sweep."""

    def __init__(self, problem: Problem, dtype: torch.dtype):
        self.problem, self.dtype = problem, dtype
        sigma_yx = torch.as_tensor(problem.Y.T @ problem.X, dtype=torch.float64)
        self.q1 = torch.linalg.qr(sigma_yx)[0]  # (N_out, N_in), orthonormal, span ⊇ span Σʸˣ
        y = torch.as_tensor(problem.Y, dtype=torch.float64)
        yq1 = y @ self.q1
        self.y_q1 = yq1
        self.const = float(((y - yq1 @ self.q1.mT) ** 2).sum())  # ‖Y − Y q1 q1ᵀ‖² (0 for one-hot X)
        self.U_t, self.V_t = torch.as_tensor(problem.U), torch.as_tensor(problem.V)
        self._cache: dict[tuple, SeedBasis] = {}

    def scales(self, run: Run) -> list[float]:
        sig = layer_sigmas(self.problem.sizes(run), run.gamma)
        return sig if self.dtype == torch.float64 else [1.0] * len(sig)

    def basis(self, run: Run, reduced: bool) -> SeedBasis:
        key = (run.depth, run.hidden, run.seed) + (() if self.dtype == torch.float64 else (run.gamma,))
        hit = self._cache.get(key)
        if hit is not None and (not reduced or hit.last_c is not None):
            return hit
        sizes = self.problem.sizes(run)
        unit = [1.0] * (len(sizes) - 1) if self.dtype == torch.float64 else layer_sigmas(sizes, run.gamma)
        zs = _draw(sizes, run.seed, self.dtype, unit)
        U, V = self.problem.U, self.problem.V
        z64 = [z.double() for z in zs]
        zl = z64[-1]
        a = c = None
        if reduced:
            a_t = self.q1.mT @ zl
            resid = zl - self.q1 @ a_t
            resid = resid - self.q1 @ (self.q1.mT @ resid)  # classical Gram–Schmidt twice
            a, c = a_t.numpy(), torch.linalg.qr(resid, mode="r")[1].numpy()
        U_t, V_t = self.U_t, self.V_t
        first_v = (U_t.mT @ z64[0] @ V_t if len(z64) == 1 else z64[0] @ V_t).numpy()
        first_out = last_out = None
        if len(z64) >= 3:  # theory.coupled.project_weights(complement=True)
            last_out = _complement_block(zl, U_t)
            first_out = _complement_block(z64[0].mT, V_t).T
        basis = SeedBasis(lower=zs[:-1], last_a=a, last_c=c, first_v=first_v, last_u=(U_t.mT @ zl).numpy(),
                          middle=[z.numpy().copy() for z in z64[1:-1]], first_out=first_out, last_out=last_out)
        self._cache[key] = basis
        return basis

    def drop(self, shape: tuple[int, int]) -> None:
        """Forget the seeds of one (depth, hidden) once its runs are done."""
        for key in [k for k in self._cache if k[:2] == shape]:
            del self._cache[key]


# ------------------------------------------------------------------------------------------------ training
@dataclass
class BatchTraining:
    losses: np.ndarray  # (R, T) float64, NaN from the diverged epoch on
    modes: np.ndarray  # (R, T, r) float64, NaN for diverged runs
    diverged_at: np.ndarray  # (R,) int, −1 if never
    engines: list[str]
    seconds: np.ndarray  # (R,) per-run share of the training time


def _reduced_call(x, y, ws, lr, n_epochs):
    res = reduced_sgd(x, y, ws, lr, n_epochs, reduction="sum", record_rsm=False, stop_on_divergence=False)
    return res.losses, res.modes, res.diverged_at


def train_reduced(problem: Problem, cache: InitCache, runs: list[Run], n_epochs: int, dtype: torch.dtype,
                  device: torch.device) -> BatchTraining:
    """Train runs of one shape (all reducible) at once with the reduced engine (see module docstring)."""
    t0 = time.perf_counter()
    P, n_out = problem.Y.shape
    n_in = problem.X.shape[1]
    bases = [cache.basis(r, reduced=True) for r in runs]
    scales = [cache.scales(r) for r in runs]
    depth = runs[0].depth
    ws = []
    for layer in range(depth - 1):
        ws.append(torch.stack([sc[layer] * b.lower[layer] for b, sc in zip(bases, scales)]))
    last = [sc[-1] * torch.as_tensor(np.vstack([b.last_a, b.last_c])) for b, sc in zip(bases, scales)]
    ws.append(torch.stack(last).to(dtype))
    ws = [w.to(device=device, dtype=dtype) for w in ws]
    n_last = ws[-1].shape[-1]
    y_red = torch.cat([cache.y_q1, torch.zeros(P, n_last, dtype=torch.float64)], dim=1).to(device=device, dtype=dtype)
    x = torch.tensor(problem.X, dtype=dtype, device=device)
    lr = torch.tensor([r.lr / (P * n_out) for r in runs], dtype=torch.float64, device=device)
    with torch.no_grad():
        losses, modes, div = _reduced_call(x, y_red, ws, lr, n_epochs)
    losses = (losses.double().cpu().numpy() + cache.const) * (1.0 / (P * n_out))
    modes = modes.double().cpu().numpy()
    div = div.cpu().numpy().astype(np.int64)
    modes[div >= 0] = np.nan
    assert modes.shape[-1] == min(n_in, n_out)
    seconds = (time.perf_counter() - t0) / len(runs)
    return BatchTraining(losses, modes, div, ["reduced"] * len(runs), np.full(len(runs), seconds))


def train_autograd(problem: Problem, run: Run, n_epochs: int, dtype: torch.dtype, device: torch.device):
    """One run through ``saxe.train(engine="autograd")``: (losses (T,), modes (T, r), diverged_at, seconds)."""
    t0 = time.perf_counter()
    net = saxe.make_net(problem.X.shape[1], run.hidden_sizes, problem.Y.shape[1]).to(dtype)
    saxe.initializer_(net, run.gamma, generator=torch.Generator().manual_seed(run.seed))
    net.to(device)
    T, r = n_epochs + 1, problem.n_modes
    try:
        rec = saxe.train(net, problem.X, problem.Y, n_epochs, run.lr, engine="autograd", record_rsm=False,
                         threads=None)
        out = rec.losses, rec.modes, -1
    except saxe.DivergenceError as exc:
        out = np.full(T, np.nan), np.full((T, r), np.nan), int(exc.epoch)
    return (*out, time.perf_counter() - t0)


def train_batch(problem: Problem, cache: InitCache, runs: list[Run], n_epochs: int, *, engine: str,
                dtype: torch.dtype, device: torch.device) -> BatchTraining:
    """Train a batch of runs of one shape: reducible runs together (engine reduced/auto), the others per run."""
    R, T, r = len(runs), n_epochs + 1, problem.n_modes
    losses, modes = np.full((R, T), np.nan), np.full((R, T, r), np.nan)
    div, secs, engines = np.full(R, -1, dtype=np.int64), np.zeros(R), [""] * R
    fast = [i for i, run in enumerate(runs) if engine != "autograd" and problem.reducible(run)]
    if fast:
        bt = train_reduced(problem, cache, [runs[i] for i in fast], n_epochs, dtype, device)
        losses[fast], modes[fast], div[fast], secs[fast] = bt.losses, bt.modes, bt.diverged_at, bt.seconds
        for i in fast:
            engines[i] = "reduced"
    for i, run in enumerate(runs):
        if engines[i]:
            continue
        losses[i], modes[i], div[i], secs[i] = train_autograd(problem, run, n_epochs, dtype, device)
        engines[i] = "autograd"
    return BatchTraining(losses, modes, div, engines, secs)


# ------------------------------------------------------------------------------------------------ theory
# The matrix maps below run in float64 torch on the CPU: numpy's matmul over stacks of small matrices is several
# times slower than torch's batched kernels. They mirror the theory functions step for step (tested ≤ 1e-12).
def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def coupled_modes_batch(n_steps: int, s: np.ndarray, M0: np.ndarray, etas: np.ndarray) -> np.ndarray:
    """Singular values (R, n_steps+1, r), descending, of ``theory.coupled.coupled_modes_discrete(n, s, M0[i], η_i)``
    for every run i, batched: ``M ← (I + η(S − M)) M (I + η(S − M))``, symmetrised each step as the theory does.
    M stays symmetric PSD, so its singular values are |eigenvalues|. A run whose map leaves the finite numbers
    (where the theory raises) gets NaN."""
    M0 = _t(M0)
    R, r = M0.shape[0], s.size
    S, I = torch.diag(_t(s)), torch.eye(r, dtype=torch.float64)
    M = 0.5 * (M0 + M0.mT)
    e = _t(etas).view(R, 1, 1)
    traj = torch.empty((R, n_steps + 1, r, r), dtype=torch.float64)
    traj[:, 0] = M
    for k in range(n_steps):
        P = I + e * (S - M)
        M = P @ M @ P
        M = 0.5 * (M + M.mT)
        traj[:, k + 1] = M
    ok = torch.isfinite(traj).flatten(1).all(dim=1)
    traj[~ok] = 0.0
    out = torch.linalg.eigvalsh(traj).abs().sort(dim=-1, descending=True).values
    out[~ok] = float("nan")
    return out.numpy()


def _product(layers: list[torch.Tensor]) -> torch.Tensor:
    M = layers[0]
    for B in layers[1:]:
        M = B @ M
    return M


def _gradients_batch(layers: list[torch.Tensor], G: torch.Tensor) -> list[torch.Tensor]:
    """Batched ``theory.coupled._gradients``: (B_L⋯B_{l+1})ᵀ G (B_{l−1}⋯B_1)ᵀ for each layer (G = S̄ − B_L⋯B_1)."""
    R = G.shape[0]
    pre = [torch.eye(G.shape[2], dtype=G.dtype).expand(R, -1, -1)]
    for B in layers[:-1]:
        pre.append(B @ pre[-1])
    suf = [torch.eye(G.shape[1], dtype=G.dtype).expand(R, -1, -1)]
    for B in layers[:0:-1]:
        suf.append(suf[-1] @ B)
    suf = suf[::-1]
    return [suf[i].mT @ G @ pre[i].mT for i in range(len(layers))]


def projected_modes_batch(n_steps: int, s: np.ndarray, layers: list[np.ndarray], etas: np.ndarray) -> np.ndarray:
    """Singular values (R, n_steps+1, r), descending, of the mode matrix of
    ``theory.coupled.projected_modes_discrete(n, s, layers_i, η_i)`` for each run i, batched (``layers[l]`` stacks
    B_l of every run; B_1 may have more than r columns and B_L more than r rows: the complement directions, with
    target S̄ = diag(s) padded by zeros, and M the top-left r×r block). A zero row of B_L or column of B_1 stays
    zero, so runs with fewer complement directions are zero-padded exactly. NaN for a run whose iteration leaves
    the finite numbers (where the theory raises)."""
    layers = [_t(B) for B in layers]
    R, r = layers[0].shape[0], s.size
    S = torch.zeros((layers[-1].shape[1], layers[0].shape[2]), dtype=torch.float64)
    S[:r, :r] = torch.diag(_t(s))
    e = _t(etas).view(R, 1, 1)
    traj = torch.empty((R, n_steps + 1, r, r), dtype=torch.float64)
    ok = torch.ones(R, dtype=torch.bool)
    for k in range(n_steps + 1):
        full = _product(layers)
        traj[:, k] = full[:, :r, :r]
        if k % 16 == 0 or k == n_steps:  # stop a blown-up run before inf − inf spreads warnings/NaN
            fin = torch.isfinite(full).flatten(1).all(dim=1)
            if not bool(fin.all()):
                ok &= fin
                keep = ok.view(R, 1, 1).to(torch.float64)
                layers = [torch.nan_to_num(B) * keep for B in layers]
                full = torch.nan_to_num(full) * keep
        if k < n_steps:
            layers = [B + e * g for B, g in zip(layers, _gradients_batch(layers, S - full))]
    ok &= torch.isfinite(traj).flatten(1).all(dim=1)
    traj[~ok] = 0.0
    out = torch.linalg.svdvals(traj)
    out[~ok] = float("nan")
    return out.numpy()


def _pad(blocks: list[np.ndarray], axis: int) -> np.ndarray:
    """Stack 2-D blocks, zero-padding ``axis`` (0 rows, 1 columns) to the largest size."""
    n = max(b.shape[axis] for b in blocks)
    out = []
    for b in blocks:
        width = [(0, 0), (0, 0)]
        width[axis] = (0, n - b.shape[axis])
        out.append(np.pad(b, width))
    return np.stack(out)


def coupled_inputs(problem: Problem, cache: InitCache, runs: list[Run]):
    """Per run, from its actual init (as ``theory.predictor(..., weights=w0, coupled=True)`` builds it): depth 2
    → M_0 = ZᵀZ (R, r, r) with Z = (W_1 V + W_2ᵀ U)/2; other depths → the projected layers, each (R, ·, ·)."""
    depth, h, r = runs[0].depth, runs[0].hidden, problem.n_modes
    n_in, n_out = problem.X.shape[1], problem.Y.shape[1]
    parts = []
    for run in runs:
        sc = cache.scales(run)
        if run.gamma == 0:  # every weight is zero
            b = SeedBasis(lower=[], last_a=None, last_c=None, first_v=np.zeros((r, r) if depth == 1 else (h, r)),
                          last_u=np.zeros((r, h)), middle=[np.zeros((h, h))] * max(depth - 2, 0),
                          first_out=np.zeros((h, 0)), last_out=np.zeros((0, h)))
        else:
            b = cache.basis(run, reduced=False)
        if depth == 2:
            Z = 0.5 * (sc[0] * b.first_v + (sc[1] * b.last_u).T)
            parts.append(Z.T @ Z)
        elif depth == 1:
            parts.append([sc[0] * b.first_v])
        else:
            first = np.hstack([sc[0] * b.first_v, sc[0] * b.first_out])
            last = np.vstack([sc[-1] * b.last_u, sc[-1] * b.last_out])
            parts.append([first, *[sc[l + 1] * m for l, m in enumerate(b.middle)], last])
    if depth == 2:
        return np.stack(parts)
    if depth == 1:
        return [np.stack([p[0] for p in parts])]
    layers = [_pad([p[0] for p in parts], axis=1)]
    layers += [np.stack([p[l] for p in parts]) for l in range(1, depth - 1)]
    layers.append(_pad([p[-1] for p in parts], axis=0))
    return layers


def decoupled_predictions(problem: Problem, run: Run, n_epochs: int) -> dict[str, np.ndarray]:
    """Sorted (T, r) predictions of the continuous and discrete scalar theories: ``theory.predictor(X, Y, lr,
    depth, a0=a₀ a priori, method)``, built from the problem's reference prediction with the run's η, depth and a₀
    (``dataclasses.replace``: the SVD of Σʸˣ is done once per sweep); NaN where a theory diverges."""
    t = np.arange(n_epochs + 1, dtype=np.float64)
    eta = problem.eta(run.lr)
    a0 = np.full(problem.n_modes, problem.a0(run))
    out = {}
    for name in ("continuous", "discrete"):
        p = dataclasses.replace(problem.reference, eta=eta, tau=1.0 / eta, depth=run.depth, method=name, a0=a0,
                                _cache={})
        try:
            out[name] = np.asarray(p.modes(t), dtype=np.float64)
        except ValueError:  # the discrete map diverges beyond its stable lr
            out[name] = np.full((t.size, problem.n_modes), np.nan)
    return out


def theory_batch(problem: Problem, cache: InitCache, runs: list[Run], n_epochs: int,
                 decoupled_cache: dict) -> dict[str, np.ndarray]:
    """(R, T, r) sorted predictions of every theory for a batch of runs of one shape."""
    etas = np.array([problem.eta(r.lr) for r in runs])
    inputs = coupled_inputs(problem, cache, runs)
    if runs[0].depth == 2:
        coupled = coupled_modes_batch(n_epochs, problem.s, inputs, etas)
    else:
        coupled = projected_modes_batch(n_epochs, problem.s, inputs, etas)
    preds = {"coupled": coupled}
    for name in ("continuous", "discrete"):
        rows = []
        for run in runs:
            key = (run.depth, run.hidden, run.lr, run.gamma, n_epochs)
            if key not in decoupled_cache:
                decoupled_cache[key] = decoupled_predictions(problem, run, n_epochs)
            rows.append(decoupled_cache[key][name])
        preds[name] = np.stack(rows)
    return preds


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
    s, r = problem.s, problem.n_modes
    rows = []
    for i, run in enumerate(runs):
        diverged = bool(tr.diverged_at[i] >= 0)
        row = {"run_id": run.run_id, "data": problem.name, "depth": fmt(run.depth), "hidden": fmt(run.hidden),
               "lr": fmt(run.lr), "gamma": fmt(run.gamma), "seed": fmt(run.seed), "eta": fmt(problem.eta(run.lr)),
               "a0": fmt(problem.a0(run)), "n_epochs": fmt(n_epochs), "engine": tr.engines[i], "dtype": dtype,
               "device": device, "final_loss": "" if diverged else fmt(tr.losses[i, -1]), "diverged": fmt(diverged),
               "diverged_epoch": fmt(int(tr.diverged_at[i])) if diverged else "",
               "train_seconds": fmt(float(tr.seconds[i]))}
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


# ------------------------------------------------------------------------------------------------ CLI
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
                   help="merge the shard files in --out into sweep.csv and draw the phase diagram (no training)")
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
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False); "
                         "use --device cpu")
    if args.merge and (args.shard or args.resume):
        raise UsageError("--merge takes no --shard or --resume")
    return parse_shard(args.shard)


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create the folder ({exc.strerror})") from None


def _existing(path: Path, header: list[str], resume: bool, problem: Problem, epochs: int, dtype: str):
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
        raise UsageError(f"{path}: its columns differ from this sweep's (other data?); choose another --out")
    for row in rows:
        if (row["data"], row["n_epochs"], row["dtype"]) != (problem.name, str(epochs), dtype):
            raise UsageError(f"{path} holds runs of another sweep (data={row['data']}, epochs={row['n_epochs']}, "
                             f"dtype={row['dtype']}; this one: data={problem.name}, epochs={epochs}, dtype={dtype}); "
                             "choose another --out")
    return rows


def _batches(pending: list[Run], size: int) -> list[list[Run]]:
    groups: dict[tuple[int, int], list[Run]] = {}
    for run in pending:
        groups.setdefault(run.shape, []).append(run)
    return [g[i:i + size] for g in groups.values() for i in range(0, len(g), size)]


def run(args) -> int:
    shard = _check_args(args)
    if args.merge:
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
    out = Path(args.out)
    names = output_names(shard)
    header = columns(problem.n_modes)
    _prepare_out(out)
    rows = _existing(out / names["csv"], header, args.resume, problem, args.epochs, args.dtype)
    done = {row["run_id"] for row in rows}
    pending = [r for r in mine if r.run_id not in done]
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    device = torch.device(args.device)
    r = problem.n_modes
    batch = max(1, min(args.batch, BATCH_RECORD_BYTES // (8 * (args.epochs + 1) * (r * r + 4 * r))))
    t_start = time.perf_counter()
    timing = {"train_s": 0.0, "theory_s": 0.0, "write_s": 0.0}
    n_new = 0

    def chunks():
        cache = InitCache(problem, dtype)
        shape = None
        for runs in _batches(pending, batch):
            if shape is not None and runs[0].shape != shape:
                cache.drop(shape)
            shape = runs[0].shape
            t0 = time.perf_counter()
            tr = train_batch(problem, cache, runs, args.epochs, engine=args.engine, dtype=dtype, device=device)
            t1 = time.perf_counter()
            preds = theory_batch(problem, cache, runs, args.epochs, {})  # decoupled theory: shared by a batch's seeds
            new = make_rows(problem, runs, tr, preds, args.epochs, args.dtype, args.device)
            timing["train_s"] += t1 - t0
            timing["theory_s"] += time.perf_counter() - t1
            for j, row in enumerate(new):
                yield row, j == len(new) - 1

    with torch_threads(args.threads):
        for row, last_of_chunk in items_bar(chunks(), "sweep", args.quiet, total=len(pending)):
            rows.append(row)
            n_new += 1
            if last_of_chunk:
                t0 = time.perf_counter()
                write_rows(out / names["csv"], header, rows)
                timing["write_s"] += time.perf_counter() - t0
    if not (out / names["csv"]).exists():  # nothing to run (empty shard): still leave a readable file
        write_rows(out / names["csv"], header, rows)
    from .sweep_figures import phase_diagram

    t0 = time.perf_counter()
    figure = phase_diagram(rows, out / names["figure"])
    timing["figure_s"] = time.perf_counter() - t0
    n_div = sum(row["diverged"] == "True" for row in rows)
    timing["total_s"] = time.perf_counter() - t_start
    summary = {"command": {k: v for k, v in vars(args).items() if not k.startswith("_")}, "data": problem.name,
               "n_grid": len(grid), "n_shard": len(mine), "n_rows": len(rows), "n_new": n_new,
               "n_resumed": len(rows) - n_new, "n_diverged": n_div, "shard": args.shard, "batch": batch,
               "timings": timing, "csv": names["csv"], "figure": figure.name if figure else None,
               "versions": package_versions()}
    write_json(out / names["json"], summary)
    if not args.quiet:
        print(f"saxe sweep: {n_new} runs done, {len(rows) - n_new} resumed, {n_div} diverged; "
              f"{out / names['csv']} ({timing['total_s']:.1f} s: train {timing['train_s']:.1f} s, "
              f"theory {timing['theory_s']:.1f} s)")
    return 0


_SHARD_FILE = re.compile(r"sweep\.shard-(\d+)-of-(\d+)\.csv")


def merge(args) -> int:
    """Concatenate ``sweep.shard-*-of-n.csv`` in --out into ``sweep.csv`` and draw ``phase_diagram.png``."""
    out = Path(args.out)
    files = sorted(p for p in out.glob("sweep.shard-*-of-*.csv") if _SHARD_FILE.fullmatch(p.name))
    if not files:
        raise UsageError(f"--merge: no shard files (sweep.shard-i-of-n.csv) in {out}")
    counts = {int(_SHARD_FILE.fullmatch(p.name).group(2)) for p in files}
    if len(counts) != 1:
        raise UsageError(f"--merge: shard files of different splits in {out}: n = {sorted(counts)}")
    n = counts.pop()
    target = out / "sweep.csv"
    info = out / "sweep.json"
    if target.exists():
        try:
            merged_before = "merged_from" in json.loads(info.read_text())
        except (OSError, ValueError):
            merged_before = False
        if not merged_before:
            raise UsageError(f"--merge: {target} exists and is not a previous merge; move it away first")
    header, rows, seen = None, [], {}
    for path in files:
        h, rs = read_rows(path)
        if header is None:
            header = h
        elif h != header:
            raise UsageError(f"--merge: {path.name} has other columns than {files[0].name}")
        for row in rs:
            if rows and (row["data"], row["n_epochs"], row["dtype"]) != (rows[0]["data"], rows[0]["n_epochs"],
                                                                          rows[0]["dtype"]):
                raise UsageError(f"--merge: {path.name} holds runs of another sweep (data, epochs or dtype differ)")
            if row["run_id"] in seen:
                raise UsageError(f"--merge: run {row['run_id']} is in both {seen[row['run_id']]} and {path.name}")
            seen[row["run_id"]] = path.name
            rows.append(row)
    found = {int(_SHARD_FILE.fullmatch(p.name).group(1)) for p in files}
    missing = sorted(set(range(n)) - found)
    write_rows(target, header, rows)
    from .sweep_figures import phase_diagram

    phase_diagram(rows, out / "phase_diagram.png")
    write_json(info, {"merged_from": [p.name for p in files], "n_rows": len(rows), "missing_shards": missing,
                      "versions": package_versions()})
    if not args.quiet:
        note = f"; missing shards: {missing}" if missing else ""
        print(f"saxe sweep --merge: {len(rows)} runs from {len(files)} of {n} shards → {target}{note}",
              file=sys.stderr if missing else sys.stdout)
    return 0
