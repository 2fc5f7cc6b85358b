r"""Many runs at once: the batched training engine of sweeps, beside the single-run engines of :mod:`saxe.engines`.

A *run* is any object with ``depth``, ``hidden`` (the width of every hidden layer), ``hidden_sizes``, ``lr``,
``gamma`` and ``seed`` (e.g. ``experiments.sweep_grid.Run``); a batch holds runs of one (depth, hidden).

**Init.** A run's init depends only on its shapes, γ, seed and dtype: it is exactly
``saxe.initializer_(make_net(...).to(dtype), γ, generator=torch.Generator().manual_seed(seed))`` (bit for bit;
:func:`init_weights`), so batching, shards, workers and resume never change a row.

**Per-seed bases** (:class:`SeedBases`). For float64, torch's ``normal_(0, σ)`` equals σ × ``normal_(0, 1)`` bit for
bit, so one unit draw Z_l per seed serves every γ (W_l = σ_l(γ) Z_l); for float32 it does not for small tensors,
so the draw is per (seed, γ). From one draw the cache keeps, once per seed:

* for training, the reduced coordinates of :mod:`saxe.reduced` — Q = :func:`saxe.reduced.reduced_basis`
  (Σʸˣ, Z_L) (the span, hence Q, does not change with γ), ``QᵀZ_L``, the targets ``Y Q`` and ``‖Y − Y Q Qᵀ‖²`` —
  so a run costs O(P·d·N_h) per step and nothing N_out-sized;
* for the exact theory, the reduced weights of the one exact state, :func:`theory.state.reduced_weights`
  (U, V, Z) — one construction of the invariant complement, shared with :func:`theory.exact_state`.

**Engines** (the ``engine`` of each run): ``reduced`` (:func:`saxe.reduced.reduced_loop` over all the batch's
runs with per-run lr; needs N_out > N_in + N_{L−1} and γ > 0), ``autograd`` (:func:`saxe.train` per run, the plain
reference). :func:`train_batch` with ``engine='auto'`` takes ``reduced`` where it applies.

A diverging run (:data:`saxe.LOSS_DIVERGENCE_FACTOR`, the same test in both engines) gets ``diverged_at`` ≥ 0 and
NaN records; the others are unchanged (per-run arithmetic does not depend on the batch; tested).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .models import init_sigma
from .reduced import reduced_basis, reduced_loop, reduced_targets

__all__ = ["BatchData", "SeedBases", "BatchTraining", "init_weights", "layer_sigmas", "reducible", "train_batch",
           "train_reduced", "train_autograd", "exact_layers"]


@dataclass
class BatchData:
    """Data shared by a sweep's runs: X (P, N_in), Y (P, N_out) and the SVD of Σʸˣ (U (N_out, r), s, V (N_in, r)),
    float64 numpy, as :func:`theory.predictor` has them."""

    X: np.ndarray
    Y: np.ndarray
    U: np.ndarray
    s: np.ndarray
    V: np.ndarray

    @property
    def n_modes(self) -> int:
        return int(self.s.size)

    def sizes(self, run: Any) -> list[int]:
        return [self.X.shape[1], *run.hidden_sizes, self.Y.shape[1]]


def _saves_work(data: BatchData, run: Any) -> bool:
    """N_out > N_in + N_{L−1}: the reduced space is smaller than the output space (a property of the shapes)."""
    n_last = run.hidden if run.depth > 1 else data.X.shape[1]
    return data.Y.shape[1] > data.X.shape[1] + n_last


def reducible(data: BatchData, run: Any) -> bool:
    """The reduced engine applies: N_out > N_in + N_{L−1} (it saves work and its basis exists) and γ > 0."""
    return run.gamma > 0 and _saves_work(data, run)


# ------------------------------------------------------------------------------------------------ init
def layer_sigmas(sizes: list[int], gamma: float) -> list[float]:
    """σ_l of :func:`saxe.initializer_` (:func:`saxe.models.init_sigma`), for layer sizes [N_in, N_h…, N_out]."""
    return [init_sigma(gamma, a, b) for a, b in zip(sizes[:-1], sizes[1:])]


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
class _Seed:
    lower: list[torch.Tensor]  # Z_1 … Z_{L−1} in the training dtype
    train: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None  # (QᵀZ_L, Y Q, ‖Y − Y Q Qᵀ‖²), float64
    exact: list[np.ndarray]  # the exact state's reduced weights of the unit draw


class SeedBases:
    """Per-seed unit draws and their reduced coordinates (module docstring), shared by the runs of a sweep."""

    def __init__(self, data: BatchData, dtype: torch.dtype):
        self.data, self.dtype = data, dtype
        self.x64 = torch.tensor(data.X, dtype=torch.float64)  # copies: the data arrays may be read-only
        self.y64 = torch.tensor(data.Y, dtype=torch.float64)
        self.sigma_yx = self.y64.mT @ self.x64
        self.U_t, self.V_t = torch.tensor(data.U), torch.tensor(data.V)
        self._cache: dict[tuple, _Seed] = {}

    def scales(self, run: Any) -> list[float]:
        """The factor each cached unit draw is multiplied by for this run (1 where the draw is per γ)."""
        sig = layer_sigmas(self.data.sizes(run), run.gamma)
        return sig if self.dtype == torch.float64 else [1.0] * len(sig)

    def _key(self, run: Any) -> tuple:
        return (run.depth, run.hidden, run.seed) + (() if self.dtype == torch.float64 else (run.gamma,))

    def seed_is_new(self, run: Any) -> bool:
        """The run's seed has not been drawn yet (its pieces are not cached)."""
        return self._key(run) not in self._cache

    def seed(self, run: Any) -> _Seed:
        """The seed's cached pieces, computed from one draw the first time the seed is met (both the training and
        the exact-theory pieces then: the N_out-sized draw is not kept, only its small reduced coordinates)."""
        key = self._key(run)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        from theory.state import reduced_weights

        sizes = self.data.sizes(run)
        unit = [1.0] * (len(sizes) - 1) if self.dtype == torch.float64 else layer_sigmas(sizes, run.gamma)
        zs = _draw(sizes, run.seed, self.dtype, unit)
        zl = zs[-1].double()
        train_part = None
        if _saves_work(self.data, run):  # the shapes decide (γ is a factor of the unit draw, not part of the key)
            Q, b0 = reduced_basis(self.sigma_yx, zl[None])
            yq, const = reduced_targets(self.y64, Q)
            train_part = (b0[0], yq[0], const[0])
        zs64 = [z.double() for z in zs[:-1]] + [zl]
        exact_part = [b.numpy() for b in reduced_weights(self.U_t, self.V_t, zs64)[0]]
        hit = self._cache[key] = _Seed(lower=zs[:-1], train=train_part, exact=exact_part)
        return hit

    def drop(self, shape: tuple[int, int]) -> None:
        """Forget the seeds of one (depth, hidden) once its runs are done."""
        for key in [k for k in self._cache if k[:2] == shape]:
            del self._cache[key]


