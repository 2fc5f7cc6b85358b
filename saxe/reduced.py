r"""The exact reduced-coordinate SGD loop of a linear chain, batched over runs: the one home of that arithmetic.

**Reduced coordinates (exact).** The gradient of the last layer is
``∂loss/∂W_L = c (W_tot Σˣˣ − Σʸˣ) W_belowᵀ`` (c = 2/(P·N_out) for 'mean', 2 for 'sum'), whose columns lie
in span(Σʸˣ) + span(W_L). Hence the columns of W_L(t) stay in the fixed space
``span(Σʸˣ) + span(W_L(0))`` of dimension d ≤ N_in + N_{L−1}. With an orthonormal basis Q (N_out, d) of it
(:func:`reduced_basis`, the one construction of that basis), ``W_L = Q B`` and SGD on B with targets ``Y Q``
reproduces the full iterates *exactly* (in exact arithmetic): the lower layers only see W_L through
``W_Lᵀ (Σʸˣ − W_tot Σˣˣ) = Bᵀ Qᵀ(…)``; the singular values of W_tot equal those of ``B W_{L−1} ⋯ W_1``; the loss
is ``norm · (‖X W_belowᵀ Bᵀ − Y Q‖² + ‖Y − Y Q Qᵀ‖²)``; an output entry is ``out[i, j] = (X W_belowᵀ Bᵀ)[i] · Q[j]``.
Each step costs O(P·d·N_h) instead of O(P·N_out·N_h): ≈ N_out/d ≈ 260× fewer FLOPs for the 8-30-10000 net.

**Records, deferred.** The loop keeps only (references to) the small weights [W_1 … W_{L−1}, B] of each epoch, at
most :data:`RECORD_BUFFER_BYTES` of them; every time that fills, the loss, singular values, RSM and tracked outputs of
all its epochs are computed at once (one batched call each instead of one per epoch). Row k of every record is
the state after k updates, exactly as if it had been computed inside the loop. Divergence is detected from those
losses (non-finite, or above :data:`LOSS_DIVERGENCE_FACTOR` × max(initial loss, loss of the zero network)); the
detection epoch is the first such row, the run's rows from that epoch on are NaN and its weights are frozen at
zero (a diverged run in a batch never changes the others: per-run arithmetic does not depend on the batch).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["Basis", "CHOLQR_MIN_EIG", "GRAM_MIN_NORMAL", "EngineResult", "LOSS_DIVERGENCE_FACTOR",
           "RECORD_BUFFER_BYTES", "reduced_basis", "reduced_targets", "reduced_loop"]

#: A run counts as diverged when its loss is not finite or exceeds this many times the larger of its initial
#: loss and the loss of the zero network (mean Y²): gradient descent below the stable learning rate never
#: raises the loss anywhere near that much, and past it the loss grows geometrically, so the exact value only
#: moves the detection epoch by a few steps.
LOSS_DIVERGENCE_FACTOR = 1e4
#: Largest size (bytes) of the per-epoch weight buffer from which records are computed in batches: large enough
#: that one batched SVD covers dozens of epochs (the per-call overhead is what costs), small enough that a sweep's
#: batch of 64 runs stays a few MiB.
RECORD_BUFFER_BYTES = 4 << 20
#: Most epochs buffered at once (beyond this the batched calls gain nothing measurable).
MAX_BUFFERED_EPOCHS = 256


@dataclass
class EngineResult:
    """Records of R runs (R = 1 for one network); row k of every record is after k updates."""

    losses: torch.Tensor  # (R, n+1)
    modes: torch.Tensor | None  # (R, n+1, min(N_in, N_out)) singular values of W_tot, descending
    rsms: torch.Tensor | None  # (R, n+1, P, P) first hidden layer's RSM
    illusions: torch.Tensor | None  # (R, n+1) out[i, j], or (R, n+1, m) for m tracked items i
    weights: list[torch.Tensor]  # final weights [W_1 … W_L], each (R, out, in)
    diverged_at: torch.Tensor  # (R,) epoch at which divergence was detected, −1 if never
    reason: list[str]  # per run: why it diverged ('' if it did not)


@dataclass
class Basis:
    """An orthonormal basis Q (R, N_out, d) of span(Σʸˣ) + span(W_L), held as ``Q = S T``: the stacked columns
    ``S = [Σʸˣ, W_L]`` (R, N_out, m) and a small ``T`` (R, m, d) (Cholesky QR), or as Q itself (``T is None``,
    Householder). Only the products the engine needs are formed; none of them is an N_out × N_out matrix."""

    S: torch.Tensor
    T: torch.Tensor | None

    @property
    def dim(self) -> int:
        return int(self.S.shape[-1] if self.T is None else self.T.shape[-1])

    def project(self, a: torch.Tensor) -> torch.Tensor:
        """``a Q`` for rows ``a`` (…, N_out) → (…, d)."""
        out = a @ self.S
        return out if self.T is None else out @ self.T

    def rows(self, j: int) -> torch.Tensor:
        """``Q[:, j, :]`` (R, d): the coordinates of output feature j."""
        row = self.S[:, j:j + 1, :]
        return (row if self.T is None else row @ self.T)[:, 0, :]

    def expand(self, b: torch.Tensor) -> torch.Tensor:
        """``Q b`` for coordinates ``b`` (R, d, k) → (R, N_out, k)."""
        return self.S @ (b if self.T is None else self.T @ b)


#: Cholesky QR builds the basis where the Gram matrix of the column-normalised ``[Σʸˣ, W_L]`` has its smallest
#: eigenvalue at least this (the columns are far from dependent): its implicit Q then loses orthogonality by ≈
#: ε·(accumulation)/λ_min, ε that of the run's dtype. Measured on the tutorial's 8-30-10000 net (λ_min = 0.49, random
#: W_L columns in N_out ≫ m dimensions): ‖QᵀQ − I‖ = 1.6e-13 in float64, 2–3e-7 in float32, where Householder QR gives
#: 7.9e-6; scaled by 1/λ_min to this floor, ≲ 1e-11 and ≲ 2e-5: inside the engine's 1e-9 agreement with autograd
#: (float64), and of the order of float32 Householder's own. Below it (dependent or zero columns: a zero or spectral
#: init, rank-deficient Σʸˣ, N_out < m) Householder QR is used, which needs no condition.
CHOLQR_MIN_EIG = 1e-2
#: The Gram matrix is formed in float32 (for float32 runs) only where a column's mean squared entry is this many
#: times float32's smallest normal number, so that its products are not subnormal (on the tutorial's net: down to
#: γ ≈ 3e-16, below the widget's 1e-15); else, and where it overflows, in float64.
GRAM_MIN_NORMAL = 1024.0


def reduced_basis(sigma_yx: torch.Tensor, w_last: torch.Tensor) -> tuple[Basis, torch.Tensor]:
    """The basis Q of span(Σʸˣ) + span(W_L) for each run (``w_last`` (R, N_out, N_{L−1}), ``sigma_yx`` (N_out,
    N_in) shared), and W_L in that basis, ``B = QᵀW_L`` (R, d, N_{L−1}): the one construction of that basis.

    With ``S = [Σʸˣ, W_L]`` (m = N_in + N_{L−1} columns), D the inverse column norms and ``G = D SᵀS D = LLᵀ``
    (SᵀS formed in the run's dtype, :data:`GRAM_MIN_NORMAL`; factored in float64), ``Q = S D L⁻ᵀ`` is orthonormal
    and ``S = Q R`` with ``R = Lᵀ D⁻¹``, so ``B`` is R's last N_{L−1} columns: Cholesky QR, which never forms Q
    (``Q = S T``, ``T = D L⁻ᵀ``). Its accuracy needs well separated columns (:data:`CHOLQR_MIN_EIG`); otherwise
    Householder QR of S, which always returns orthonormal columns whose span contains every column, also when some
    are zero or dependent (W_L = 0, rank-deficient Σʸˣ) or when m exceeds N_out (then Q spans everything and
    d = N_out); B is read off its R factor (backward stable column by column). The span does not change when W_L is
    rescaled, so one Q serves every init scale of the same draw (the sweep's per-seed bases).
    """
    stacked = torch.cat([sigma_yx.expand(w_last.shape[0], -1, -1), w_last], dim=-1)
    n_in = sigma_yx.shape[-1]
    found = _cholesky_qr(stacked)
    if found is not None:
        basis, r = found
        return basis, r[..., n_in:]
    Q, Rf = torch.linalg.qr(stacked)
    return Basis(Q, None), Rf[..., n_in:]


def _cholesky_qr(stacked: torch.Tensor) -> tuple[Basis, torch.Tensor] | None:
    """``(Basis(S, D L⁻ᵀ), R = Lᵀ D⁻¹)`` for the columns S = ``stacked`` (:func:`reduced_basis`), or ``None`` where
    Cholesky QR would not be accurate: N_out < m, a zero column, λ_min < :data:`CHOLQR_MIN_EIG`, or a coefficient
    that overflows the run's dtype."""
    n_out, m = stacked.shape[-2:]
    if n_out < m:
        return None
    gram = (stacked.mT @ stacked).double()  # in the run's dtype (half the time in float32), factored in float64
    diag = gram.diagonal(dim1=-2, dim2=-1)
    if stacked.dtype != torch.float64 and not (bool(torch.isfinite(gram).all()) and float(diag.min()) / n_out
                                               >= GRAM_MIN_NORMAL * torch.finfo(stacked.dtype).tiny):
        s64 = stacked.double()  # products near float32's under/overflow: the Gram matrix in float64
        gram = s64.mT @ s64
    norms = gram.diagonal(dim1=-2, dim2=-1).sqrt()
    if not bool((norms > 0).all()):
        return None
    scaled = gram / (norms[..., :, None] * norms[..., None, :])
    if float(torch.linalg.eigvalsh(scaled).min()) < CHOLQR_MIN_EIG:
        return None
    lower = torch.linalg.cholesky(scaled)  # scaled = L Lᵀ
    eye = torch.eye(m, dtype=lower.dtype, device=lower.device).expand_as(lower)
    t = (torch.linalg.solve_triangular(lower.mT, eye, upper=True) / norms[..., :, None]).to(stacked.dtype)  # D L⁻ᵀ
    if not bool(torch.isfinite(t).all()):  # 1/‖column‖ can overflow float32 for subnormal columns
        return None
    return Basis(stacked, t), (lower.mT * norms[..., None, :]).to(stacked.dtype)  # R = Lᵀ D⁻¹


def reduced_targets(y: torch.Tensor, basis: Basis) -> tuple[torch.Tensor, torch.Tensor]:
    """The targets in the basis Q, ``Y Q`` (R, P, d), and the part of Y outside span Q, ``‖Y − Y Q Qᵀ‖²`` (R,)
    (0 for one-hot X, whose Y lies in span Σʸˣ)."""
    yq = basis.project(y)
    return yq, ((y - basis.expand(yq.mT).mT) ** 2).sum(dim=(-2, -1))


def _nan0(t: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0)


def _chain(x: torch.Tensor, lower: list[torch.Tensor], identity: bool) -> list[torch.Tensor]:
    """[X, X W_1ᵀ, X W_1ᵀ W_2ᵀ, …] for stacks of weights (…, out, in). ``identity``: X = I (one-hot items in
    order, as the tutorial's data), where X W_1ᵀ is W_1ᵀ itself — bit for bit the product (1·w + 0·… = w)."""
    hs = [x]
    for i, w in enumerate(lower):
        hs.append(w.mT if identity and i == 0 else hs[-1] @ w.mT)
    return hs


def reduced_loop(x: torch.Tensor, yq: torch.Tensor, const: torch.Tensor, lower0: list[torch.Tensor],
                 b0: torch.Tensor, lr: torch.Tensor, n_epochs: int, *, norm: float, n_modes: int,
                 q_track: torch.Tensor | None = None, items: list[int] | None = None, record_modes: bool = True,
                 record_rsm: bool = True, stop_on_divergence: bool = True,
                 on_epoch: Callable[[int], None] | None = None) -> EngineResult:
    """Full-batch SGD of R chains in reduced coordinates (module docstring), with deferred records.

    ``x`` (P, N_in) shared; ``yq`` (R, P, d) the targets in each run's basis; ``const`` (R,) ``‖Y − Y Q Qᵀ‖²``;
    ``lower0`` [W_1 … W_{L−1}] each (R, out, in); ``b0`` (R, d, N_{L−1}) = Qᵀ W_L; ``lr`` (R,); ``norm`` such that
    the loss is ``norm · ‖out − Y‖²_F``; ``q_track`` (R, d) the rows ``Q[j]`` of a tracked feature j and ``items``
    the tracked items. Returns the records and the final reduced weights ``[W_1 … W_{L−1}, B]``. With
    ``stop_on_divergence`` the loop ends at the first buffer flush where every run (or the only run) diverged.
    """
    R, P, d = yq.shape
    dt, dev = b0.dtype, x.device
    T = n_epochs + 1
    # One run (saxe.train): the steps work on plain matrices (addmm instead of baddbmm: less dispatch per epoch,
    # the same arithmetic); records and results keep the run axis.
    single = R == 1
    ws = [(w[0] if single else w).clone() for w in lower0]
    B = (b0[0] if single else b0).clone()
    mm = torch.addmm if single else torch.baddbmm
    per_epoch = sum(w.numel() for w in ws + [B]) * B.element_size()
    K = int(max(1, min(MAX_BUFFERED_EPOCHS, RECORD_BUFFER_BYTES // max(per_epoch, 1), T)))
    pending: list[list[torch.Tensor]] = []  # the weights of the epochs not yet recorded (each step makes new tensors)
    identity = x.shape[0] == x.shape[1] and bool(torch.equal(x, torch.eye(x.shape[0], dtype=x.dtype,
                                                                           device=x.device)))

    losses = torch.full((R, T), float("nan"), dtype=dt, device=dev)
    modes = torch.full((R, T, n_modes), float("nan"), dtype=dt, device=dev) if record_modes else None
    rsms = torch.full((R, T, P, P), float("nan"), dtype=dt, device=dev) if record_rsm and ws else None
    ills = (torch.full((R, T, len(items)), float("nan"), dtype=dt, device=dev)
            if q_track is not None and items is not None else None)
    diverged_at = torch.full((R,), -1, dtype=torch.long)
    reason = [""] * R
    alive = torch.ones(R, dtype=torch.bool)
    zero_loss = ((yq * yq).sum(dim=(-2, -1)) + const) * norm
    limit: torch.Tensor | None = None
    lr_coef = (2.0 * norm * lr.to(dt)).view(R, 1, 1)  # lr · ∂loss/∂out factor, per run
    x_b, yq_b, coef_b = (x, yq[0], lr_coef[0]) if single else (x.expand(R, -1, -1), yq, lr_coef)

    def flush(k0: int, k1: int) -> torch.Tensor:
        """Records of epochs k0 … k1−1 from the buffered weights; returns the runs newly found diverged."""
        nonlocal limit
        stored = [torch.stack(layer) for layer in zip(*pending)]  # each (n, R, out, in)
        if single:
            stored = [w.unsqueeze(1) for w in stored]
        pending.clear()
        hs = _chain(x, stored[:-1], identity)  # (n, R, P, ·) (x broadcasts)
        out_r = hs[-1] @ stored[-1].mT  # (n, R, P, d)
        err = out_r - yq
        loss = (err.square().sum(dim=(-2, -1)) + const) * norm  # (n, R)
        losses[:, k0:k1] = loss.mT
        if limit is None:
            limit = LOSS_DIVERGENCE_FACTOR * torch.maximum(loss[0], zero_loss)
        if modes is not None:
            m = stored[-1]
            for w in reversed(stored[:-1]):
                m = m @ w
            # non-finite entries (a run that blew up) would make the SVD raise: zero them; those rows are NaN below
            modes[:, k0:k1] = torch.linalg.svdvals(_nan0(m))[..., :n_modes].transpose(0, 1)
        if rsms is not None:
            rsms[:, k0:k1] = (hs[1] @ hs[1].mT).transpose(0, 1)
        if ills is not None and q_track is not None and items is not None:
            ills[:, k0:k1] = (out_r[:, :, items, :] * q_track[:, None, :]).sum(-1).transpose(0, 1)
        bad = ~(loss <= limit)  # (n, R); NaN compares False, so NaN counts as bad
        new = bad.any(dim=0).cpu() & alive
        for r in torch.nonzero(new).flatten().tolist():
            k = int(torch.nonzero(bad[:, r])[0])
            diverged_at[r] = k0 + k
            lv = float(loss[k, r])
            reason[r] = ("the loss is no longer finite" if lv != lv or abs(lv) == float("inf") else
                         f"the loss grew past {LOSS_DIVERGENCE_FACTOR:g}× its initial value")
        alive.logical_and_(~new)
        if on_epoch is not None:
            for k in range(k0, k1):
                on_epoch(k)
        return new

    depth2_identity = identity and len(ws) == 1

    def step(ws: list[torch.Tensor], B: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """One SGD update of every run (weights → new tensors; the old ones stay pending for the records)."""
        if depth2_identity:  # X = I: h = W_1ᵀ, and W_1 − (g B)ᵀ = W_1 − Bᵀgᵀ is one product (with the old B)
            h, bt = ws[0].mT, B.mT
            g = coef_b * mm(yq_b, h, bt, beta=-1.0)
            gt = g.mT
            return [mm(ws[0], bt, gt, alpha=-1.0)], mm(B, gt, h, alpha=-1.0)
        hs = _chain(x_b, ws, identity)
        g = coef_b * mm(yq_b, hs[-1], B.mT, beta=-1.0)  # lr · ∂loss/∂out_r = lr·c·(out_r − Y Q)
        new_b = mm(B, g.mT, hs[-1], alpha=-1.0)
        delta = g @ B  # backpropagated before any weight changes
        new_ws: list[torch.Tensor] = []
        for i in range(len(ws) - 1, -1, -1):
            # W_1 − δᵀ X: with X = I that is W_1 − δᵀ exactly
            new_ws.insert(0, ws[i] - delta.mT if i == 0 and identity else
                          mm(ws[i], delta.mT, hs[i], alpha=-1.0))
            if i:
                delta = delta @ ws[i]
        return new_ws, new_b

    k0 = 0
    for k in range(T):
        pending.append([*ws, B])
        if k - k0 == K - 1 or k == n_epochs:
            new = flush(k0, k + 1)
            k0 = k + 1
            if bool(new.any()):
                keep = alive.to(device=dev, dtype=dt).view((R, 1, 1)[single:])  # freeze diverged runs at zero
                ws = [_nan0(w) * keep for w in ws]
                B = _nan0(B) * keep
                if stop_on_divergence and (R == 1 or not bool(alive.any())):
                    break
        if k == n_epochs:
            break
        ws, B = step(ws, B)
    for r in torch.nonzero(diverged_at >= 0).flatten().tolist():  # a diverged run's rows end at its detection
        k = int(diverged_at[r])
        for rec in (losses, modes, rsms, ills):
            if rec is not None:
                rec[r, k:] = float("nan")
    final = [w.unsqueeze(0) if single else w for w in ws + [B]]
    return EngineResult(losses, modes, rsms, ills, final, diverged_at, reason)
