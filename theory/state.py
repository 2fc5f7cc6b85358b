r"""The one exact theory state of a bias-free linear network, for every depth, width, init and input statistics.

**The state.** ``W_tot(t) = Ū M̄(t) V̄ᵀ`` with fixed orthonormal bases Ū (N_out × R), V̄ (N_in × C) and the reduced
weights ``B_1 = W_1 V̄``, ``B_l = W_l`` (1 < l < L), ``B_L = Ūᵀ W_L`` (depth 1: ``B = Ūᵀ W V̄``), ``M̄ = B_L⋯B_1``.
Full-batch SGD on ``½‖Y − X W_totᵀ‖²_F`` (rate η per epoch, :mod:`theory.correlations`) changes layer l by::

    W_l ← W_l + η W_{>l}ᵀ (Σʸˣ − W_tot Σˣˣ) W_{<l}ᵀ          (W_{>l} = W_L⋯W_{l+1}, W_{<l} = W_{l−1}⋯W_1)

**Why the reduced weights are exact.** The update of W_L has its columns in col(Σʸˣ) + col(W_L) and that of W_1
its rows in row(Σʸˣ) + row(W_1 Σˣˣ). Hence, by induction over the steps, the columns of W_L stay in the fixed
space ``span(Σʸˣ) + col(W_L(0))`` = span Ū, and the rows of W_1 stay in any Σˣˣ-invariant space V̄ that contains
``row(Σʸˣ) + row(W_1(0))``. With these bases ``Σʸˣ = Ū S̄ V̄ᵀ`` (S̄ = ŪᵀΣʸˣV̄, R × C) and ``Σˣˣ V̄ = V̄ Σ̄ˣˣ``
(Σ̄ˣˣ = V̄ᵀΣˣˣV̄), so the residual is ``Σʸˣ − W_tot Σˣˣ = Ū (S̄ − M̄ Σ̄ˣˣ) V̄ᵀ`` and the SGD of the full network is
*exactly* the SGD of the small system::

    B_l ← B_l + η (B_L⋯B_{l+1})ᵀ (S̄ − M̄ Σ̄ˣˣ) (B_{l−1}⋯B_1)ᵀ                    (:func:`descent_directions`)

for any init size, any widths (bottlenecks N_h < rank Σʸˣ included: the factors are iterated, never a Gram
matrix whose zero eigenvalues rounding could turn negative) and any Σˣˣ. Whitened inputs (Σˣˣ = I, e.g.
one-hot items) need only V̄ = [V, Q_in] with Q_in the rows of W_1(0) outside span V (R ≤ r + N_{L−1},
C ≤ r + N_1); otherwise V̄ is the whole input space (any subspace is Σˣˣ-invariant only if it is a sum of
eigenspaces, and the whole space always is). The 8-30-10000 tutorial net reduces to R = 38, C = 8.

**Observables, once, from the state** (:mod:`theory.observables`): the singular values of W_tot are those of M̄;
the first hidden layer's RSM is ``X V̄ B_1ᵀB_1 V̄ᵀ Xᵀ``; the outputs are ``(X V̄) M̄ᵀ Ūᵀ``; the loss is
``‖Y − X W*ᵀ‖² + tr(D Σ̄ˣˣ Dᵀ)`` with D = M̄* − M̄ and M̄* = S̄ Σ̄ˣˣ⁺ the least-squares map in reduced coordinates.

The kernels (:func:`product`, :func:`descent_directions`, :func:`sgd_step`) use only ``@``, ``+``, ``*`` and
``.mT``-style transposes, so they run unchanged on stacks of runs (leading batch axes, η of shape (batch,))
and on torch tensors (the sweep trains and predicts thousands of runs this way); :mod:`theory` never imports
torch.

Glossary: X (P, N_in), Y (P, N_out) data; Σʸˣ = YᵀX, Σˣˣ = XᵀX (sums over samples); U, s, V the thin SVD of
Σʸˣ (:func:`theory.io_svd`); Ū, V̄ extended bases; B_l reduced weights; M̄ (R, C) reduced end-to-end map; η per
epoch, τ = 1/η epochs; t epochs (updates).

References: Saxe, McClelland & Ganguli, arXiv:1312.6120 (2014); PNAS 116:11537 (2019).
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ._validate import as_float_array, integer, positive
from .correlations import WHITENED_RTOL, io_svd
from .errors import OrbitDivergenceError

__all__ = ["ExactState", "exact_state", "product", "descent_directions", "sgd_step", "exact_trajectory", "exact_flow",
           "iterate", "flow", "complement", "reduced_weights",
           "escape_bound", "orbit_diverged", "chained_weights", "is_whitened", "RANK_EPS_FACTOR",
           "DIVERGED_ABOVE", "ODE_RTOL"]

# A singular value of a basis candidate below this multiple of ε·size·‖B‖ is rounding noise (rank deficiency).
RANK_EPS_FACTOR = 10.0
# The exact map counts as diverged once an entry of M̄ passes this multiple of max(s_max, ‖M̄(0)‖, 1): a bounded
# SGD orbit overshoots s by at most a factor 1 + 2/(η s) (theory.stability), far below; a diverging one passes it
# within a few steps of leaving the bounded region and long before overflow.
DIVERGED_ABOVE = 1e8


def _mT(a):
    """Transpose of the last two axes, for numpy arrays and torch tensors alike."""
    return a.mT if hasattr(a, "mT") else np.swapaxes(a, -1, -2)


def chained_weights(weights, n_in: int, n_out: int) -> list[np.ndarray]:
    """Weights W_1..W_L in torch layout (out, in) whose shapes chain from n_in to n_out, as float64 copies."""
    if isinstance(weights, np.ndarray) or not hasattr(weights, "__len__") or len(weights) == 0:
        raise ValueError("weights must be a non-empty list of 2-D arrays W_1..W_L (torch layout), "
                         f"got {type(weights).__name__}")
    # duck-typed torch tensors/parameters (no torch import here): detached copies on the CPU
    ws = [as_float_array(f"weights[{i}]", w.detach().cpu().numpy() if hasattr(w, "detach") else w, ndim=2)
          for i, w in enumerate(weights)]
    if ws[0].shape[1] != n_in:
        raise ValueError(f"weights[0] must have N_in={n_in} columns (in_features, the columns of X), got shape "
                         f"{ws[0].shape}")
    for i in range(1, len(ws)):
        if ws[i].shape[1] != ws[i - 1].shape[0]:
            raise ValueError(f"weights must chain: weights[{i}] has {ws[i].shape[1]} columns (in_features) but "
                             f"weights[{i - 1}] has {ws[i - 1].shape[0]} rows (out_features); shapes "
                             f"{[w.shape for w in ws]}")
    if ws[-1].shape[0] != n_out:
        raise ValueError(f"weights[-1] must have N_out={n_out} rows (out_features, the columns of Y), got shape "
                         f"{ws[-1].shape}")
    return [w.copy() for w in ws]


# --------------------------------------------------------------------------------------------------- kernels
def product(layers):
    """``B_L⋯B_1`` (batched over leading axes; numpy or torch)."""
    out = layers[0]
    for B in layers[1:]:
        out = B @ out
    return out


def descent_directions(layers, residual) -> list:
    r"""``(B_L⋯B_{l+1})ᵀ G (B_{l−1}⋯B_1)ᵀ`` for every layer l, G = ``residual`` = S̄ − M̄ Σ̄ˣˣ (minus the gradient).

    The residual is carried through the layers from its narrower side (C ≤ R: ``r_l = B_{l+1}ᵀ r_{l+1}`` from the
    top, then ``r_l (B_{l−1}⋯B_1)ᵀ``; else from the bottom), so no product of two hidden × hidden matrices is
    formed: O(n²·min(R, C)) per layer instead of O(n³). Empty products are the identity and are skipped, so no
    identity of the right type or batch shape is built.
    """
    return _directions(layers, residual, _below(layers) if residual.shape[-1] <= residual.shape[-2] else None)


def _below(layers) -> list:
    """below[l] = B_{l−1}⋯B_1 for l = 0 … L−1 (None: identity), multiplied in :func:`product`'s order."""
    below = [None]
    for B in layers[:-1]:
        below.append(B if below[-1] is None else B @ below[-1])
    return below


