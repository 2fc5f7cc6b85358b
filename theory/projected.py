r"""Exact SGD of a linear network of any depth in the data's mode basis: the projected weights.

**Other depths: the projected weights.** ``B_1 = W_1 V̄``, ``B_l = W_l`` (1 < l < L), ``B_L = Ūᵀ W_L`` with
``Ū = [U, Q_out]``, ``V̄ = [V, Q_in]`` (Q_out, Q_in span the parts of W_L's columns / W_1's rows outside span U /
span V). With Σˣˣ = I the loss is ``½‖Σʸˣ − W_tot‖² + const = ½‖S̄ − B_L⋯B_1‖² + const`` and the gradient of each
layer is ``(B_L⋯B_{l+1})ᵀ (S̄ − B_L⋯B_1)(B_{l−1}⋯B_1)ᵀ``: plain gradient descent on the small projected weights
is the exact SGD of the full net (details in :func:`project_weights`).

Why exact: the columns of W_L outside span(U) and the rows of W_1 outside span(V) stay in the fixed subspaces
spanned at init (with whitened inputs their updates are ``W_L⊥ ← W_L⊥ (I − η W_{<L} W_{<L}ᵀ)`` and alike), so
carrying those few extra directions (at most N_{L−1} and N_1) makes the small system the full one. Keeping only
the r data modes (``complement=False``) neglects them: a relative O(init²) shift of later modes (≈ 5e-3·s at
depth 3, γ = 0.1).

Glossary: s (r,) singular values of Σʸˣ; U (N_out, r), V (N_in, r) from :func:`theory.io_svd`; Ū, V̄ the extended
bases; B_l projected weights; M̄ = B_L⋯B_1 so that ``W_tot = Ū M̄ V̄ᵀ``; η per-epoch rate; τ = 1/η; t in epochs.

These functions take the mode basis (U, s, V) of whitened data directly; they are the whitened case of
:mod:`theory.state` (the one exact state, which also covers Σˣˣ ≠ I) and call its kernels.

References: Saxe, McClelland & Ganguli, ICLR 2014, arXiv:1312.6120; PNAS 116:11537 (2019).
"""
from __future__ import annotations

import numpy as np

from ._validate import as_float_array, integer, positive, times
from .coupled import _mode_basis, _strengths
from .state import ODE_RTOL, chained_weights, flow, iterate, reduced_weights

__all__ = [
    "extended_basis",
    "project_weights",
    "projected_trajectory_discrete",
    "projected_trajectory_continuous",
    "projected_modes_discrete",
    "projected_modes_continuous",
    "ODE_RTOL",
]


def extended_basis(weights, U, V) -> tuple[np.ndarray, np.ndarray]:
    r"""``(Ū, V̄) = ([U, Q_out], [V, Q_in])``: the data's mode bases extended by the invariant outside parts.

    Q_out spans the columns of W_L outside span(U), Q_in the rows of W_1 outside span(V) (see
    :func:`project_weights`); ``W_tot(t) = Ū M̄(t) V̄ᵀ`` exactly, with M̄ = B_L⋯B_1 of the projected weights.
    """
    U, V = _mode_basis(U, V)
    ws = chained_weights(weights, V.shape[0], U.shape[0])
    _, Ubar, Vbar = reduced_weights(U, V, ws)
    return Ubar, Vbar


def project_weights(weights, U, V, *, complement: bool = True) -> list[np.ndarray]:
    r"""Projected weights ``[W_1 V̄, W_2, …, W_{L−1}, Ūᵀ W_L]`` (``[Uᵀ W_1 V]`` for L = 1); M = top-left r×r of B_L⋯B_1.

    ``Ū = [U, Q_out]``, ``V̄ = [V, Q_in]``: with ``complement=True`` (default) Q_out spans the part of W_L's columns
    outside span(U) and Q_in the part of W_1's rows outside span(V) (at most N_hL and N_h1 extra directions).
    Those subspaces are invariant under SGD (whitened inputs: ``W_L⊥ ← W_L⊥ (I − η W_{<L} W_{<L}ᵀ)`` and alike), so
    gradient descent on ``½‖S̄ − B_L⋯B_1‖²`` (S̄ = S padded with zeros) is the *exact* SGD of the full network for
    any init size. ``complement=False`` keeps only ``B_1 = W_1 V``, ``B_L = Uᵀ W_L`` (r-dimensional): exact only if
    the outside parts vanish; they start O(init) and shift each later mode's rise by a relative O(init²) (a real
    1e-3 error at depth 3, γ = 1e-2). Reference: Saxe et al., arXiv:1312.6120; PNAS 116:11537 (2019), SI.
    """
    U, V = _mode_basis(U, V)
    ws = chained_weights(weights, V.shape[0], U.shape[0])
    if complement:
        U, V = extended_basis(ws, U, V)
    if len(ws) == 1:  # depth 1: W ← W + η(Σʸˣ − W) is linear; the outside parts only decay, like (1 − η)^k
        return [U.T @ ws[0] @ V]
    return [ws[0] @ V, *[w.copy() for w in ws[1:-1]], U.T @ ws[-1]]


