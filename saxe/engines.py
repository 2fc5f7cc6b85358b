r"""Training engines: plain autograd SGD (:func:`autograd_sgd`) and the exact reduced-coordinate SGD
(:func:`reduced_sgd`, batched over runs; its loop and basis live in :mod:`saxe.reduced`, its use in sweeps in
:mod:`saxe.batched`).

Both compute full-batch gradient descent on ``nn.MSELoss(reduction)`` of a bias-free linear chain
``out = X W_1ᵀ ⋯ W_Lᵀ`` and record, for every epoch k = 0 … n (the weights after k updates): the loss, the
singular values of W_tot, the first hidden layer's RSM ``h hᵀ`` and one output ``out[i, j]``.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .reduced import LOSS_DIVERGENCE_FACTOR, EngineResult, reduced_basis, reduced_loop, reduced_targets

__all__ = ["EngineResult", "LOSS_DIVERGENCE_FACTOR", "reduced_sgd", "autograd_sgd", "loss_coefficient"]


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


def reduced_sgd(x: torch.Tensor, y: torch.Tensor, weights0: list[torch.Tensor], lr: torch.Tensor, n_epochs: int, *,
                reduction: str = "mean", track: tuple | None = None, record_modes: bool = True,
                record_rsm: bool = True, stop_on_divergence: bool = True,
                on_epoch: Callable[[int], None] | None = None) -> EngineResult:
    """Exact SGD of R linear chains at once in reduced coordinates (:mod:`saxe.reduced`).

    ``x`` (P, N_in), ``y`` (P, N_out) are shared; ``weights0`` = [W_1 … W_L], each (R, out, in); ``lr`` (R,).
    A diverged run is frozen at zero weights, its later records are NaN and ``diverged_at`` holds the epoch;
    with ``stop_on_divergence`` the loop ends once every run has diverged or one has (R = 1).
    """
    P, n_out = y.shape
    Q, b0 = reduced_basis(y.mT @ x, weights0[-1])
    yq, const = reduced_targets(y, Q)  # (R, P, d), (R,)
    res = reduced_loop(x, yq, const, list(weights0[:-1]), b0, lr, n_epochs,
                       norm=loss_coefficient(P, n_out, reduction), n_modes=min(x.shape[1], n_out),
                       q_track=Q.rows(track[1]) if track is not None else None, items=_track_items(track),
                       record_modes=record_modes, record_rsm=record_rsm, stop_on_divergence=stop_on_divergence,
                       on_epoch=on_epoch)
    res.weights = res.weights[:-1] + [Q.expand(res.weights[-1])]
    res.illusions = _squeeze_track(res.illusions, track)
    return res


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
                if hid is None:  # a model that returns only its output: the first hidden layer from the weights
                    hid = x @ params[0].T
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
