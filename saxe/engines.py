r"""Training engines: plain autograd SGD, and an exact reduced-coordinate SGD batched over runs.

Both compute full-batch gradient descent on ``nn.MSELoss(reduction)`` of a bias-free linear chain
``out = X W_1ᵀ ⋯ W_Lᵀ`` and record, for every epoch k = 0 … n (the weights after k updates): the loss, the
singular values of W_tot, the first hidden layer's RSM ``h hᵀ`` and one output ``out[i, j]``.

**Reduced coordinates (exact).** The gradient of the last layer is
``∂loss/∂W_L = c (W_tot Σˣˣ − Σʸˣ) W_belowᵀ`` (c = 2/(P·N_out) for 'mean', 2 for 'sum'), whose columns lie
in span(Σʸˣ) + span(W_L). Hence the columns of W_L(t) stay in the fixed space
``span(Σʸˣ) + span(W_L(0))`` of dimension d ≤ N_in + N_{L−1}. With an orthonormal basis Q (N_out, d) of it,
``W_L = Q B`` and SGD on B with targets ``Y Q`` reproduces the full iterates *exactly* (in exact arithmetic):
the lower layers only see W_L through ``W_Lᵀ (Σʸˣ − W_tot Σˣˣ) = Bᵀ Qᵀ(…)``; singular values of W_tot equal
those of ``B W_{L−1} ⋯ W_1``; the loss is ``‖X W_belowᵀ Bᵀ − Y Q‖² + ‖Y − Y Q Qᵀ‖²`` (normalised as torch);
an output entry is ``out[i, j] = (X W_belowᵀ Bᵀ)[i] · Q[j]``. Each step costs O(P·d·N_h) instead of
O(P·N_out·N_h): ≈ N_out/d ≈ 260× fewer FLOPs for the tutorial's 8-30-10000 net.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

__all__ = ["EngineResult", "LOSS_DIVERGENCE_FACTOR", "reduced_sgd", "autograd_sgd", "loss_coefficient"]

#: A run counts as diverged when its loss is not finite or exceeds this many times the larger of its initial
#: loss and the loss of the zero network (mean Y²): gradient descent below the stable learning rate never
#: raises the loss anywhere near that much, and past it the loss grows geometrically, so the exact value only
#: moves the detection epoch by a few steps.
LOSS_DIVERGENCE_FACTOR = 1e4


@dataclass
class EngineResult:
    """Records of R runs (R = 1 for :func:`autograd_sgd`); row k of every record is after k updates."""

    losses: torch.Tensor  # (R, n+1)
    modes: torch.Tensor | None  # (R, n+1, min(N_in, N_out)) singular values of W_tot, descending
    rsms: torch.Tensor | None  # (R, n+1, P, P) first hidden layer's RSM
    illusions: torch.Tensor | None  # (R, n+1) out[i, j], or (R, n+1, m) for m tracked items i
    weights: list[torch.Tensor]  # final weights [W_1 … W_L], each (R, out, in)
    diverged_at: torch.Tensor  # (R,) epoch at which divergence was detected, −1 if never
    reason: list[str]  # per run: why it diverged ('' if it did not)


def _track_items(track) -> list[int]:
    """The tracked item rows of ``track = (i, j)``: i an int or a sequence of ints."""
    if track is None:
        return []
    return [int(track[0])] if isinstance(track[0], int) else [int(i) for i in track[0]]


def _squeeze_track(ills, track):
    """(R, n+1) for one tracked item given as an int, (R, n+1, m) for a sequence of items."""
    if ills is None or track is None or not isinstance(track[0], int):
        return ills
    return ills[..., 0]


def loss_coefficient(n_samples: int, n_out: int, reduction: str) -> float:
    """``norm`` such that torch's loss is ``norm · ‖out − Y‖²_F``: 1/(P·N_out) for 'mean', 1 for 'sum'."""
    return 1.0 / (n_samples * n_out) if reduction == "mean" else 1.0


def _orthonormal_basis(x: torch.Tensor, y: torch.Tensor, w_last: torch.Tensor) -> torch.Tensor:
    """Q (R, N_out, d): orthonormal columns spanning span(Yᵀ X) + span(W_L(0)) for each run.

    Householder QR of the stacked columns ``[Σʸˣ, W_L(0)]`` always returns orthonormal columns whose span
    contains every column, also when some are zero or dependent (W_L(0) = 0, rank-deficient Σʸˣ) or when
    d = N_in + N_h exceeds N_out (then Q spans everything and d = N_out).
    """
    sigma_yx = y.mT @ x  # (N_out, N_in), shared by all runs
    stacked = torch.cat([sigma_yx.expand(w_last.shape[0], -1, -1), w_last], dim=-1)
    return torch.linalg.qr(stacked)[0]