def exact_layers(bases: SeedBases, runs: list[Any]) -> list[np.ndarray]:
    """The exact state's reduced weights [B_1 … B_L] of every run, stacked (R, ·, ·): one seed's unit layers times
    the run's σ_l. Runs with fewer outside directions (a zero init has none) are zero-padded, which is exact: a
    zero row of B_L or column of B_1 stays zero under the SGD map."""
    parts: list[list[np.ndarray] | None] = []
    for run in runs:
        if run.gamma == 0:
            parts.append(None)
            continue
        sc = bases.scales(run)
        parts.append([s * b for s, b in zip(sc, bases.seed(run).exact)])
    template = next((p for p in parts if p is not None), None)
    if template is None:  # every run starts at zero: no outside directions
        depth, h, r, n_in = runs[0].depth, runs[0].hidden, bases.data.n_modes, bases.data.X.shape[1]
        shapes = [(r, n_in)] if depth == 1 else [(h, r)] + [(h, h)] * (depth - 2) + [(r, h)]
        return [np.zeros((len(runs), *sh)) for sh in shapes]
    full = [p if p is not None else [np.zeros_like(b) for b in template] for p in parts]
    out = []
    for layer in range(len(template)):
        blocks = [p[layer] for p in full]
        rows = max(b.shape[0] for b in blocks)
        cols = max(b.shape[1] for b in blocks)
        out.append(np.stack([np.pad(b, ((0, rows - b.shape[0]), (0, cols - b.shape[1]))) for b in blocks]))
    return out


# ------------------------------------------------------------------------------------------------ training
@dataclass
class BatchTraining:
    losses: np.ndarray  # (R, T) float64, NaN from the diverged epoch on
    modes: np.ndarray  # (R, T, r) float64, all NaN for a diverged run
    diverged_at: np.ndarray  # (R,) int, −1 if never
    engines: list[str]
    batch_seconds: np.ndarray  # (R,) wall time of the batch that trained each run (the same within a batch)
    batch_runs: np.ndarray  # (R,) how many runs that batch trained together (1 for autograd)


