r"""Finite-learning-rate correction of the coupled (matrix) depth-2 closed form.

The coupled closed form (:func:`theory.coupled.coupled_modes_continuous`) solves the gradient flow
τ dM/dt = (S − M)M + M(S − M) of the mode matrix M = Uᵀ W_tot V from M(0) = K:

    M(t) = [E⁻¹ K⁻¹ E⁻¹ + D]⁻¹,      E = diag(e^{X_α/2}),  D = diag((1 − e^{−X_α})/s_α),  X_α = 2 s_α t/τ.

SGD at a finite rate η iterates instead M ← (I + η(S − M)) M (I + η(S − M)) (:func:`theory.coupled.
coupled_modes_discrete`). For a diagonal K the closed form is Saxe's logistic in each mode, x = a/s:
X_α = logit x_α(t) − logit x_α(0). The correction here replaces each mode's gradient-flow exponent by the one
that makes the decoupled mode follow the *finite-lr* closed form (:mod:`theory.finite_lr`):

    X_α(t) = logit x̂_α(t) − logit x̂_α(0),      x̂_α(t) = mode_strength_finite_lr(t, s_α, K_αα, η)/s_α,

a per-mode time reparametrisation of the Riccati solution (an approximation). It is exact for a diagonal K up to the
error of the scalar form, and it carries the early growth exactly in the coupled case as well: while M is small
the map multiplies M_αβ by (1 + ηs_α)(1 + ηs_β) per step, and X_α/2 → t ln(1 + ηs_α) reproduces that product.
Near M = S the off-diagonal contraction per step is 1 − η(s_α + s_β) against √((1 − 2ηs_α)(1 − 2ηs_β)) here,
equal to O(η²(s_α − s_β)²), which is small where coupling matters (close singular values). What it misses is the
O(η) term of the modified equation of the matrix map (Hairer–Lubich–Wanner ch. IX), which is cubic in M and not a
per-mode time change: the residual error is O(η) (measured exponent ≈ 1.06 on the tutorial; up to 0.24·ηs_max·s_max
for a near-degenerate pair s = 3, 2.97 in tests/test_theory_finite_lr.py), against O(1) for the gradient-flow form.

Domain: every s_α > 0, K invertible (full-rank init, N_h ≥ r; the bottleneck case is refused), 0 < K_αα < s_α
(small init), and the monotone bound 2ηs_max < 1 of :func:`theory.finite_lr.max_monotone_eta`.

Glossary: t ≥ 0 epochs; s (r,) singular values of Σʸˣ; S = diag(s); K = M0 (r, r) symmetric positive definite
initial mode matrix (:func:`theory.coupled.initial_mode_matrix`); η per epoch, τ = 1/η; logit x = ln(x/(1 − x)).

References: Saxe, McClelland & Ganguli, arXiv:1312.6120 (2014) and PNAS 116:11537 (2019), SI (coupled solution
from small random weights); G. Koenigs (1884) and E. Hairer, C. Lubich & G. Wanner, *Geometric Numerical
Integration*, ch. IX (the scalar finite-step correction, see :mod:`theory.finite_lr`).
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._validate import as_float_array, positive, times
from .coupled import SYMMETRY_RTOL, solve_triangular  # solve_triangular: scipy's, imported when first needed
from .finite_lr import mode_strength_finite_lr

__all__ = ["coupled_modes_finite_lr"]

# Smallest eigenvalue of K, relative to its largest, still treated as invertible: the Cholesky factor's condition
# number stays below ~1e6, so R_A^{−ᵀ} loses at most ~6 of float64's 16 digits.
MIN_RELATIVE_EIGENVALUE = 1e-12
# Entries of J below this add < 1e-300 to I + JᵀJ; set to 0, as subnormals made each 4×4 solve take ~18 ms.
FLUSH_BELOW = 1e-150


def _exponents(t: np.ndarray, s: np.ndarray, k: np.ndarray, eta: float, order: int) -> np.ndarray:
    """X_α(t) (len(t), r) from the finite-lr decoupled trajectory with a₀ = K_αα, in log space (∞ once x̂ = 1)."""
    a = mode_strength_finite_lr(t[:, None], s[None, :], k[None, :], eta, depth=2, order=order)
    with np.errstate(divide="ignore"):
        logit = np.log(a) - np.log(s - a)
    return logit - (np.log(k) - np.log(s - k))[None, :]


def _at(x: np.ndarray, s: np.ndarray, R_inv_T: np.ndarray) -> np.ndarray:
    """M = D^{−½}(I + JᵀJ)⁻¹D^{−½}, J = R_A^{−ᵀ}C⁻¹, with per-mode exponents X_α = ``x`` (overflow-free)."""
    r = s.size
    with np.errstate(over="ignore"):
        c_inv = np.sqrt(s / np.expm1(x))                # C⁻¹ = diag(√(s/(e^X − 1)))
        d_inv_sqrt = np.sqrt(s / -np.expm1(-x))         # D^{−½} = diag(√(s/(1 − e^{−X})))
    J = R_inv_T * c_inv[None, :]
    J[np.abs(J) < FLUSH_BELOW] = 0.0
    R_hat = np.linalg.qr(np.vstack([np.eye(r), J]), mode="r")
    F = d_inv_sqrt[:, None] * solve_triangular(R_hat, np.eye(r))
    return F @ F.T


def coupled_modes_finite_lr(t: ArrayLike, s: ArrayLike, M0: ArrayLike, eta: float, order: int = 1) -> np.ndarray:
    r"""Coupled depth-2 mode matrix M(t) under SGD at a finite rate η, in closed form.

    Equation (module docstring)::

        M(t) = [E⁻¹ K⁻¹ E⁻¹ + D]⁻¹,   E = diag(e^{X_α/2}),  D = diag((1 − e^{−X_α})/s_α),
        X_α(t) = logit x̂_α(t) − logit(K_αα/s_α),   x̂_α = mode_strength_finite_lr(t, s_α, K_αα, η, order=order)/s_α

    With X_α = 2s_α η t this is :func:`theory.coupled.coupled_modes_continuous` (τ = 1/η); here X_α is the
    exponent that makes a decoupled mode follow the finite-lr closed form. It is an approximation: against
    :func:`theory.coupled.coupled_modes_discrete` it leaves an O(η) coupling error (the discrete matrix map is not
    a per-mode time change of the Riccati flow). Measured on the tutorial, random inits γ = 1e-12, seeds 0–3
    (bench/finite_lr_table.py): ``max |ΔM|/s₁`` = 0.013 at lr = 100 (continuous form: 0.99), 0.0027 at lr = 25.

    Glossary: t ≥ 0 epochs (scalar → (r, r); array → ``(*t.shape, r, r)``; ``np.inf`` → S); s (r,) > 0; M0 = K (r, r)
    symmetric positive definite with 0 < K_αα < s_α; η per epoch with 2ηs_max < 1; order as in
    :mod:`theory.finite_lr`. Raises ``ValueError`` outside this domain. Reference: Saxe et al., PNAS 116:11537
    (2019) SI; module docstring.
    """
    tt = times("t", t)
    s = as_float_array("s", s, ndim=1)
    if (s <= 0).any():
        raise ValueError(f"s must be > 0 for the finite-lr coupled form (a zero mode has no growth rate), got min "
                         f"{s.min()!r}")
    eta = positive("eta", eta)
    K = as_float_array("M0", M0, ndim=2)
    r = s.size
    if K.shape != (r, r):
        raise ValueError(f"M0 must be ({r}, {r}) to match s, got shape {K.shape}")
    if np.abs(K - K.T).max() > SYMMETRY_RTOL * max(np.abs(K).max(), np.finfo(float).tiny):
        raise ValueError("M0 must be symmetric (M0 = ZᵀZ from theory.initial_mode_matrix)")
    K = 0.5 * (K + K.T)
    lam = np.linalg.eigvalsh(K)
    if lam.min() <= MIN_RELATIVE_EIGENVALUE * max(lam.max(), 0.0):
        raise ValueError(f"M0 must be positive definite (smallest eigenvalue > {MIN_RELATIVE_EIGENVALUE:g} of the "
                         f"largest), got eigenvalues [{lam.min():.3g}, {lam.max():.3g}]; for a bottleneck use "
                         "theory.coupled_modes_discrete")
    k = np.diag(K).copy()
    if (k >= s).any():
        raise ValueError(f"M0's diagonal must lie below s (a small init), got M0[a,a]/s[a] up to {(k / s).max():.3g}")
    R_inv_T = solve_triangular(np.linalg.cholesky(K).T, np.eye(r), trans="T")
    flat = tt.reshape(-1)
    x = _exponents(flat, s, k, eta, order)  # validates η against the monotone bound
    out = np.empty((flat.size, r, r))
    for i in range(flat.size):
        out[i] = K if flat[i] == 0 else (np.diag(s) if np.isinf(x[i]).all() else _at(x[i], s, R_inv_T))
    return out.reshape(tt.shape + (r, r))