def reduced_sgd(x: torch.Tensor, y: torch.Tensor, weights0: list[torch.Tensor], lr: torch.Tensor, n_epochs: int, *,
                reduction: str = "mean", track: tuple | None = None, record_modes: bool = True,
                record_rsm: bool = True, stop_on_divergence: bool = True,
                on_epoch: Callable[[int], None] | None = None, check_every: int = 1) -> EngineResult:
    """Exact SGD of R linear chains at once in reduced coordinates (see module docstring).

    ``x`` (P, N_in), ``y`` (P, N_out) are shared; ``weights0`` = [W_1 … W_L], each (R, out, in); ``lr`` (R,).
    A diverged run is frozen at zero weights, its later records are NaN and ``diverged_at`` holds the epoch;
    with ``stop_on_divergence`` the loop ends as soon as every run has diverged or one has (R = 1).
    """
    R = weights0[0].shape[0]
    P, n_out = y.shape
    dt = weights0[0].dtype
    norm = loss_coefficient(P, n_out, reduction)
    coef = 2.0 * norm
    ws = [w.clone() for w in weights0[:-1]]
    Q = _orthonormal_basis(x, y, weights0[-1])
    B = Q.mT @ weights0[-1]  # (R, d, N_h)
    yq = y @ Q  # (R, P, d)
    const = ((y - yq @ Q.mT) ** 2).sum(dim=(-2, -1))  # the part of Y outside span Q (0 for one-hot X)
    q_track = Q[:, track[1], :] if track is not None else None  # (R, d)
    items = _track_items(track)

    n_modes = min(x.shape[1], n_out)
    losses = torch.full((R, n_epochs + 1), float("nan"), dtype=dt, device=x.device)
    modes = torch.full((R, n_epochs + 1, n_modes), float("nan"), dtype=dt, device=x.device) if record_modes else None
    rsms = (torch.full((R, n_epochs + 1, P, P), float("nan"), dtype=dt, device=x.device)
            if record_rsm and len(weights0) > 1 else None)
    ills = (torch.full((R, n_epochs + 1, len(items)), float("nan"), dtype=dt, device=x.device)
            if track is not None else None)
    diverged_at = torch.full((R,), -1, dtype=torch.long)
    reason = [""] * R
    alive = torch.ones(R, dtype=torch.bool, device=x.device)
    limit = None

    lr_coef = (coef * lr.to(dt)).view(R, 1, 1)  # lr · ∂loss/∂out factor, per run
    x_b = x.expand(R, -1, -1)
    any_dead = False
    for k in range(n_epochs + 1):
        hs = [x_b]
        for w in ws:
            hs.append(hs[-1] @ w.mT)
        out_r = hs[-1] @ B.mT  # (R, P, d)
        err = out_r - yq
        loss = (err.square().sum(dim=(-2, -1)) + const) * norm
        if limit is None:
            limit = LOSS_DIVERGENCE_FACTOR * torch.maximum(loss, (y * y).sum() * norm)
        losses[:, k] = loss
        if modes is not None:
            m = B
            for w in reversed(ws):
                m = m @ w
            # non-finite entries (a run that blew up in this very step) would make the SVD raise: zero them;
            # the divergence check below then discards the row (NaN), as autograd_sgd does
            modes[:, k] = torch.linalg.svdvals(torch.nan_to_num(m, nan=0.0, posinf=0.0, neginf=0.0))
        if rsms is not None:
            rsms[:, k] = hs[1] @ hs[1].mT
        if ills is not None and q_track is not None:
            ills[:, k] = (out_r[:, items, :] * q_track[:, None, :]).sum(-1)
        bad = ~(loss <= limit)  # NaN compares False, so NaN counts as bad
        if any_dead:
            bad &= alive
        if k % check_every == 0 or k == n_epochs or any_dead:
            if bool(bad.any()):
                for r in torch.nonzero(bad).flatten().tolist():
                    diverged_at[r] = k
                    lv = float(loss[r])
                    reason[r] = ("the loss is no longer finite" if lv != lv or abs(lv) == float("inf") else
                                 f"the loss grew past {LOSS_DIVERGENCE_FACTOR:g}× its initial value")
                alive &= ~bad.to(alive.device)
                any_dead = True
                keep = alive.view(R, 1, 1).to(dt)
                ws = [torch.nan_to_num(w, nan=0.0, posinf=0.0, neginf=0.0) * keep for w in ws]
                B = torch.nan_to_num(B, nan=0.0, posinf=0.0, neginf=0.0) * keep
                # the update below reuses this epoch's forward pass: clean it too, or the frozen (zero) weights
                # of a run that went non-finite are at once overwritten with NaN again
                err = torch.nan_to_num(err, nan=0.0, posinf=0.0, neginf=0.0) * keep
                hs = [torch.nan_to_num(h, nan=0.0, posinf=0.0, neginf=0.0) * keep for h in hs]
                if stop_on_divergence and (R == 1 or not bool(alive.any())):
                    break
        if any_dead:  # frozen runs: their rows stay NaN
            dead = ~alive
            losses[dead, k] = torch.nan
            if modes is not None:
                modes[dead, k] = torch.nan
            if rsms is not None:
                rsms[dead, k] = torch.nan
            if ills is not None:
                ills[dead, k] = torch.nan
        if on_epoch is not None:
            on_epoch(k)
        if k == n_epochs:
            break
        g = lr_coef * err  # lr · ∂loss/∂out_r
        delta = g @ B  # backpropagated before any weight changes
        B = torch.baddbmm(B, g.mT, hs[-1], alpha=-1.0)
        new_ws: list[torch.Tensor] = []
        for i in range(len(ws) - 1, -1, -1):
            new_ws.insert(0, torch.baddbmm(ws[i], delta.mT, hs[i], alpha=-1.0))
            if i:
                delta = delta @ ws[i]
        ws = new_ws
    final = ws + [Q @ B]
    return EngineResult(losses, modes, rsms, _squeeze_track(ills, track), final, diverged_at, reason)


