r"""Curvature of the loss of a linear network, and the learning rates at which SGD is stable.

Full-batch SGD is ``W ← W − η ∇ℓ`` with ``ℓ = ½‖Y − X W_totᵀ‖²_F`` and η per epoch (:mod:`theory.correlations`).
Near weights W it is linearly stable iff ``η λ_max(H(W)) < 2``, H the Hessian of ℓ (its *sharpness*). Two places
decide whether training survives:

* **the learned state**: the balanced minimum the network converges to (every layer with the same gains). With
  whitened inputs its sharpness is ``L s_max^{2−2/L}`` (:func:`theory.stability.max_stable_lr`); a bottleneck or
  Σˣˣ ≠ I changes it and it is then computed numerically at the balanced best fit these widths allow.
* **the initial weights**: a large init (γ ≳ 1) can be far sharper than the learned state (depth 4, γ = 3 on the
  tutorial's data diverges in 3 epochs at 0.4 × the learned-state bound); its bound is ``2/λ_max(H(W(0)))``.

:func:`stable_lr` returns both and the one that applies (the smaller). Beyond it SGD need not diverge at once: at
the learned state the top mode first oscillates, and only beyond :func:`theory.divergence_lr` does it blow up.

**Computing λ_max.** In the exact reduced coordinates of :mod:`theory.state` the Hessian splits into the block of
the reduced weights (dimension Σ_l size(B_l), small) and the blocks of the directions outside Ū / V̄, which are exactly
``W_{<L} Σˣˣ W_{<L}ᵀ`` (columns of W_L outside Ū) and ``W_{>1}ᵀ W_{>1}`` (rows of W_1 outside V̄, whitened inputs).
The reduced block's Hessian-vector products are exact to rounding by the complex step
``H v = −Im(descent(B + i h v))/h`` (the descent directions are polynomials in B), and its top eigenvalue comes
from ``scipy.sparse.linalg.eigsh`` (a dense ``eigvalsh`` for small blocks).

Glossary: X (P, N_in), Y (P, N_out); L depth; s the singular values of Σʸˣ; λ_max in η⁻¹ units (per epoch);
lr in torch's units (``lr = η·P·N_out/2`` for the mean MSE).

References: Saxe, McClelland & Ganguli, arXiv:1312.6120; Cohen et al., "Gradient descent on neural networks
typically occurs at the edge of stability", ICLR 2021 (sharpness 2/η); Martins et al., "Using complex variables
to estimate derivatives of real functions", SIAM Rev. (2003) (complex step).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ._validate import as_float_array, choice, depth_and_widths, integer, positive
from .correlations import learning_rate_to_eta
from .state import descent_directions, exact_state, is_whitened, product

__all__ = ["fit_spectrum", "reachable_losses", "StableLR", "sharpness", "stable_lr", "balanced_best_fit"]

# Reduced Hessians up to this dimension are built densely (one exact HVP per column) rather than by Lanczos.
DENSE_HESSIAN_MAX = 64
# Lanczos' relative accuracy on λ_max: a stable lr known to 1e-8 is more than enough (rounding is 1e-16).
LANCZOS_RTOL = 1e-8


def _hvp(layers, target, sxx, h: float):
    """v ↦ H v for the reduced weights at ``layers`` (complex step, exact to rounding)."""
    shapes = [B.shape for B in layers]
    splits = np.cumsum([int(np.prod(sh)) for sh in shapes])[:-1]

    def apply(v):
        parts = [p.reshape(sh) for p, sh in zip(np.split(np.asarray(v, dtype=np.float64), splits), shapes)]
        bs = [B + 1j * h * p for B, p in zip(layers, parts)]
        M = product(bs)
        residual = target - (M if sxx is None else M @ sxx)
        return -np.concatenate([g.imag.ravel() for g in descent_directions(bs, residual)]) / h

    return apply, int(sum(np.prod(sh) for sh in shapes))


def sharpness(X: ArrayLike, Y: ArrayLike, weights: Sequence[ArrayLike]) -> float:
    r"""λ_max of the Hessian of ``½‖Y − X W_totᵀ‖²_F`` at ``weights`` [W_1 … W_L] (torch layout); η⁻¹ units.

    Exact (module docstring): the reduced block by Lanczos on complex-step Hessian-vector products, the outside
    blocks in closed form. GD with rate η is linearly stable at these weights iff η·λ_max < 2.
    """
    st = exact_state(X, Y, weights)
    layers = [np.asarray(B, dtype=np.float64) for B in st.layers]
    scale = max(max((np.abs(B).max(initial=0.0) for B in layers), default=0.0), 1.0)
    apply, n = _hvp(layers, st.target, st.sxx, 1e-20 * scale)
    top = None
    if n > DENSE_HESSIAN_MAX:
        from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh  # imported when first needed

        op = LinearOperator((n, n), matvec=apply, dtype=np.float64)
        v0 = np.random.default_rng(0).standard_normal(n)  # fixed start: same weights, same answer
        try:
            top = float(eigsh(op, k=1, which="LA", v0=v0, tol=LANCZOS_RTOL, ncv=min(n - 1, 40),
                              return_eigenvectors=False)[0])
        except ArpackNoConvergence:  # clustered ±λ pairs (a tiny init) can stall it: fall back to the dense block
            top = None
    if top is None:
        H = np.stack([apply(e) for e in np.eye(n)], axis=1)
        top = float(np.linalg.eigvalsh(0.5 * (H + H.T))[-1])
    X = as_float_array("X", X, ndim=2)
    sxx = X.T @ X
    outside = []
    if len(layers) == 1:  # depth 1: H = I ⊗ Σˣˣ, whatever the direction
        outside.append(float(np.linalg.eigvalsh(sxx)[-1]))
    else:
        if st.Ubar.shape[1] < np.shape(Y)[1]:  # columns of W_L outside Ū exist
            below = product(layers[:-1]) @ st.Vbar.T  # W_{<L} (N_{L−1}, N_in)
            outside.append(float(np.linalg.eigvalsh(below @ sxx @ below.T)[-1]))
        if st.Vbar.shape[1] < X.shape[1]:  # rows of W_1 outside V̄ exist (whitened inputs only)
            above = product(layers[1:])  # Ūᵀ W_{>1}, so W_{>1}ᵀW_{>1} = aboveᵀabove
            outside.append(float(np.linalg.norm(above, 2) ** 2))
    return max(top, *outside, 0.0)


def balanced_best_fit(X: ArrayLike, Y: ArrayLike, depth: int, widths: Sequence[int] = ()) -> list[np.ndarray]:
    r"""Balanced weights of the best fit a network of these widths reaches: ``W_l = R_l D^{1/L} R_{l−1}ᵀ``.

    ``X W_totᵀ`` is the best rank-k approximation of the least-squares outputs ``Ŷ = X W*ᵀ`` (k = the narrowest
    width), ``W_tot = A D Bᵀ`` its SVD and R_l embeds the k gains in layer l's units. For whitened inputs and no
    bottleneck this is ``U S Vᵀ`` split evenly over the layers, the learned state of Saxe et al. (2014).
    """
    X = as_float_array("X", X, ndim=2)
    Y = as_float_array("Y", Y, ndim=2)
    depth = integer("depth", depth, minimum=1)
    widths = tuple(widths) or tuple([min(X.shape[1], Y.shape[1])] * (depth - 1))
    W_star = np.linalg.lstsq(X, Y, rcond=None)[0].T
    P_, sig, Qt = np.linalg.svd(X @ W_star.T, full_matrices=False)
    k = min([*widths, sig.size]) if widths else sig.size
    fit = (P_[:, :k] * sig[:k]) @ Qt[:k]
    W = np.linalg.lstsq(X, fit, rcond=None)[0].T  # minimum-norm map with those outputs
    A, d, Bt = np.linalg.svd(W, full_matrices=False)
    k = min(k, d.size)
    A, d, Bt = A[:, :k], d[:k], Bt[:k]
    g = d ** (1.0 / depth)
    frames = [Bt.T] + [np.eye(n, k) for n in widths] + [A]  # (size_l, k) orthonormal columns
    return [(frames[l + 1] * g) @ frames[l].T for l in range(depth)]


def fit_spectrum(X: ArrayLike, Y: ArrayLike) -> tuple[float, np.ndarray]:
    r"""(‖Y − Ŷ‖_F², σ(Ŷ) descending) for the least-squares outputs Ŷ = X W*ᵀ (sums, not means).

    Computed without Ŷ: with Q an orthonormal basis of X's column space (thin SVD of X, rank cut at
    ε·max(P, N_in)·σ_max(X) like ``np.linalg.lstsq``), Ŷ = Q QᵀY, so σ(Ŷ) = σ(B) with B = QᵀY (rank(X) × N_out)
    from the eigenvalues of the smaller Gram matrix of B, and ‖Y − Ŷ‖² = ‖Y‖² − ‖B‖² (orthogonal projection).
    30× faster than an SVD of Ŷ on the tutorial's 8 × 10000 data (0.8 ms vs 23 ms); absolute rounding
    ~ε·‖Y‖_F², far below the thresholds it feeds.
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must be 2-d with the same number of rows (samples), got X.shape={X.shape}, "
                         f"Y.shape={Y.shape}")
    U, sx, _ = np.linalg.svd(X, full_matrices=False)
    Q = U[:, sx > np.finfo(float).eps * max(X.shape) * sx.max(initial=0.0)]
    B = Q.T @ Y
    gram = B @ B.T if B.shape[0] <= B.shape[1] else B.T @ B
    sig2 = np.maximum(np.linalg.eigvalsh(gram)[::-1], 0.0)
    return max(float(np.sum(Y * Y)) - float(np.sum(B * B)), 0.0), np.sqrt(sig2)