def _directions(layers, residual, below) -> list:
    """:func:`descent_directions` given ``below`` (:func:`_below`) when C ≤ R (the products are shared with M̄ in
    :func:`sgd_step`), None otherwise."""
    n = len(layers)
    out = [None] * n
    r = residual
    if below is not None:
        for l in range(n - 1, -1, -1):  # r = (B_L⋯B_{l+1})ᵀ G
            out[l] = r if below[l] is None else r @ _mT(below[l])
            if l:
                r = _mT(layers[l]) @ r
        return out
    above = [None] * n  # above[l] = B_L⋯B_{l+1}
    for l in range(n - 1, 0, -1):
        above[l - 1] = layers[l] if above[l] is None else above[l] @ layers[l]
    for l in range(n):  # r = G (B_{l−1}⋯B_1)ᵀ
        out[l] = r if above[l] is None else _mT(above[l]) @ r
        if l < n - 1:
            r = r @ _mT(layers[l])
    return out


def _rate(eta):
    """η as a scalar or, for a batch of runs, shaped (batch, 1, 1) to broadcast over the matrices."""
    if np.ndim(eta) == 0:
        return eta
    return eta[..., None, None]


def sgd_step(layers, target, eta, sxx=None):
    r"""One exact SGD step of the reduced weights: returns ``(new_layers, M̄)`` with M̄ = B_L⋯B_1 *before* the step.

    ``B_l ← B_l + η (B_L⋯B_{l+1})ᵀ (S̄ − M̄ Σ̄ˣˣ)(B_{l−1}⋯B_1)ᵀ``; ``sxx=None`` means Σ̄ˣˣ = I (whitened inputs).
    ``target`` S̄ (…, R, C); ``eta`` a scalar or one rate per run (batch,). Works on numpy arrays and torch tensors.
    """
    narrow = target.shape[-1] <= target.shape[-2]  # C ≤ R: the residual is carried down, over the products below
    below = _below(layers) if narrow else None
    M = product(layers) if below is None or below[-1] is None else layers[-1] @ below[-1]
    residual = target - (M if sxx is None else M @ sxx)
    rate = _rate(eta)
    return [B + rate * g for B, g in zip(layers, _directions(layers, residual, below))], M


