r"""Coupled mode dynamics predicted from the *actual* initial weights (not a decoupled idealisation).

A random initialisation is not decoupled: modes whose singular values are close (the tutorial's four finest
modes lie within 1.2 % of each other) exchange strength while they grow. In the data's mode basis
(``Σʸˣ = U S Vᵀ``, whitened inputs ``Σˣˣ = I``) the full mode matrix ``M = Uᵀ W_tot V`` (r × r) carries this.

**Depth 2, the growing part.** Write ``A = W1 V`` and ``B = W2ᵀ U`` (both N_h × r). Linearised around the
small init, ``τ dA/dt = B S`` and ``τ dB/dt = A S``: ``A + B`` grows like ``e^{St/τ}`` and ``A − B`` decays like
``e^{−St/τ}``. The growing part ``Z = (A + B)/2`` therefore decides the trajectory; its error is the decaying
part, O(init²) in absolute size, negligible against every learned mode. For weights exactly of the form
``W1 = Z Vᵀ``, ``W2 = U Zᵀ`` one SGD step (``η`` per epoch, see :mod:`theory.correlations`) is::

    W1 ← W1 + η W2ᵀ(Σʸˣ − W2 W1) = (Z + η Z (S − ZᵀZ)) Vᵀ      (UᵀU = I, W2ᵀU S Vᵀ = Z S Vᵀ)
    W2 ← W2 + η (Σʸˣ − W2 W1) W1ᵀ = U (Z + η Z (S − ZᵀZ))ᵀ

so the form is preserved with ``Z ← Z (I + η(S − ZᵀZ))`` and ``M = ZᵀZ`` follows exactly the map::

    M_{k+1} = (I + η(S − M_k)) M_k (I + η(S − M_k)),      M_0 = K = ZᵀZ.

Its continuous limit is ``τ dM/dt = (S − M) M + M (S − M)``. For invertible M, ``N = M⁻¹`` obeys the linear
Lyapunov equation ``τ dN/dt = 2I − S N − N S``, solved by ``N(t) = E⁻¹ K⁻¹ E⁻¹ + D`` with
``E = diag(e^{s t/τ})`` and ``D = diag((1 − e^{−2st/τ})/s)`` (→ ``2t/τ`` at s = 0). Two overflow-free forms:

* K invertible (``K = R_Aᵀ R_A``): ``M(t) = D^{−½} (I + Jᵀ J)⁻¹ D^{−½}`` with ``J = R_A^{−ᵀ} C⁻¹`` and
  ``C = E D^{½} = diag(√((e^{2st/τ} − 1)/s))``; ``C⁻¹ → 0`` as t grows, so any t (even 1e300) is safe.
* K singular, ``K = AᵀA`` with A (ρ × r), ρ < r: push-through gives ``M(t) = E Aᵀ (I_ρ + A C² Aᵀ)⁻¹ A E``,
  continuous in A, hence valid without K⁻¹. ``M = A'ᵀA'`` with ``A' = R^{−ᵀ} A E`` and ``RᵀR = I + A C² Aᵀ``
  (column-pivoted QR of the row-sorted stack ``[I; C Aᵀ]``): the factor propagates itself, so long times are
  taken in steps with ``s_max Δ/τ ≤`` :data:`MAX_STEP_EXPONENT` (semigroup property), never overflowing.

**Exact, any depth and init size:** :mod:`theory.state` (this module is its depth-2 small-init approximation).

Glossary: s (r,) singular values of Σʸˣ; S = diag(s); U (N_out, r), V (N_in, r) from :func:`theory.io_svd`;
M (r, r) mode matrix; K its initial value; η per-epoch rate; τ = 1/η time constant; t in epochs.

References: Saxe, McClelland & Ganguli, ICLR 2014, arXiv:1312.6120 (eqs. 7–9, decoupled solutions);
Saxe, McClelland & Ganguli, PNAS 116:11537 (2019), SI "learning dynamics from small random weights".
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from ._validate import as_float_array, integer, positive, times
from .errors import OrbitDivergenceError
from .state import RANK_EPS_FACTOR
from .state import chained_weights as _chained


# scipy is imported when first needed (a sweep or saxe.train without a bottleneck never needs it: a lighter process)
def null_space(*args, **kwargs):
    from scipy.linalg import null_space as f
    return f(*args, **kwargs)


def qr(*args, **kwargs):
    from scipy.linalg import qr as f
    return f(*args, **kwargs)


def solve_triangular(*args, **kwargs):
    from scipy.linalg import solve_triangular as f
    return f(*args, **kwargs)

__all__ = ["growing_part", "initial_mode_matrix", "coupled_modes_discrete", "coupled_modes_continuous",
           "MAX_STEP_EXPONENT"]

# M0 = ZᵀZ is symmetric/PSD up to float64 rounding (~1e-16 relative); 1e-10 only refuses matrices that are not.
SYMMETRY_RTOL = 1e-10
# U, V from an SVD have orthonormal columns to ~1e-15; 1e-8 lets slightly perturbed bases through.
ORTHONORMAL_TOL = 1e-8
# Largest s·Δ/τ per step of the rank-deficient propagation: e^{2·300} ≈ 1e260 stays below overflow (1e308).
MAX_STEP_EXPONENT = 300.0
# Factor entries below this feed only M entries < 1e-300 (underflow); set to 0, as subnormals are slow.
FLUSH_BELOW = 1e-160


# ----------------------------------------------------------------------------------------------- checks
def _strengths(s) -> np.ndarray:
    s = as_float_array("s", s, ndim=1)
    if (s < 0).any():
        raise ValueError(f"s must be the singular values of Σʸˣ (all >= 0), got min {s.min()!r}")
    return s


def _mode_basis(U, V) -> tuple[np.ndarray, np.ndarray]:
    U = as_float_array("U", U, ndim=2)
    V = as_float_array("V", V, ndim=2)
    if U.shape[1] != V.shape[1]:
        raise ValueError(f"U (N_out, r) and V (N_in, r) must have the same r, got U {U.shape}, V {V.shape}")
    for name, B in (("U", U), ("V", V)):
        err = np.abs(B.T @ B - np.eye(B.shape[1])).max() if B.size else 0.0
        if err > ORTHONORMAL_TOL:
            raise ValueError(f"{name} must have orthonormal columns (from io_svd), "
                             f"got max|{name}ᵀ{name} − I| = {err:.3g}")
    return U, V


def _mode_matrix_arg(M0, r: int) -> np.ndarray:
    """Symmetric positive semi-definite (r, r) M0 (the coupled map needs M = ZᵀZ), symmetrised."""
    M0 = as_float_array("M0", M0, ndim=2)
    if M0.shape != (r, r):
        raise ValueError(f"M0 must be ({r}, {r}) to match s, got shape {M0.shape}")
    scale = max(np.abs(M0).max(initial=0.0), np.finfo(float).tiny)
    if np.abs(M0 - M0.T).max(initial=0.0) > SYMMETRY_RTOL * scale:
        raise ValueError("M0 must be symmetric (M0 = ZᵀZ from initial_mode_matrix); for a general init use the "
                         "projected weights (project_weights, projected_modes_*)")
    M0 = 0.5 * (M0 + M0.T)
    lam_min = np.linalg.eigvalsh(M0).min() if r else 0.0
    if lam_min < -SYMMETRY_RTOL * scale:
        raise ValueError(f"M0 must be positive semi-definite (M0 = ZᵀZ), got smallest eigenvalue {lam_min:.3g}")
    return M0


# ------------------------------------------------------------------------------------------- depth 2
def growing_part(W1: ArrayLike, W2: ArrayLike, U: ArrayLike, V: ArrayLike) -> np.ndarray:
    r"""``Z = (W1 V + W2ᵀ U)/2`` (N_h × r), the part of a two-layer init that grows (see module docstring).

    ``A = W1 V`` and ``B = W2ᵀ U`` obey ``τ dA/dt ≈ B S``, ``τ dB/dt ≈ A S`` while small (t in epochs), so
    ``A + B ∝ e^{St/τ}`` grows and ``A − B ∝ e^{−St/τ}`` decays. W1 (N_h, N_in), W2 (N_out, N_h) in torch layout;
    U, V from :func:`theory.io_svd`. Reference: Saxe et al., PNAS 116:11537 (2019), SI.
    """
    U, V = _mode_basis(U, V)
    W1, W2 = _chained([W1, W2], V.shape[0], U.shape[0])
    return 0.5 * (W1 @ V + W2.T @ U)


def initial_mode_matrix(weights: Sequence[ArrayLike], U: ArrayLike, V: ArrayLike) -> np.ndarray:
    r"""The initial mode matrix: ``K = ZᵀZ`` for depth 2 (:func:`growing_part`), ``M_0 = Uᵀ W_L⋯W_1 V`` otherwise.

    For depth 2 this is the symmetric PSD start of the coupled map; it differs from the measured ``Uᵀ W_tot V``
    only by the decaying part, O(init²). ``weights`` = [W_1, …, W_L] in torch layout (out, in); result (r, r),
    dimensionless strength in the units of s. Reference: Saxe et al., PNAS 116:11537 (2019), SI.
    """
    U, V = _mode_basis(U, V)
    ws = _chained(weights, V.shape[0], U.shape[0])
    if len(ws) == 2:
        Z = growing_part(ws[0], ws[1], U, V)
        return Z.T @ Z
    W_tot = ws[0]
    for w in ws[1:]:
        W_tot = w @ W_tot
    return U.T @ W_tot @ V


def coupled_modes_discrete(n_steps: int, s: ArrayLike, M0: ArrayLike, eta: float, *,
                           factor: ArrayLike | None = None) -> np.ndarray:
    r"""Exact two-layer SGD in the mode basis: ``M_{k+1} = (I + η(S − M_k)) M_k (I + η(S − M_k))``.

    Holds exactly for weights ``W1 = Z Vᵀ``, ``W2 = U Zᵀ`` (``M = ZᵀZ``, derivation in the module docstring) and to
    O(init²) for a random init through ``M0 = initial_mode_matrix(weights, U, V)`` (a small-init approximation;
    :mod:`theory.state` is exact). With ``factor`` Z (N_h × r, ZᵀZ = M0) the factor is iterated,
    ``Z ← Z (I + η(S − ZᵀZ))``: then a bottleneck's zero eigenvalues of M stay exactly zero, where iterating M
    lets rounding turn them to ±1e-41 and grow. Returns (n_steps+1, r, r); row k is M after k full-batch updates
    (epochs). η per epoch (:func:`theory.learning_rate_to_eta`). Raises ``ValueError`` if η makes the map
    diverge. Reference: Saxe et al., arXiv:1312.6120; PNAS 116:11537 (2019).
    """
    n_steps, s = integer("n_steps", n_steps), _strengths(s)
    M, eta = _mode_matrix_arg(M0, s.size), positive("eta", eta)
    out = np.empty((n_steps + 1, s.size, s.size))
    out[0] = M
    I, S = np.eye(s.size), np.diag(s)
    Z = None
    if factor is not None:
        Z = as_float_array("factor", factor, ndim=2)
        if Z.shape[1] != s.size or np.abs(Z.T @ Z - M).max(initial=0.0) > SYMMETRY_RTOL * max(np.abs(M).max(), 1e-300):
            raise ValueError(f"factor must be (N_h, {s.size}) with factorᵀ factor = M0, got shape {Z.shape}")
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging orbit is reported below, not warned about
        for k in range(n_steps):
            P = I + eta * (S - M)
            if Z is None:
                M = P @ M @ P
            else:
                Z = Z @ P
                M = Z.T @ Z
            out[k + 1] = M = 0.5 * (M + M.T)
    if not np.isfinite(out).all():
        raise OrbitDivergenceError(f"eta={eta!r} makes the coupled map diverge (stability needs roughly η·s_max < 1); "
                         "lower the learning rate (see theory.stability.max_stable_lr)")
    return out


def _factor(M0: np.ndarray, factor) -> tuple[np.ndarray, bool]:
    """(R_A, True) with R_AᵀR_A = M0 (upper triangular) when M0 is invertible, else (A, False) with A (ρ × r)."""
    r = M0.shape[0]
    eps = np.finfo(float).eps
    if factor is not None:
        A = as_float_array("factor", factor, ndim=2)
        if A.shape[1] != r:
            raise ValueError(f"factor must be (N_h, {r}) with factorᵀ factor = M0, got shape {A.shape}")
        _, sv, Wt = np.linalg.svd(A, full_matrices=False)
        keep = sv > RANK_EPS_FACTOR * eps * max(A.shape) * sv.max(initial=0.0)
        if keep.sum() == r:
            return np.asarray(np.linalg.qr(A, mode="r")), True
        return sv[keep, None] * Wt[keep], False
    if not (M0 - np.diag(np.diag(M0))).any():  # diagonal (decoupled) start: exact square roots
        d = np.diag(M0)
        if (d > 0).all():
            return np.diag(np.sqrt(d)), True
        return np.diag(np.sqrt(d))[d > 0], False
    lam, Q = np.linalg.eigh(M0)
    keep = lam > RANK_EPS_FACTOR * eps * r * lam.max()
    if keep.all():
        return np.linalg.cholesky(M0).T, True
    return np.sqrt(lam[keep])[:, None] * Q[:, keep].T, False


def _full_rank_at(h: float, s: np.ndarray, R_A: np.ndarray) -> np.ndarray:
    """M at t/τ = h > 0 from R_AᵀR_A = K: D^{−½}(I + JᵀJ)⁻¹D^{−½}, J = R_A^{−ᵀ}C⁻¹ (overflow-free)."""
    r, x, pos = s.size, 2.0 * s * h, s > 0
    safe = np.where(pos, -np.expm1(-x), 1.0)  # 1 − e^{−2st/τ}
    c_inv = np.where(pos, np.sqrt(s * np.exp(-x) / safe), np.sqrt(0.5 / h))
    d_inv_sqrt = np.where(pos, np.sqrt(s / safe), np.sqrt(0.5 / h))
    J = solve_triangular(R_A, np.diag(c_inv), trans="T")
    R_hat = np.linalg.qr(np.vstack([np.eye(r), J]), mode="r")
    F = d_inv_sqrt[:, None] * solve_triangular(R_hat, np.eye(r))
    return F @ F.T


def _deficient_step(A: np.ndarray, s: np.ndarray, h: float) -> np.ndarray:
    """Factor A' (ρ × r) of M(t + hτ) from factor A of M(t): A' = R^{−ᵀ} A E, RᵀR = I + A C² Aᵀ."""
    # Triangularise A in order of decreasing s (A ← QᵀA, M unchanged): a fast mode's scaled row then has no
    # component along slower modes' hidden directions, which the solve below would cancel catastrophically.
    by_s = np.argsort(-s, kind="stable")
    A = np.asarray(np.linalg.qr(A[:, by_s], mode="r"))[:, np.argsort(by_s)]
    c2 = np.where(s > 0, np.expm1(2.0 * s * h) / np.where(s > 0, s, 1.0), 2.0 * h)
    stacked = np.vstack([np.eye(A.shape[0]), np.sqrt(c2)[:, None] * A.T])
    # Row sorting + column pivoting keep Householder QR row-wise stable on this graded stack (Cox & Higham 1998).
    order = np.argsort(-np.linalg.norm(stacked, axis=1), kind="stable")
    R, piv = qr(stacked[order], mode="r", pivoting=True)
    A = solve_triangular(R[: A.shape[0]], (A * np.exp(s * h)[None, :])[piv], trans="T")
    A[np.abs(A) < FLUSH_BELOW] = 0.0
    return A


def _fixed_point(s: np.ndarray, A: np.ndarray) -> np.ndarray:
    """lim M(t): ``s_g`` times the projector onto the leading parts, in each group g of equal s, of range(Aᵀ).

    ``C·range(Aᵀ)`` converges to the span of the leading parts (components in the largest-s group where a vector is
    nonzero) as the groups separate exponentially; T → its projector and ``D^{−½} → S^{½}``.
    """
    r = s.size
    _, sv, Wt = np.linalg.svd(A, full_matrices=False)
    basis = Wt[sv > RANK_EPS_FACTOR * np.finfo(float).eps * max(A.shape) * sv.max(initial=0.0)].T  # (r, ρ)
    out = np.zeros((r, r))
    for value in np.unique(s[s > 0]):
        group, higher = np.flatnonzero(s == value), np.flatnonzero(s > value)
        coeff = null_space(basis[higher]) if higher.size else np.eye(basis.shape[1])
        lead = basis[group] @ coeff
        if lead.size == 0:
            continue
        q, sig, _ = np.linalg.svd(lead, full_matrices=False)
        q = q[:, sig > RANK_EPS_FACTOR * np.finfo(float).eps * max(lead.shape)]
        out[np.ix_(group, group)] = value * (q @ q.T)
    return out


def coupled_modes_continuous(t: ArrayLike, s: ArrayLike, M0: ArrayLike, tau: float, *,
                             factor: ArrayLike | None = None) -> np.ndarray:
    r"""Closed-form solution of ``τ dM/dt = (S − M)M + M(S − M)``, ``M(0) = M0``, at epochs t.

    ``M(t) = [E⁻¹ K⁻¹ E⁻¹ + D]⁻¹``, ``E = diag(e^{st/τ})``, ``D = diag((1 − e^{−2st/τ})/s)`` (``2t/τ`` at s = 0),
    evaluated in the overflow-free forms of the module docstring (singular K included). ``t = np.inf`` gives the
    fixed point: S for invertible M0, otherwise ``s_g`` times the projector onto the leading parts of range(M0) in
    each group of equal s (e.g. a mode with zero initial strength in a decoupled start stays 0).
    ``factor``: optional Z (N_h × r) with ``ZᵀZ = M0`` (:func:`growing_part`); more accurate than factoring M0.
    t scalar → (r, r); array → (len(t), r, r). τ in epochs. Reference: Saxe et al., arXiv:1312.6120;
    PNAS 116:11537 (2019), SI.
    """
    tt, s, tau = times("t", t), _strengths(s), positive("tau", tau)
    M0 = _mode_matrix_arg(M0, s.size)
    R, full = _factor(M0, factor)
    flat = tt.reshape(-1)
    out = np.empty((flat.size, s.size, s.size))
    # Below this t/τ, M moves by < ε·‖M0‖ (|τ dM/dt| ≤ 2(s_max + ‖M0‖)‖M0‖): return M0 (1/t cannot overflow).
    h_still = np.finfo(float).eps / (10.0 * (s.max(initial=0.0) + np.abs(M0).sum() + np.finfo(float).tiny))
    if full:
        for i, ti in enumerate(flat):
            h = ti / tau
            out[i] = M0 if h < h_still else (np.diag(s) if np.isinf(h) else _full_rank_at(h, s, R))
    else:
        A, h_done = R, 0.0
        h_max = MAX_STEP_EXPONENT / s.max() if s.max(initial=0.0) > 0 else np.inf
        for i in np.argsort(flat, kind="stable"):
            h = flat[i] / tau
            if h == 0 or np.isinf(h):  # the limit from the initial factor (its leading parts are time-invariant)
                out[i] = M0 if h == 0 else _fixed_point(s, R)
                continue
            if h > h_done:
                n = int(np.ceil((h - h_done) / h_max)) if np.isfinite(h_max) else 1
                for _ in range(n):
                    A = _deficient_step(A, s, (h - h_done) / n)
                h_done = h
            out[i] = A.T @ A
    return out.reshape(tt.shape + (s.size, s.size))
