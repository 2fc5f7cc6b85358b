r"""The theories of ``saxe sweep``, batched over the runs of one shape: :func:`theory_batch` gives every run's
predicted singular-value trajectories.

**Theories** (per run, as :func:`theory.predictor` builds them): ``continuous`` (closed form) and ``discrete``
(exact scalar SGD map), both from the a priori a₀ = ``theory.expected_initial_mode_strength(γ, sizes)`` (0 for
γ = 0); ``coupled`` from the run's actual init: depth 2 ``M_0 = ZᵀZ`` (``initial_mode_matrix``) and the matrix map
``coupled_modes_discrete``, other depths ``project_weights`` (with the complement directions) and
``projected_modes_discrete``. Both matrix maps are evaluated here batched over the runs
(:func:`coupled_modes_batch`, :func:`projected_modes_batch`: the same arithmetic, tested against the theory
functions to 1e-12; looping the theory functions costs ~20–40 ms per run, more than the training). A theory
that diverges (η beyond its stable range) leaves empty cells, never a crash. U, s, V and the zero modes
(rounding-level s set to 0) are those of ``theory.predictor``.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from theory.projected import _product  # B_L⋯B_1; works on torch stacks as on numpy

from .sweep_engine import InitCache, Problem, SeedBasis
from .sweep_grid import Run


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


def _gradients_batch(layers: list[torch.Tensor], G: torch.Tensor) -> list[torch.Tensor]:
    """Batched ``theory.projected._gradients``: (B_L⋯B_{l+1})ᵀ G (B_{l−1}⋯B_1)ᵀ for each layer (G = S̄ − B_L⋯B_1)."""
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
    ``theory.projected.projected_modes_discrete(n, s, layers_i, η_i)`` for each run i, batched (``layers[l]`` stacks
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