def _layers_arg(projected, r: int) -> list[np.ndarray]:
    if isinstance(projected, np.ndarray) or not hasattr(projected, "__len__") or len(projected) == 0:
        raise ValueError(f"projected must be the non-empty list from project_weights, got {type(projected).__name__}")
    first = as_float_array("projected[0]", projected[0], ndim=2)
    last = as_float_array("projected[-1]", projected[-1], ndim=2)
    if first.shape[1] < r or last.shape[0] < r:
        raise ValueError(f"projected must map the {r} input modes (projected[0] with >= {r} columns) to the {r} "
                         f"output modes (projected[-1] with >= {r} rows), got {first.shape} and {last.shape}")
    return chained_weights(projected, first.shape[1], last.shape[0])


def _target(s: np.ndarray, layers) -> np.ndarray:
    """S̄: diag(s) in the top-left corner of a (rows of B_L) × (columns of B_1) zero matrix."""
    S = np.zeros((layers[-1].shape[0], layers[0].shape[1]))
    S[: s.size, : s.size] = np.diag(s)
    return S


def projected_trajectory_discrete(n_steps, s, projected, eta) -> tuple[np.ndarray, np.ndarray]:
    r"""SGD on the projected weights: ``B_l ← B_l + η (B_L⋯B_{l+1})ᵀ (S̄ − B_L⋯B_1)(B_{l−1}⋯B_1)ᵀ``.

    Returns ``(M̄, G)`` after k updates, k = 0..n_steps: the full product ``M̄_k = B_L⋯B_1`` (n_steps+1, R, C) —
    ``W_tot = Ū M̄ V̄ᵀ`` with the bases of :func:`extended_basis` — and the first layer's Gram ``G_k = B_1ᵀB_1``
    (n_steps+1, C, C), so that the first hidden layer's RSM is exactly ``X V̄ G V̄ᵀ Xᵀ``. Any depth L ≥ 1
    (L = 1: G = I). η per epoch. Raises ``ValueError`` if η makes SGD diverge (:func:`theory.state.iterate`).
    Reference: arXiv:1312.6120.
    """
    n_steps, s, eta = integer("n_steps", n_steps), _strengths(s), positive("eta", eta)
    layers = _layers_arg(projected, s.size)
    return iterate(n_steps, layers, _target(s, layers), eta)


def projected_modes_discrete(n_steps, s, projected, eta) -> np.ndarray:
    r"""The mode matrix ``M_k = Uᵀ W_tot V`` (top-left r×r block of B_L⋯B_1) after k = 0..n_steps updates of the
    projected SGD (:func:`projected_trajectory_discrete`): (n_steps+1, r, r). Reference: arXiv:1312.6120.
    """
    prods, _ = projected_trajectory_discrete(n_steps, s, projected, eta)
    r = np.asarray(s).size
    return prods[:, :r, :r].copy()


def projected_trajectory_continuous(t, s, projected, tau, *, rtol: float = ODE_RTOL, atol: float | None = None):
    r"""Gradient flow ``τ dB_l/dt = (B_L⋯B_{l+1})ᵀ (S̄ − B_L⋯B_1)(B_{l−1}⋯B_1)ᵀ`` of the projected weights.

    :func:`theory.state.flow` (solve_ivp, DOP853) with target S̄; L = 1 uses ``M(t) = S + (M_0 − S) e^{−t/τ}``.
    t finite epochs (the ODE cannot be run to ``np.inf``). Returns ``(M̄, G)`` as
    :func:`projected_trajectory_discrete` for a 1-d array t: (len(t), R, C) and (len(t), C, C). τ in epochs.
    Reference: Saxe et al., arXiv:1312.6120.
    """
    tt = times("t", t)
    if np.isinf(tt).any():
        raise ValueError("t must be finite for projected_modes_continuous (solve_ivp), got np.inf; the fixed point "
                         "from a generic init is diag(s) truncated to the narrowest layer")
    s, tau, rtol = _strengths(s), positive("tau", tau), positive("rtol", rtol)
    layers = _layers_arg(projected, s.size)
    flat, S = tt.reshape(-1), _target(s, layers)
    if len(layers) == 1:
        eye = np.broadcast_to(np.eye(S.shape[1]), (flat.size,) + (S.shape[1],) * 2).copy()
        return S + (layers[0] - S) * np.exp(-flat / tau)[:, None, None], eye
    return flow(flat, layers, S, tau, rtol=rtol, atol=atol)


def projected_modes_continuous(t, s, projected, tau, *, rtol: float = ODE_RTOL, atol: float | None = None):
    r"""Mode matrix ``Uᵀ W_tot V`` (top-left r×r of B_L⋯B_1) of the projected gradient flow
    (:func:`projected_trajectory_continuous`); scalar t → (r, r), array → (len(t), r, r). τ in epochs.
    """
    tt = times("t", t)
    r = np.asarray(s).size
    prods, _ = projected_trajectory_continuous(tt.reshape(-1), s, projected, tau, rtol=rtol, atol=atol)
    return prods[:, :r, :r].reshape(tt.shape + (r, r))
