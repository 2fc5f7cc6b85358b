r"""Data, init and batched training of ``saxe sweep``: :class:`Problem` (the data and its modes), the init draws
(:func:`init_weights`, :class:`InitCache` of per-seed :class:`SeedBasis`) and the engines (:func:`train_batch`).

**Init.** A run's init depends only on its shapes, γ, seed and dtype: it is exactly
``saxe.initializer_(make_net(...).to(dtype), γ, generator=torch.Generator().manual_seed(seed))`` (bit for bit;
see :func:`init_weights`), so batching, shards and resume never change a row.

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

A diverging run (loss non-finite or above ``saxe.LOSS_DIVERGENCE_FACTOR`` × max(initial loss, mean Y²), the same
test in both engines) is recorded with ``diverged=True`` and ``diverged_epoch`` (the number of updates done when
it was detected); its other results are empty and the sweep goes on. In a batch, a diverged run is frozen and
the others' numbers are unchanged (per-run arithmetic does not depend on the batch; tested).
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import saxe
import theory
from saxe.engines import reduced_sgd
from theory.state import RANK_EPS_FACTOR

from .cli import UsageError
from .sweep_grid import Run


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
        self.reference = theory.predictor(self.X, self.Y, 1.0, depth=2, a0=0.0, unstable=True)
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
    first_out: np.ndarray | None  # Z_1 Q_in (N_1, q_in): depth ≥ 2, see _complement_block
    last_out: np.ndarray | None  # Q_outᵀ Z_L (q_out, N_{L−1}) (depth 1: (q_out, N_in))


def _complement_block(B: torch.Tensor, basis: torch.Tensor) -> np.ndarray:
    """``Qᵀ B`` for Q = ``theory.state._complement(B, basis)`` (orthonormal basis of the part of B's columns
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
    keep = sv > RANK_EPS_FACTOR * np.finfo(float).eps * max(B.shape) * scale  # the theory's own threshold
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
        last_out = _complement_block(zl, U_t)  # the outside directions of theory.state.exact_state
        if len(z64) >= 2:
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
    batch_seconds: np.ndarray  # (R,) wall time of the batch that trained each run (the same within a batch)
    batch_runs: np.ndarray  # (R,) how many runs that batch trained together (1 for autograd)


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
    seconds = time.perf_counter() - t0
    return BatchTraining(losses, modes, div, ["reduced"] * len(runs), np.full(len(runs), seconds),
                         np.full(len(runs), len(runs)))


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
    together = np.ones(R, dtype=np.int64)
    fast = [i for i, run in enumerate(runs) if engine != "autograd" and problem.reducible(run)]
    if fast:
        bt = train_reduced(problem, cache, [runs[i] for i in fast], n_epochs, dtype, device)
        losses[fast], modes[fast], div[fast], secs[fast] = bt.losses, bt.modes, bt.diverged_at, bt.batch_seconds
        together[fast] = bt.batch_runs
        for i in fast:
            engines[i] = "reduced"
    for i, run in enumerate(runs):
        if engines[i]:
            continue
        losses[i], modes[i], div[i], secs[i] = train_autograd(problem, run, n_epochs, dtype, device)
        engines[i] = "autograd"
    return BatchTraining(losses, modes, div, engines, secs, together)