def train_reduced(bases: SeedBases, runs: list[Any], n_epochs: int, device: torch.device) -> BatchTraining:
    """Train runs of one shape (all reducible) at once with :func:`saxe.reduced.reduced_loop`."""
    t0 = time.perf_counter()
    data, dtype = bases.data, bases.dtype
    P, n_out = data.Y.shape
    seeds = [bases.seed(r) for r in runs]
    scales = [bases.scales(r) for r in runs]
    parts = [sd.train for sd in seeds]
    if any(p is None for p in parts):
        raise ValueError("train_reduced: every run must be reducible (γ > 0 and N_out > N_in + N_(L−1))")
    lower = [torch.stack([sc[l] * sd.lower[l] for sd, sc in zip(seeds, scales)]).to(device=device, dtype=dtype)
             for l in range(runs[0].depth - 1)]
    trains = [p for p in parts if p is not None]
    b0 = torch.stack([sc[-1] * p[0] for p, sc in zip(trains, scales)])
    yq = torch.stack([p[1] for p in trains])
    const = torch.stack([p[2] for p in trains])
    x = bases.x64.to(device=device, dtype=dtype)
    lr = torch.tensor([r.lr for r in runs], dtype=torch.float64, device=device)
    with torch.no_grad():
        res = reduced_loop(x, yq.to(device=device, dtype=dtype), const.to(device=device, dtype=dtype), lower,
                           b0.to(device=device, dtype=dtype), lr, n_epochs, norm=1.0 / (P * n_out),
                           n_modes=data.n_modes, record_rsm=False, stop_on_divergence=False)
    div = res.diverged_at.cpu().numpy().astype(np.int64)
    seconds = time.perf_counter() - t0
    assert res.modes is not None
    modes = res.modes.double().cpu().numpy()
    modes[div >= 0] = np.nan  # a diverged run has no singular values to compare, not even before it blew up
    return BatchTraining(res.losses.double().cpu().numpy(), modes, div,
                         ["reduced"] * len(runs), np.full(len(runs), seconds), np.full(len(runs), len(runs)))


def train_autograd(data: BatchData, run: Any, n_epochs: int, dtype: torch.dtype, device: torch.device):
    """One run through ``saxe.train(engine="autograd")``: (losses (T,), modes (T, r), diverged_at, seconds)."""
    from .errors import DivergenceError
    from .models import initializer_, make_net
    from .train import train

    t0 = time.perf_counter()
    net = make_net(data.X.shape[1], run.hidden_sizes, data.Y.shape[1]).to(dtype)
    initializer_(net, run.gamma, generator=torch.Generator().manual_seed(run.seed))
    net.to(device)
    T, r = n_epochs + 1, data.n_modes
    try:
        rec = train(net, data.X, data.Y, n_epochs, run.lr, engine="autograd", record_rsm=False, threads=None)
        out = rec.losses, rec.modes, -1
    except DivergenceError as exc:
        out = np.full(T, np.nan), np.full((T, r), np.nan), int(exc.epoch)
    return (*out, time.perf_counter() - t0)


def train_batch(bases: SeedBases, runs: list[Any], n_epochs: int, *, engine: str,
                device: torch.device) -> BatchTraining:
    """Train a batch of runs of one shape: reducible runs together (engine ``reduced``/``auto``), the others one
    by one with autograd."""
    data = bases.data
    R, T, r = len(runs), n_epochs + 1, data.n_modes
    losses, modes = np.full((R, T), np.nan), np.full((R, T, r), np.nan)
    div, secs, engines = np.full(R, -1, dtype=np.int64), np.zeros(R), [""] * R
    together = np.ones(R, dtype=np.int64)
    fast = [i for i, run in enumerate(runs) if engine != "autograd" and reducible(data, run)]
    if fast:
        bt = train_reduced(bases, [runs[i] for i in fast], n_epochs, device)
        losses[fast], modes[fast], div[fast], secs[fast] = bt.losses, bt.modes, bt.diverged_at, bt.batch_seconds
        together[fast] = bt.batch_runs
        for i in fast:
            engines[i] = "reduced"
    for i, run in enumerate(runs):
        if engines[i]:
            continue
        losses[i], modes[i], div[i], secs[i] = train_autograd(data, run, n_epochs, bases.dtype, device)
        engines[i] = "autograd"
    return BatchTraining(losses, modes, div, engines, secs, together)