def _forward_parts(model: nn.Module, x: torch.Tensor):
    res = model(x)
    if isinstance(res, tuple):
        out, hid = res
        if isinstance(hid, (tuple, list)):
            hid = hid[0] if len(hid) else None
        return out, hid
    return res, None


def autograd_sgd(model: nn.Module, params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor, lr: float,
                 n_epochs: int, *, reduction: str = "mean", track: tuple | None = None,
                 record_modes: bool = True, record_rsm: bool = True,
                 on_epoch: Callable[[int], None] | None = None) -> EngineResult:
    """Plain full-batch SGD with ``torch.optim.SGD`` and ``nn.MSELoss`` through autograd, as the tutorial.

    ``params`` = [W_1 … W_L] of ``model``. The loss, RSM and output of row k come from the forward pass
    of epoch k (before its update) and the singular values from the same weights, so row k is after k updates.
    Stops at the first diverged epoch (``diverged_at`` set).
    """
    P, n_out = y.shape
    dt = params[0].dtype
    opt = torch.optim.SGD(params, lr=lr)
    criterion = nn.MSELoss(reduction=reduction)
    n_modes = min(x.shape[1], n_out)
    losses = torch.full((1, n_epochs + 1), float("nan"), dtype=dt, device=x.device)
    modes = torch.full((1, n_epochs + 1, n_modes), float("nan"), dtype=dt, device=x.device) if record_modes else None
    rsms = torch.full((1, n_epochs + 1, P, P), float("nan"), dtype=dt, device=x.device) \
        if record_rsm and len(params) > 1 else None
    items = _track_items(track)
    ills = (torch.full((1, n_epochs + 1, len(items)), float("nan"), dtype=dt, device=x.device)
            if track is not None else None)
    diverged_at = torch.full((1,), -1, dtype=torch.long)
    reason = [""]
    limit = None
    for k in range(n_epochs + 1):
        opt.zero_grad(set_to_none=True)
        out, hid = _forward_parts(model, x)
        loss = criterion(out, y)
        with torch.no_grad():
            losses[0, k] = loss.detach()
            if modes is not None:
                wt_t = params[0].T  # W_totᵀ = W_1ᵀ ⋯ W_Lᵀ: torch's fast layout for these shapes
                for w in params[1:]:
                    wt_t = wt_t @ w.T
                modes[0, k] = torch.linalg.svdvals(torch.nan_to_num(wt_t.mT, nan=0.0, posinf=0.0, neginf=0.0))
            if rsms is not None:
                rsms[0, k] = hid @ hid.T
            if ills is not None and track is not None:
                ills[0, k] = out[items, track[1]]
        lv = float(loss.detach())
        if limit is None:
            limit = LOSS_DIVERGENCE_FACTOR * max(lv, float((y * y).sum()) * loss_coefficient(P, n_out, reduction))
        if not (lv <= limit):  # also catches NaN
            diverged_at[0] = k
            reason[0] = ("the loss is no longer finite" if lv != lv or abs(lv) == float("inf")
                         else f"the loss grew past {LOSS_DIVERGENCE_FACTOR:g}× its initial value")
            break
        if on_epoch is not None:
            on_epoch(k)
        if k == n_epochs:
            break
        loss.backward()
        opt.step()
    final = [p.detach().clone().unsqueeze(0) for p in params]
    return EngineResult(losses, modes, rsms, _squeeze_track(ills, track), final, diverged_at, reason)