# ---------------------------------------------------------------------------------------------------- state
@dataclass(frozen=True, eq=False)
class ExactState:
    r"""Exact reduced state of a linear network on one data set (build it with :func:`exact_state`).

    ``Ubar`` (N_out, R) and ``Vbar`` (N_in, C) orthonormal, their first r columns U and V of :func:`theory.io_svd`;
    ``layers`` the reduced weights [B_1, …, B_L] at t = 0; ``target`` S̄ = ŪᵀΣʸˣV̄ (R, C); ``sxx`` Σ̄ˣˣ = V̄ᵀΣˣˣV̄
    (C, C), or ``None`` for whitened inputs (Σˣˣ = I); ``lstsq`` M̄* (R, C), the least-squares map in reduced
    coordinates; ``unfittable`` ‖Y − X W*ᵀ‖²_F, the part of the loss no linear map removes.
    """

    Ubar: np.ndarray
    Vbar: np.ndarray
    layers: tuple
    target: np.ndarray
    sxx: np.ndarray | None
    lstsq: np.ndarray
    unfittable: float

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def widths(self) -> tuple[int, ...]:
        """Hidden widths N_1 … N_{L−1}."""
        return tuple(B.shape[0] for B in self.layers[:-1])


def _xp(a):
    """The array library of ``a``: numpy, or a tensor's own library (torch), so that :func:`complement` and
    :func:`reduced_weights` run on both without :mod:`theory` importing torch."""
    return np if isinstance(a, np.ndarray) else sys.modules[type(a).__module__.split(".")[0]]


