r"""The data of ``saxe sweep`` (:class:`Problem`) and its training, which lives in :mod:`saxe.batched` (the one
home of the batched engine, beside the single-run engines of :mod:`saxe.engines`).

A :class:`Problem` is :class:`saxe.batched.BatchData` plus a name (``hsd-f{features}-s{data_seed}`` or
``{file stem}-{sha256[:12]}``), η and the a priori a₀ of a run. :func:`train_batch` trains a batch of runs of one
shape (engines ``reduced``/``autograd``/``auto``, see :mod:`saxe.batched`); a diverging run is recorded with
``diverged=True`` and the sweep goes on.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

import saxe
import theory
from saxe.batched import BatchData, BatchTraining, SeedBases, init_weights, layer_sigmas, reducible  # noqa: F401
from saxe.batched import train_batch as _train_batch

from .cli import UsageError
from .sweep_grid import Run

InitCache = SeedBases  # the name the sweep's callers (and tests) use


class Problem(BatchData):
    """The data set and its mode decomposition (float64 numpy; U, s, V as :func:`theory.predictor` has them,
    rounding-level singular values set to 0)."""

    def __init__(self, X: np.ndarray, Y: np.ndarray, name: str):
        ref = theory.predictor(X, Y, 1.0, depth=2, a0=0.0, unstable=True)
        super().__init__(X, Y, np.array(ref.U), np.array(ref.s), np.array(ref.V))
        self.name = name
        if self.s.size == 0 or self.s[0] <= 0:
            raise UsageError(f"{name}: every feature is zero, there is nothing to learn")

    def eta(self, lr: float) -> float:
        return theory.learning_rate_to_eta(lr, *self.Y.shape)

    def a0(self, run: Run) -> float:
        return 0.0 if run.gamma == 0 else float(theory.expected_initial_mode_strength(run.gamma, self.sizes(run)))

    def reducible(self, run: Run) -> bool:
        return reducible(self, run)


def load_problem(data: str | None, features: int, data_seed: int) -> Problem:
    if data is None:
        X, Y = saxe.generate_hsd(n_features=features, rng=data_seed)
        return Problem(X, Y, f"hsd-f{features}-s{data_seed}")
    table = saxe.load_items_csv(data)  # DataFileError (a ValueError) → exit 2
    digest = hashlib.sha256(Path(data).read_bytes()).hexdigest()[:12]
    return Problem(table.inputs, table.features, f"{table.name}-{digest}")


def train_batch(problem: Problem, cache: SeedBases, runs: list[Run], n_epochs: int, *, engine: str,
                dtype: torch.dtype, device: torch.device) -> BatchTraining:
    """:func:`saxe.batched.train_batch` (``dtype`` is the cache's)."""
    assert cache.dtype == dtype
    return _train_batch(cache, runs, n_epochs, engine=engine, device=device)
