"""What is measured on a network: the SVD of W_tot and representational similarity matrices."""
from __future__ import annotations

import torch
from torch import nn

from .errors import check_positive_int
from .models import w_tot, weights

__all__ = ["net_svd", "net_rsm"]


def net_svd(model: nn.Module, in_dim):
    """``(U, S, V)`` of ``W_tot = W_L ⋯ W_1`` (thin SVD, S descending, ``W_tot = U diag(S) Vᵀ``).

    ``in_dim`` is kept for the tutorial's signature and checked against the model's input width.
    """
    in_dim = check_positive_int("in_dim", in_dim)
    n_in = weights(model)[0].shape[1]
    if n_in != in_dim:
        raise ValueError(f"in_dim must equal the model's input width {n_in}, got {in_dim=}")
    U, S, Vh = torch.linalg.svd(w_tot(model), full_matrices=False)
    return U, S, Vh.mT


def net_rsm(h: torch.Tensor) -> torch.Tensor:
    """Representational similarity matrix ``h hᵀ`` of hidden activity h (P, N_hidden): (P, P)."""
    if not isinstance(h, torch.Tensor) or h.dim() != 2:
        raise ValueError(f"h must be a 2-D torch.Tensor (samples × units), got {type(h).__name__} "
                         f"{tuple(getattr(h, 'shape', ()))}")
    return h @ h.T