def complement(B, basis, *, coordinates: bool = False):
    r"""Orthonormal basis Q of the column space of ``(I − basis basisᵀ) B``, rounding-level directions dropped;
    with ``coordinates=True`` the pair (Q, QᵀB). The one construction of the invariant outside directions (the
    exact state's Ū, V̄ and the sweep's per-seed bases, :mod:`saxe.batched`).

    Thin QR ``rest = Q_r R`` then the SVD ``R = A Σ Wᵀ`` of the small factor: Q = Q_r A and ``QᵀB = Qᵀ rest = Σ Wᵀ``
    (no SVD of the tall matrix: ~100× faster at N_out = 10000). A direction counts when its singular value exceeds
    ``RANK_EPS_FACTOR · ε · max(B.shape) · ‖B‖₂``, with ``‖B‖₂ = ‖[basisᵀB; R]‖₂`` (orthogonal split of B's columns).
    numpy arrays or torch tensors (float64), 2-D.
    """
    xp = _xp(B)
    la = xp.linalg
    head = _mT(basis) @ B
    rest = B - basis @ head
    if rest.shape[0] > rest.shape[1]:
        q_r, R = la.qr(rest)
    else:
        q_r, R = None, rest
    A, sv, Wt = la.svd(R, full_matrices=False)
    stacked = la.svd(xp.concatenate([head, R], axis=0), full_matrices=False)[1] if B.shape[0] * B.shape[1] else None
    scale = max(float(stacked[0]) if stacked is not None and stacked.shape[0] else 0.0, np.finfo(float).tiny)
    keep = sv > RANK_EPS_FACTOR * np.finfo(float).eps * max(B.shape) * scale
    Q = (A if q_r is None else q_r @ A)[:, keep]
    if not coordinates:
        return Q
    return Q, sv[keep][:, None] * Wt[keep]


def reduced_weights(U, V, weights):
    r"""The reduced weights of whitened inputs (Σˣˣ = I), and their bases: ``([B_1 … B_L], Ū, V̄)``.

    ``Ū = [U, Q_out]``, ``V̄ = [V, Q_in]`` with Q_out = complement(W_L, U), Q_in = complement(W_1ᵀ, V)
    (:func:`complement`), ``B_1 = W_1 V̄``, ``B_l = W_l``, ``B_L = Ūᵀ W_L = [Uᵀ W_L; Q_outᵀ W_L]`` (depth 1:
    ``Ūᵀ W V̄``). The one assembly of the exact state's coordinates: :func:`exact_state` uses it, and so does the
    sweep (:mod:`saxe.batched`) on torch tensors, once per seed. Every B_l is linear in W_l, so one call on unit
    draws serves every init scale.
    """
    ws = list(weights)
    xp = _xp(U)
    q_out, c_out = complement(ws[-1], U, coordinates=True)
    q_in, c_in = complement(_mT(ws[0]), V, coordinates=True)
    Ubar, Vbar = xp.concatenate([U, q_out], axis=1), xp.concatenate([V, q_in], axis=1)
    last = xp.concatenate([_mT(U) @ ws[-1], c_out], axis=0)  # Ūᵀ W_L without the tall product
    if len(ws) == 1:
        return [last @ Vbar], Ubar, Vbar
    first = xp.concatenate([ws[0] @ V, _mT(c_in)], axis=1)  # W_1 V̄ = [W_1 V, (Q_inᵀ W_1ᵀ)ᵀ]
    return [first, *ws[1:-1], last], Ubar, Vbar


def is_whitened(X: np.ndarray) -> bool:
    """Σˣˣ = XᵀX equals the identity within :data:`theory.correlations.WHITENED_RTOL`."""
    sxx = X.T @ X
    return not sxx.size or float(np.abs(sxx - np.eye(sxx.shape[0])).max()) <= WHITENED_RTOL