def reachable_losses(X: ArrayLike, Y: ArrayLike, widths: Sequence[int | None]) -> np.ndarray:
    r"""L_best(w) per narrowest width w (``None``: no hidden layer, depth 1) in nn.MSELoss's mean units:
    (‖Y − Ŷ‖² + Σ_{i > w} σ_i(Ŷ)²)/(P·N_out) (module docstring)."""
    unfittable, sig = fit_spectrum(X, Y)
    P, n_out = np.shape(Y)
    out = np.empty(len(widths))
    for i, w in enumerate(widths):
        if w is not None and (not isinstance(w, (int, np.integer)) or w < 1):
            raise ValueError(f"widths[{i}] must be a positive int or None (depth 1), got {w!r}")
        lost = 0.0 if w is None else float(np.sum(sig[int(w):] ** 2))
        out[i] = (unfittable + lost) / (P * n_out)
    return out


@dataclass(frozen=True)
class StableLR:
    r"""Largest linearly stable learning rates (torch's units) and the rate ``lr`` checked against them.

    ``learned``: at the balanced learned state. Above it SGD cannot settle (``exceeded``): the top modes oscillate
    and, beyond :func:`theory.divergence_lr`, diverge. ``init``: at the initial weights (``None`` when none were
    given). Above it the first steps are unstable: a large init then either sheds curvature and recovers (measured:
    up to ~6× this bound at depth 4, γ = 3) or diverges within a few epochs. ``applies``: the smaller, below which
    SGD is linearly stable both where it starts and where it ends.
    """

    learned: float
    init: float | None
    lr: float | None = None

    @property
    def applies(self) -> float:
        return min(self.learned, self.init) if self.init is not None else self.learned

    @property
    def limited_by(self) -> str:
        return "init" if self.init is not None and self.init < self.learned else "learned"

    @property
    def exceeded(self) -> bool:
        """``lr`` is above the learned-state bound: no trajectory settles, none is exact."""
        return self.lr is not None and self.lr > self.learned * (1.0 + 1e-12)

    def describe(self) -> str:
        text = f"SGD is linearly stable at the learned (balanced) state for lr < {self.learned:.6g}"
        if self.init is not None:
            text += f" and at the initial weights for lr < {self.init:.6g} (their curvature)"
        return text


