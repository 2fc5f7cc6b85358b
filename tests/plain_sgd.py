"""An independent float64 reference: plain torch full-batch SGD on ``nn.MSELoss``, nothing from :mod:`saxe`.

Theory is checked against this loop (``torch.optim.SGD`` + autograd on ``nn.Sequential`` of bias-free
``nn.Linear``) so that a shared mistake of our engines and our theory cannot hide. Row k of every record is
after k updates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class PlainRecord:
    w_tot: np.ndarray  # (n+1, N_out, N_in)
    losses: np.ndarray  # (n+1,)
    rsms: np.ndarray | None  # (n+1, P, P), first hidden layer
    diverged_at: int  # −1 if never (loss non-finite or above 1e4 × its start)

    @property
    def modes(self) -> np.ndarray:
        return np.linalg.svd(self.w_tot, compute_uv=False)


def plain_steps(X, Y, weights, lr: float, n_epochs: int):
    """Yield ``(k, W_tot, loss, rsm)`` after k = 0 … n_epochs updates (rsm None at depth 1); stops after a yield
    whose loss is non-finite or above 1e4 × its start (divergence), so nothing beyond it is computed."""
    layers = [nn.Linear(w.shape[1], w.shape[0], bias=False, dtype=torch.float64) for w in weights]
    with torch.no_grad():
        for layer, w in zip(layers, weights):
            layer.weight.copy_(torch.as_tensor(np.asarray(w, dtype=np.float64)))
    x, y = torch.tensor(np.asarray(X, np.float64)), torch.tensor(np.asarray(Y, np.float64))  # copies
    opt, loss_fn = torch.optim.SGD([l.weight for l in layers], lr=lr), nn.MSELoss()
    start = None
    for k in range(n_epochs + 1):
        h = x @ layers[0].weight.T
        out = h
        for layer in layers[1:]:
            out = out @ layer.weight.T
        loss = loss_fn(out, y)
        with torch.no_grad():
            W = layers[0].weight
            for layer in layers[1:]:
                W = layer.weight @ W
            value = float(loss)
            yield k, W.numpy().copy(), value, (h @ h.T).numpy().copy() if len(layers) > 1 else None
        start = value if start is None else start
        if not np.isfinite(value) or value > 1e4 * start:
            return
        if k < n_epochs:
            opt.zero_grad()
            loss.backward()
            opt.step()


def plain_sgd(X, Y, weights, lr: float, n_epochs: int) -> PlainRecord:
    """Train bias-free linear layers initialised at ``weights`` [W_1 … W_L] (torch layout) with lr for n_epochs."""
    w_tot, losses, rsms, k = [], [], [], -1
    for k, W, loss, rsm in plain_steps(X, Y, weights, lr, n_epochs):
        w_tot.append(W)
        losses.append(loss)
        rsms.append(rsm)
    diverged = not np.isfinite(losses[-1]) or losses[-1] > 1e4 * losses[0]
    return PlainRecord(np.array(w_tot), np.array(losses), None if rsms[0] is None else np.array(rsms),
                       k if diverged else -1)