def exact_state(X: ArrayLike, Y: ArrayLike, weights: Sequence[ArrayLike]) -> ExactState:
    r"""The exact reduced state of the network with initial ``weights`` [W_1 … W_L] (torch layout) on (X, Y).

    Any depth L ≥ 1, any widths, any init size; X need not be whitened (then V̄ spans the whole input space and
    the reduced Σ̄ˣˣ enters the dynamics). Derivation in the module docstring. Reference: Saxe et al.,
    arXiv:1312.6120; PNAS 116:11537 (2019).
    """
    X = as_float_array("X", X, ndim=2)
    Y = as_float_array("Y", Y, ndim=2)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must have the same number of rows (samples), got X.shape={X.shape}, "
                         f"Y.shape={Y.shape}")
    ws = chained_weights(weights, X.shape[1], Y.shape[1])
    U, _, V = io_svd(X, Y)
    if is_whitened(X):
        reduced, Ubar, Vbar = reduced_weights(U, V, ws)
        layers = tuple(reduced)
        sxx = None
    else:
        Ubar = np.hstack([U, complement(ws[-1], U)])
        from scipy.linalg import null_space  # only for Σˣˣ ≠ I

        Vbar = np.hstack([V, null_space(V.T)]) if V.shape[1] < X.shape[1] else V
        sxx = Vbar.T @ (X.T @ X) @ Vbar
        sxx = 0.5 * (sxx + sxx.T)
        layers = (Ubar.T @ ws[0] @ Vbar,) if len(ws) == 1 else (ws[0] @ Vbar, *ws[1:-1], Ubar.T @ ws[-1])
    target = Ubar.T @ (Y.T @ X) @ Vbar
    W_star = np.linalg.lstsq(X, Y, rcond=None)[0].T  # minimum-norm least squares (N_out, N_in)
    unfittable = float(np.sum((Y - X @ W_star.T) ** 2))
    for arr in (Ubar, Vbar, target, *layers):
        arr.setflags(write=False)
    lstsq = Ubar.T @ W_star @ Vbar
    lstsq.setflags(write=False)
    return ExactState(Ubar, Vbar, layers, target, sxx, lstsq, unfittable)