def stable_lr(X: ArrayLike, Y: ArrayLike, depth: int | None = None, *, hidden: int | Sequence[int] | None = None,
              weights: Sequence[ArrayLike] | None = None, reduction: str = "mean", lr: float | None = None) -> StableLR:
    r"""The largest stable lr of SGD on ``nn.MSELoss(reduction)`` of (X, Y): ``2/(η-per-lr · λ_max)``.

    ``learned``: at the balanced learned state (:func:`balanced_best_fit`; for whitened inputs and no bottleneck
    the closed form ``P·N_out/(L s_max^{2−2/L})``, :func:`theory.stability.max_stable_lr`). ``init``: at
    ``weights`` if given (:func:`sharpness`). ``hidden``: an int or the hidden widths (default: no bottleneck).
    ``depth`` L (default: from ``weights`` or ``hidden``, else 2); depth, weights and hidden must agree.
    ``lr``: optionally the rate to check (``.exceeded``), > 0. ``math.inf`` where the curvature is zero.
    """
    X = as_float_array("X", X, ndim=2)
    Y = as_float_array("Y", Y, ndim=2)
    depth, widths = depth_and_widths(depth, weights, hidden)  # they must agree (named errors)
    choice("reduction", reduction, ("mean", "sum"))
    if lr is not None:
        lr = positive("lr", lr)
    per_lr = learning_rate_to_eta(1.0, X.shape[0], Y.shape[1], reduction)
    A = Y.T @ X  # Σʸˣ (its singular values are those of io_svd)
    whitened = is_whitened(X)
    if whitened and (not widths or min(widths) >= min(A.shape)):
        # every width holds the whole rank: the closed form needs only s_max, the top eigenvalue of the small
        # Gram matrix (relative error ~ε, and no SVD of the N_out-sized Σʸˣ)
        gram = A.T @ A if A.shape[0] >= A.shape[1] else A @ A.T
        top = float(np.linalg.eigvalsh(gram)[-1]) if gram.size else 0.0
        lam = depth * top ** (1.0 - 1.0 / depth) if top > 0 else 0.0
    else:
        s = np.linalg.svd(A, compute_uv=False)
        rank = int(np.sum(s > 1e-12 * s.max(initial=0.0))) if s.size and s.max() > 0 else 0
        if whitened and min(widths) >= rank:
            lam = depth * s.max(initial=0.0) ** (2.0 - 2.0 / depth) if rank else 0.0
        else:
            lam = sharpness(X, Y, balanced_best_fit(X, Y, depth, widths))
    learned = 2.0 / (per_lr * lam) if lam > 0 else math.inf
    init = None
    if weights is not None:
        lam0 = sharpness(X, Y, weights)
        init = 2.0 / (per_lr * lam0) if lam0 > 0 else math.inf
    return StableLR(learned=float(learned), init=None if init is None else float(init),
                    lr=None if lr is None else float(lr))
