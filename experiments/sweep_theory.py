r"""The theories of ``saxe sweep``, batched over the runs of one shape: :func:`theory_batch` gives every run's
predicted singular-value trajectories.

**Theories** (per run, as :func:`theory.predictor` builds them): ``continuous`` (closed form) and ``discrete``
(exact scalar SGD map), both from the a priori a₀ = ``theory.expected_initial_mode_strength(γ, sizes)`` (0 for
γ = 0); ``exact`` from the run's actual init: the one exact theory state of :mod:`theory.state` (the reduced
weights ``[W_1 V̄, W_2, …, Ūᵀ W_L]`` of :func:`theory.state.reduced_weights`, built once per seed by
:func:`saxe.batched.exact_layers`), advanced by its SGD map (:func:`theory.state.sgd_step`). That kernel is
called here on float64 torch stacks of all the runs of a batch (numpy's matmul over stacks of small matrices is
several times slower than torch's batched kernels; the kernel is written for both). A theory that diverges
(η beyond its stable range) leaves empty cells, never a crash. U, s, V and the zero modes (rounding-level s set
to 0) are those of ``theory.predictor``.
"""
from __future__ import annotations

import numpy as np
import torch

from saxe.batched import SeedBases, exact_layers
from theory.errors import OrbitDivergenceError
from theory.state import product, sgd_step
from theory.trajectories import Scalar

from .metrics import as_singular_values
from .sweep_engine import Problem
from .sweep_grid import Run


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def exact_modes_batch(n_steps: int, s: np.ndarray, layers: list[np.ndarray], etas: np.ndarray) -> np.ndarray:
    """Singular values (R, n_steps+1, r), descending, of ``M̄ = B_L⋯B_1`` (those of W_tot = Ū M̄ V̄ᵀ) along the exact
    SGD map :func:`theory.state.sgd_step` for each run i (``layers[l]`` stacks B_l of every run; B_1 may have more
    than r columns and B_L more than r rows: the outside directions, with target S̄ = diag(s) padded by zeros). A
    zero row of B_L or column of B_1 stays zero, so runs with fewer outside directions are zero-padded exactly. NaN
    for a run whose iteration leaves the finite numbers (where the theory raises)."""
    layers = [_t(B) for B in layers]
    R, r = layers[0].shape[0], s.size
    S = torch.zeros((layers[-1].shape[1], layers[0].shape[2]), dtype=torch.float64)
    S[:r, :r] = torch.diag(_t(s))
    e = _t(etas)
    out = torch.full((R, n_steps + 1, r), float("nan"), dtype=torch.float64)
    ok = torch.ones(R, dtype=torch.bool)
    for k in range(n_steps + 1):
        if k < n_steps:
            new, full = sgd_step(layers, S, e)
        else:
            full = product(layers)
        fin = torch.isfinite(full).flatten(1).all(dim=1)
        ok &= fin
        out[:, k] = torch.linalg.svdvals(torch.nan_to_num(full) * ok.view(R, 1, 1))[:, :r]
        if k < n_steps:  # a blown-up run is frozen at zero before inf − inf spreads warnings/NaN
            layers = new if bool(ok.all()) else [torch.nan_to_num(B) * ok.view(R, 1, 1) for B in new]
    out[~ok] = float("nan")
    return out.numpy()


def decoupled_predictions(problem: Problem, run: Run, n_epochs: int) -> dict[str, np.ndarray]:
    """Sorted (T, r) predictions of the continuous and discrete scalar theories, the trajectories
    ``theory.predictor(X, Y, lr, depth, a0=a₀ a priori, method, theory='scalar')`` uses (the SVD of Σʸˣ is done
    once per sweep); NaN where a theory diverges."""
    t = np.arange(n_epochs + 1, dtype=np.float64)
    eta = problem.eta(run.lr)
    a0 = np.full(problem.n_modes, problem.a0(run))
    out = {}
    for name in ("continuous", "discrete"):
        traj = Scalar(problem.U, problem.s, problem.V, a0, eta, run.depth, name)
        try:
            out[name] = as_singular_values(traj.strengths(t))
        except OrbitDivergenceError:  # the discrete map diverges beyond its stable lr
            out[name] = np.full((t.size, problem.n_modes), np.nan)
    return out


def theory_batch(problem: Problem, cache: SeedBases, runs: list[Run], n_epochs: int,
                 decoupled_cache: dict) -> dict[str, np.ndarray]:
    """(R, T, r) sorted predictions of every theory for a batch of runs of one shape."""
    etas = np.array([problem.eta(r.lr) for r in runs])
    preds = {"exact": exact_modes_batch(n_epochs, problem.s, exact_layers(cache, runs), etas)}
    for name in ("continuous", "discrete"):
        rows = []
        for run in runs:
            key = (run.depth, run.hidden, run.lr, run.gamma, n_epochs)
            if key not in decoupled_cache:
                decoupled_cache[key] = decoupled_predictions(problem, run, n_epochs)
            rows.append(decoupled_cache[key][name])
        preds[name] = np.stack(rows)
    return preds