def exact_trajectory(n_steps: int, state: ExactState, eta: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Iterate the exact SGD map: ``(M̄, G)`` after k = 0 … n_steps updates.

    ``M̄_k = B_L⋯B_1`` (n_steps+1, R, C), so that ``W_tot(k) = Ū M̄_k V̄ᵀ``; ``G_k = B_1ᵀB_1`` (n_steps+1, C, C), the
    first layer's Gram, so that the first hidden layer's RSM is ``X V̄ G_k V̄ᵀ Xᵀ`` (depth 1: G = I). η per epoch.
    Raises ``ValueError`` when the orbit diverges (an entry of M̄ beyond :data:`DIVERGED_ABOVE` × its scale):
    η is then beyond what SGD survives (see :func:`theory.divergence_lr`).
    """
    return iterate(n_steps, state.layers, state.target, eta, state.sxx)


def escape_bound(target, M0) -> float:
    """|M̄| beyond which an orbit of the exact map counts as diverged: :data:`DIVERGED_ABOVE` × its scale."""
    return DIVERGED_ABOVE * max(np.abs(target).max(initial=0.0), np.abs(M0).max(initial=0.0), 1.0)


def orbit_diverged(eta: float, k: int) -> OrbitDivergenceError:
    """The error every exact or approximate map raises when its orbit passes :func:`escape_bound` at step k."""
    return OrbitDivergenceError(f"eta={eta!r} makes the exact SGD map diverge (at step {k}); lower the learning "
                                "rate (theory.stable_lr and theory.divergence_lr give the bounds)")


def iterate(n_steps, layers, target, eta, sxx=None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`exact_trajectory` for reduced weights ``layers``, target S̄ and Σ̄ˣˣ given directly (None: I)."""
    n_steps, eta = integer("n_steps", n_steps), positive("eta", eta)
    layers = list(layers)
    R, C = target.shape
    prods = np.empty((n_steps + 1, R, C))
    grams = np.empty((n_steps + 1, C, C))
    scale = escape_bound(target, product(layers))
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging orbit is reported below, not warned about
        for k in range(n_steps + 1):
            grams[k] = layers[0].T @ layers[0] if len(layers) > 1 else np.eye(C)
            if k < n_steps:
                layers, prods[k] = sgd_step(layers, target, eta, sxx)
            else:
                prods[k] = product(layers)
            if not np.abs(prods[k]).max(initial=0.0) <= scale:  # NaN compares False
                raise orbit_diverged(eta, k)
    return prods, grams


# Relative tolerance of the gradient-flow ODE: well above float64 rounding, below any test tolerance (1e-7).
ODE_RTOL = 1e-10


def exact_flow(t: ArrayLike, state: ExactState, tau: float, *, rtol: float = ODE_RTOL, atol: float | None = None):
    r"""Gradient flow of the exact state: :func:`flow` of its reduced weights (see there)."""
    return flow(t, state.layers, state.target, tau, state.sxx, rtol=rtol, atol=atol)


def flow(t, layers, target, tau, sxx=None, *, rtol: float = ODE_RTOL, atol: float | None = None):
    r"""Gradient flow ``τ dB_l/dt = (B_L⋯B_{l+1})ᵀ (S̄ − M̄ Σ̄ˣˣ)(B_{l−1}⋯B_1)ᵀ`` of the reduced weights.

    The continuous-time limit of :func:`exact_trajectory` (η → 0 at fixed t/τ), integrated with
    ``scipy.integrate.solve_ivp`` (DOP853). ``atol`` defaults to ``rtol`` × 1e-3 × the smallest layer's RMS, so the
    escape from a tiny init is resolved. t finite epochs (1-d array, any order); τ in epochs. Returns ``(M̄, G)``
    as :func:`exact_trajectory`: (len(t), R, C) and (len(t), C, C). Reference: Saxe et al., arXiv:1312.6120.
    """
    from scipy.integrate import solve_ivp

    from ._validate import times

    flat = times("t", t).reshape(-1)
    if np.isinf(flat).any():
        raise ValueError("t must be finite for the gradient flow (solve_ivp); use np.inf with Prediction methods")
    tau, rtol = positive("tau", tau), positive("rtol", rtol)
    layers = list(layers)
    R, C = target.shape
    shapes, splits = [B.shape for B in layers], np.cumsum([B.size for B in layers])[:-1]
    if atol is None:
        rms = [float(np.sqrt(np.mean(B**2))) if B.size else 0.0 for B in layers]
        positive_rms = [r for r in rms if r > 0]
        atol = rtol * 1e-3 * (min(positive_rms) if positive_rms else 1e-300)
    atol = positive("atol", atol)

    def unpack(y):
        return [part.reshape(shape) for part, shape in zip(np.split(y, splits), shapes)]

    def rhs(_, y):
        bs = unpack(y)
        M = product(bs)
        residual = target - (M if sxx is None else M @ sxx)
        return np.concatenate([g.ravel() for g in descent_directions(bs, residual)]) / tau

    prods = np.empty((flat.size, R, C))
    grams = np.empty((flat.size, C, C))
    order = np.argsort(flat, kind="stable")
    start = product(layers), (layers[0].T @ layers[0] if len(layers) > 1 else np.eye(C))
    todo = order[flat[order] > 0]
    for i in order[flat[order] == 0]:
        prods[i], grams[i] = start
    if todo.size:
        y0 = np.concatenate([B.ravel() for B in layers])
        sol = solve_ivp(rhs, (0.0, flat[todo[-1]]), y0, method="DOP853", t_eval=flat[todo], rtol=rtol, atol=atol)
        if not sol.success:
            raise ValueError(f"solve_ivp failed on the gradient flow ({sol.message}); check tau and the weights")
        for j, i in enumerate(todo):
            bs = unpack(sol.y[:, j])
            prods[i] = product(bs)
            grams[i] = bs[0].T @ bs[0] if len(bs) > 1 else np.eye(C)
    return prods, grams
