r"""Exact gradient flow of a two-layer linear network from a λ-balanced init (any λ, unequal widths).

**Balance.** ``D = W₂ᵀW₂ − W₁W₁ᵀ`` (N_h × N_h) is conserved by gradient flow (τ dD/dt = W₂ᵀRW₁ᵀ − W₂ᵀRW₁ᵀ = 0
with R = Σʸˣ − W₂W₁, Σˣˣ = I). A λ-balanced init has ``D = λ I_{N_h}``; λ = 0 is Saxe's balanced (small-init)
case, |λ| → ∞ the lazy (kernel) regime. λ > 0 needs N_out ≥ N_h, λ < 0 needs N_in ≥ N_h (D has rank ≤ N_out,
resp. −D rank ≤ N_in). The tutorial (8-30-10000) admits every λ ≥ 0.

**The Riccati equation.** Stack ``Q = [W₁ᵀ; W₂]`` ((N_in + N_out) × N_h). With ``W₂ᵀW₂ = W₁W₁ᵀ + λI`` the flow
``τ dW₁/dt = W₂ᵀR``, ``τ dW₂/dt = RW₁ᵀ`` becomes (Braun et al. 2022, eq. 7; Dominé et al. 2025, Thm 4.1)::

    τ dQ/dt = F Q − ½ Q QᵀQ,      F = [[−λ/2 I, Σʸˣᵀ], [Σʸˣ, λ/2 I]]
    τ dP/dt = F P + P F − P²,     P = QQᵀ = [[W₁ᵀW₁, W₁ᵀW₂ᵀ], [W₂W₁, W₂W₂ᵀ]]

whose solution, for any P(0) = Q₀Q₀ᵀ, is ``P(t) = e^{Fh} Q₀ (I + Q₀ᵀ Γ(h) Q₀)⁻¹ Q₀ᵀ e^{Fh}``, h = t/τ,
``Γ(h) = ∫₀ʰ e^{2Fu} du = (e^{2Fh} − I)(2F)⁻¹``. F is symmetric with closed-form eigenpairs: for each mode
(s, u, v) of Σʸˣ = U S Vᵀ, ``±f``, ``f = √(s² + λ²/4)``, eigenvectors ``(sin φ v, cos φ u)`` and
``(cos φ v, −sin φ u)``, ``φ = ½ atan2(s, λ/2)``; input directions outside V: −λ/2; output directions outside U:
+λ/2. In the eigenbasis O, with the factor ``A₀ = OᵀQ₀`` and ``B = C A₀``, ``C = diag(√γ)``,
``γ = expm1(2fh)/(2f)``, the overflow-free form is ``P' = (d·Q_b)(d·Q_b)ᵀ`` with ``[I; B] = [Q_a; Q_b] R``
(Householder QR, rows sorted, Cox & Higham 1998) and ``d = e^{fh}/√γ = √(2f/(−expm1(−2fh)))`` (→ 1/√h at f = 0).
Long times are taken in steps with f·Δh ≤ :data:`MAX_STEP_EXPONENT` (semigroup property); ``t = ∞`` is the fixed
point ``2f_g`` × the projector onto the leading parts of range(A₀) in each group g of equal positive f.
Only P (hence W_tot, W₁ᵀW₁, W₂W₂ᵀ) is determined: Q(t) itself carries a time-dependent hidden rotation (a
time-ordered exponential), which no observable sees; :meth:`BalancedSolution.weights` returns one factor.

**Reduced coordinates.** Everything lives in the bases Ū, V̄ of :func:`theory.state.exact_state` (the columns of W₂
and rows of W₁ never leave them), so F is (C + R) × (C + R): 46 × 46 for the tutorial, never 10008².

**Finite learning rate** (``method='finite_lr'``, an approximation, labelled). SGD's linear growth per step is
``1 + ηf``, not ``e^{ηf}``. Replace the rates by ``f̃ = ln(1 + ηf)/η`` and the quadratic coefficient by
``β = f̃/f`` (so the fixed point 2F₊ is kept): ``τ dP/dt = F̃P + PF̃ − PβP``, solved as above for
``P̂ = β^½ P β^½`` (``P = β^{−½} P̂ β^{−½}``). Equivalently, at integer t = k it is the exact solution
``P_k = A^k P₀ (I + Γ_k P₀)⁻¹ A^k``, ``Γ_k = (A^{2k} − I)(2F)⁻¹``, of the discrete Riccati map
``P_{k+1} = A P_k (I + B P_k)⁻¹ A`` with ``A = I + ηF``, ``B = η(I + ηF/2)``, which agrees with SGD's map
``Q ← Q + η(FQ − ½QQᵀQ)`` to first order in η and exactly in the linear (escape) phase. For λ = 0 and one mode it is
Saxe's form with e^{2st/τ} → (1+ηs)^{2t}. Its error comes from the saturation phase, where SGD contracts by
1 − η(f_i + f_j) per step and this map by 1/((1 + ηf_i)(1 + ηf_j)): first order in η·s, and in the lazy regime
(large λ, no escape phase) it is no better than the flow (measured: bench/lazy_rich_table.py). Needs η·max|f| < 1.

**SGD's modified equation** (``method='modified'``, :mod:`theory.modified_equation`): the flow whose time-η map is
the SGD step up to O(η⁵) per step (order 3, its linear tail summed), integrated from the init's own weights (no balance
needed) with an error estimate from the orders 1–3; 2.4e-3 of s₁ on the tutorial's λ-balanced run at lr = 100
(``saxe verify``). A large init's transient, too fast for any truncated series, is taken by k₀ exact SGD steps
before the flow starts (:meth:`BalancedSolution.exact_steps`); refused where even that leaves the estimate too large.

**SGD's corrections** (``method='first_order'``, ``'second_order'``): the flow's P plus SGD's global error expansion
to that order (:mod:`theory.sgd_expansion`), error O((η s)²) and O((η s)³) (7.7e-3 of s₁ at lr = 100 on the
tutorial's λ-balanced run). They correct P, not a factor of P: ``factor``/``weights`` refuse them.

Glossary: X (P, N_in) with XᵀX = I; Y (P, N_out); Σʸˣ = YᵀX (sum over samples) = U S Vᵀ; W₁ (N_h, N_in),
W₂ (N_out, N_h) torch layout; λ the balance (units of s); η = 2·lr/(P·N_out) per epoch, τ = 1/η epochs, t epochs,
h = t/τ; Ū (N_out, R), V̄ (N_in, C) the reduced bases; P (C+R, C+R) the reduced QQᵀ; f the eigenvalues of F.

References: Braun, Dominé, Fitzgerald & Saxe, "Exact learning dynamics of deep linear networks with prior
knowledge", NeurIPS 2022; Dominé, Anguita, Proca, Braun, Kunin, Mediano & Saxe, "From lazy to rich: exact learning
dynamics in deep linear networks", ICLR 2025, arXiv:2409.14623; Fukumizu, "Effect of batch learning in multilayer
neural networks" (1998) (the matrix Riccati solution).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from ._validate import as_float_array, choice, times
from .balance import balance_deviation, measured_lambda
from .correlations import io_svd, learning_rate_to_eta
from .coupled import _fixed_point
from .modified_prediction import ModifiedPrediction, modified_prediction
from .observables import end_to_end, gram_rsm, squared_error
from .sgd_expansion import sgd_correction
from .state import chained_weights, exact_state, is_whitened

__all__ = ["BalancedSolution", "balanced_solution", "measured_lambda", "balance_deviation", "BALANCE_RTOL",
           "CORRECTED_ORDERS", "METHODS", "MAX_STEP_EXPONENT", "CONVERGED_RTOL"]

# Largest ‖W₂ᵀW₂ − W₁W₁ᵀ − λI‖_F / (‖W₁W₁ᵀ‖_F + ‖W₂ᵀW₂‖_F) accepted as λ-balanced: float32 inits (the tutorial's
# dtype) round at ~1e-7 relative; a random init deviates by O(0.1–1), so 1e-5 only lets rounding through.
BALANCE_RTOL = 1e-5
# Largest f·Δh per closed-form step: γ = e^{2fΔh}/(2f) then stays below e^{600} ≈ 1e260 (no overflow at 1e308).
MAX_STEP_EXPONENT = 300.0
# A checkpoint of the stepped solution within this relative distance of P(∞) has converged to rounding level:
# later times are P(∞) itself (stepping on would only add rounding, at ~1e5 steps for t = 1e7 τ).
CONVERGED_RTOL = 1e-14
# A singular value below this multiple of ε·size·s_max is rounding noise of io_svd and counts as 0.
ZERO_S_FACTOR = 10.0
#: The methods that add SGD's global error expansion to the flow's P, and the order each integrates.
CORRECTED_ORDERS = {"first_order": 1, "second_order": 2}
#: Every method of :func:`balanced_solution` ('modified': SGD's modified equation, :mod:`theory.modified_equation`).
METHODS = ("continuous", "finite_lr", *CORRECTED_ORDERS, "modified")


# ------------------------------------------------------------------------------------------ eigen-system
def _eigen_system(s: np.ndarray, lam: float, C: int, R: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues f (C+R,) and orthogonal eigenvectors O of F = [[−λ/2 I_C, S̄ᵀ], [S̄, λ/2 I_R]] in closed form.

    S̄ = [[diag(s), 0], [0, 0]] (R × C): the bases of :func:`theory.state.exact_state` start with V and U.
    """
    r, n = s.size, C + R
    f, O = np.empty(n), np.zeros((n, n))
    root = np.sqrt(s**2 + 0.25 * lam**2)
    phi = 0.5 * np.arctan2(s, 0.5 * lam)
    idx = np.arange(r)
    f[:r], f[r:2 * r] = root, -root
    O[idx, idx], O[C + idx, idx] = np.sin(phi), np.cos(phi)
    O[idx, r + idx], O[C + idx, r + idx] = np.cos(phi), -np.sin(phi)
    col = 2 * r
    for i in range(r, C):  # input directions outside V
        f[col], O[i, col] = -0.5 * lam, 1.0
        col += 1
    for j in range(r, R):  # output directions outside U
        f[col], O[C + j, col] = 0.5 * lam, 1.0
        col += 1
    return f, O


def _riccati_steps(A: np.ndarray, f: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Factors (T, n, N_h) of P'(h) = e^{fh}A(I + AᵀΓA)⁻¹Aᵀe^{fh} (eigen coordinates) for each h > 0 of ``h`` (T,).

    ``[I; C A]`` is QR-factorised with its rows sorted by decreasing norm (Householder, batched over h), so the
    graded rows (√γ spans e^{±fh}) keep row-wise accuracy (Cox & Higham 1998); d·Q_b is the new factor.
    """
    x = 2.0 * f[None, :] * h[:, None]
    nz = np.broadcast_to(f != 0, x.shape)
    two_f = np.where(nz, 2.0 * f[None, :], 1.0)
    with np.errstate(over="ignore"):  # decaying directions (f < 0): expm1(−x) → inf gives d → 0, as it should
        gam = np.where(nz, np.expm1(x) / two_f, h[:, None])
        d = np.where(nz, np.sqrt(two_f / np.where(nz, -np.expm1(-x), 1.0)), 1.0 / np.sqrt(h)[:, None])
    n_h = A.shape[1]
    stacked = np.concatenate([np.broadcast_to(np.eye(n_h), (h.size, n_h, n_h)),
                              np.sqrt(gam)[:, :, None] * A[None]], axis=1)
    order = np.argsort(-np.linalg.norm(stacked, axis=2), axis=1, kind="stable")
    q_sorted = np.linalg.qr(np.take_along_axis(stacked, order[:, :, None], axis=1), mode="reduced")[0]
    q = np.empty_like(q_sorted)
    np.put_along_axis(q, order[:, :, None], q_sorted, axis=1)  # rows back in the original order
    return d[:, :, None] * q[:, n_h:]


@dataclass(frozen=True, eq=False)
class BalancedSolution:
    r"""The λ-balanced closed form on one data set (build with :func:`balanced_solution`; equations: module doc).

    ``Ubar`` (N_out, R), ``Vbar`` (N_in, C) reduced bases; ``s`` (r,) singular values; ``lam`` λ; ``eta`` η per epoch;
    ``tau`` = 1/η epochs; ``method`` one of :data:`METHODS` ('continuous' the exact gradient flow, the rest
    approximations of SGD);
    ``exact``: True when the init is λ-balanced within :data:`BALANCE_RTOL` and method is 'continuous';
    ``deviation``: :func:`balance_deviation` of the init; ``f``/``O`` the eigensystem of F; ``rates`` the growth
    rates used (f or f̃ = ln(1+ηf)/η, per τ); ``beta`` the quadratic coefficients (1 or f̃/f);
    ``A0`` the factor β^½ OᵀQ₀ ((C+R) × N_h); ``X`` the inputs; ``target`` S̄ = ŪᵀΣʸˣV̄ (R, C).

    ``method='first_order'`` / ``'second_order'``: the flow plus SGD's correction ``η δ(t)`` (+ ``η² ε(t)``) of P
    (:mod:`theory.sgd_expansion`); P, W_tot, the RSM and the loss carry it, a factor of P does not exist for it
    (``factor``/``weights`` refuse). ``method='modified'``: Q itself from SGD's modified equation
    (:mod:`theory.modified_equation`, :mod:`theory.modified_prediction`), finite t only, with :meth:`estimated_error`
    and :meth:`exact_steps`.
    """

    Ubar: np.ndarray
    Vbar: np.ndarray
    s: np.ndarray
    lam: float
    eta: float
    tau: float
    method: str
    exact: bool
    deviation: float
    f: np.ndarray
    O: np.ndarray
    rates: np.ndarray
    beta: np.ndarray
    A0: np.ndarray
    X: np.ndarray
    target: np.ndarray
    _memo: dict = field(default_factory=dict, repr=False)

    @property
    def n_in_reduced(self) -> int:
        return self.Vbar.shape[1]

    def _fixed_factor(self) -> np.ndarray:
        """Eigen-coordinate factor of P̂(∞) (the limit, :func:`theory.coupled._fixed_point` with rates 2f̃)."""
        if "fixed" not in self._memo:
            Pp = _fixed_point(2.0 * self.rates, self.A0.T)
            w, Z = np.linalg.eigh(0.5 * (Pp + Pp.T))
            top = np.argsort(-w)[: self.A0.shape[1]]
            self._memo["fixed"] = Z[:, top] * np.sqrt(np.clip(w[top], 0.0, None))
        return self._memo["fixed"]

    def _factors(self, h: np.ndarray) -> np.ndarray:
        """Eigen-coordinate factors of P̂ at finite h = t/τ ≥ 0 (T,), in steps of at most MAX_STEP_EXPONENT/f_max;
        from the first checkpoint within :data:`CONVERGED_RTOL` of P̂(∞) on, P̂(∞) itself (rounding level). The
        checkpoints are kept, so later calls (the first-order correction asks for one time at a time) start from
        the nearest one instead of from t = 0."""
        out = np.empty((h.size, *self.A0.shape))
        out[h == 0] = self.A0
        top = float(self.rates.max(initial=0.0))
        step = MAX_STEP_EXPONENT / top if top > 0 else np.inf
        k = np.where(h > 0, np.floor(h / step), 0).astype(np.int64) if np.isfinite(step) else np.zeros(h.size, int)
        checkpoints = self._memo.setdefault("checkpoints", {0: self.A0})  # j → the factor at h = j·step
        for j in np.unique(k[h > 0]):
            sel = (k == j) & (h > 0)
            converged = self._memo.get("converged")  # (first converged checkpoint, P̂(∞)'s factor) once found
            if converged is None or j < converged[0]:
                base = max(b for b in checkpoints if b <= j)
                A = checkpoints[base]
                while base < j and converged is None:  # checkpoints at multiples of the largest safe step
                    A, base = _riccati_steps(A, self.rates, np.array([step]))[0], base + 1
                    checkpoints[base] = A
                    fixed = self._fixed_factor()
                    P_inf, P_now = fixed @ fixed.T, A @ A.T
                    if np.abs(P_now - P_inf).max() <= CONVERGED_RTOL * max(np.abs(P_inf).max(), np.finfo(float).tiny):
                        converged = self._memo["converged"] = (base, fixed)
            if converged is not None and j >= converged[0]:
                out[sel] = converged[1]
                continue
            A = checkpoints[j]
            rest = h[sel] - j * step
            done = rest == 0.0
            vals = np.empty((rest.size, *self.A0.shape))
            vals[done] = A
            if (~done).any():
                vals[~done] = _riccati_steps(A, self.rates, rest[~done])
            out[sel] = vals
        return out

    def factor(self, t: ArrayLike) -> np.ndarray:
        r"""A factor Q̃(t) = [B₁ᵀ; B₂] (…, C+R, N_h) in the reduced coordinates, Q̃Q̃ᵀ = P(t) (a hidden rotation
        of the true [V̄ᵀW₁ᵀ; ŪᵀW₂] stack, see module docstring). t in epochs, any shape; t = ∞ the fixed point."""
        if self.method in CORRECTED_ORDERS:
            raise ValueError(f"the {self.method} form corrects P = QQᵀ (W_tot, the RSM, the loss), not a factor of "
                             "it: use method='continuous' for weights and the NTK")
        if self.method == "modified":
            t = times("t", t)
            return self._modified(t.reshape(-1) / self.tau)[0].reshape(*t.shape, *self.A0.shape)
        return self._flow_factor(t)

    def estimated_error(self, t: ArrayLike) -> float:
        """``method='modified'``: the error estimate of M̄ over the epochs t, in units of s_max
        (:func:`theory.modified_prediction.modified_prediction`; below :data:`theory.modified_prediction.MAX_ESTIMATE`,
        else the prediction is refused)."""
        if self.method != "modified":
            raise ValueError(f"estimated_error is given by method='modified', this solution has method={self.method!r}")
        return self._modified(times("t", t).reshape(-1) / self.tau).estimate

    def exact_steps(self, t: ArrayLike) -> int:
        """``method='modified'``: k₀, the first SGD steps the prediction over the epochs t takes by the exact map before
        its flow starts (a large init's transient; 0 where the flow follows SGD from the init)."""
        if self.method != "modified":
            raise ValueError(f"exact_steps is given by method='modified', this solution has method={self.method!r}")
        return self._modified(times("t", t).reshape(-1) / self.tau).exact_steps

    def _modified(self, h: np.ndarray) -> ModifiedPrediction:
        key = h.tobytes()
        last = self._memo.get("modified")
        if last is None or last[0] != key:  # one integration serves W_tot, the RSM and the loss at the same times
            if not np.isfinite(h).all():
                raise ValueError("method='modified' integrates SGD's modified equation: ask for finite epochs t "
                                 "(t = ∞ is the flow's fixed point, method='continuous')")
            s_max = float(self.s.max(initial=0.0))
            self._memo["modified"] = (key, modified_prediction(self.O @ self.A0, self.target, self.eta, h, s_max))
        return self._memo["modified"][1]

    def _flow_factor(self, t: ArrayLike) -> np.ndarray:
        t = times("t", t)
        h = t.reshape(-1) / self.tau
        out = np.empty((h.size, *self.A0.shape))
        b_inv = 1.0 / np.sqrt(self.beta)
        fin = np.isfinite(h)
        if fin.any():
            out[fin] = self.O @ (b_inv[:, None] * self._factors(h[fin]))
        if (~fin).any():
            out[~fin] = self.O @ (b_inv[:, None] * self._fixed_factor())
        return out.reshape(*t.shape, *self.A0.shape)

    def qqt(self, t: ArrayLike) -> np.ndarray:
        """P(t) = QQᵀ in reduced coordinates (…, C+R, C+R): blocks W₁ᵀW₁, W₁ᵀW₂ᵀ / W₂W₁, W₂W₂ᵀ (in V̄, Ū); with
        ``method='first_order'``/``'second_order'`` plus SGD's correction
        (:func:`theory.sgd_expansion.sgd_correction`)."""
        t = times("t", t)
        if self.method == "modified":
            Q = self.factor(t)
            return Q @ np.swapaxes(Q, -1, -2)
        P = self._flow_qqt(t)
        if self.method in CORRECTED_ORDERS:
            h = t.reshape(-1) / self.tau
            fin = np.isfinite(h)  # t = ∞: the fixed point, which SGD shares (δ → 0)
            if fin.any():
                P.reshape(-1, *P.shape[-2:])[fin] += self.eta * self._correction(h[fin])
        return P

    def _correction(self, h: np.ndarray) -> np.ndarray:
        key = h.tobytes()
        last = self._memo.get("delta")
        if last is None or last[0] != key:  # one integration serves W_tot, the RSM and the loss at the same times
            s_max = float(self.s.max(initial=0.0))
            self._memo["delta"] = (key, sgd_correction(self.O @ self.A0, self.target, self.eta, h, s_max,
                                                       CORRECTED_ORDERS[self.method]))
        return self._memo["delta"][1]

    def _flow_qqt(self, t: np.ndarray) -> np.ndarray:
        """The flow's P(t) = Q̃Q̃ᵀ at epochs t (…, C+R, C+R)."""
        Q = self._flow_factor(t)
        return Q @ np.swapaxes(Q, -1, -2)

    def mode_matrix(self, t: ArrayLike) -> np.ndarray:
        """Reduced end-to-end map M̄ = ŪᵀW_totV̄ (…, R, C): the W₂W₁ block of :meth:`qqt`."""
        C = self.n_in_reduced
        return self.qqt(t)[..., C:, :C]

    def modes(self, t: ArrayLike) -> np.ndarray:
        """Mode matrix UᵀW_tot(t)V (…, r, r) (its diagonal: the mode strengths a_α(t))."""
        r = self.s.size
        return self.mode_matrix(t)[..., :r, :r]

    def w_tot(self, t: ArrayLike) -> np.ndarray:
        """End-to-end map W_tot(t) = Ū M̄ V̄ᵀ (…, N_out, N_in)."""
        return end_to_end(self.mode_matrix(t), self.Ubar, self.Vbar)

    def rsm(self, t: ArrayLike) -> np.ndarray:
        """First hidden layer's RSM ``X W₁ᵀW₁ Xᵀ`` (…, P, P) (the repo's :func:`theory.observables.gram_rsm`)."""
        C = self.n_in_reduced
        return gram_rsm(self.qqt(t)[..., :C, :C], self.X @ self.Vbar)  # the W₁ᵀW₁ block of P

    def weights(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(W₁, W₂) at one epoch t, up to a hidden rotation W₁ → OW₁, W₂ → W₂Oᵀ that no observable sees."""
        Q = self.factor(np.asarray(float(t)))
        C = self.n_in_reduced
        return Q[:C].T @ self.Vbar.T, self.Ubar @ Q[C:]

    def loss(self, t: ArrayLike, Y: ArrayLike, reduction: str = "mean") -> np.ndarray:
        """torch's MSELoss of the prediction on (X, Y): ``‖Y − X W_totᵀ‖²`` / (P·N_out) for 'mean'."""
        Y = as_float_array("Y", Y, ndim=2)
        choice("reduction", reduction, ("mean", "sum"))
        W_star = np.linalg.lstsq(self.X, Y, rcond=None)[0].T
        lstsq = self.Ubar.T @ W_star @ self.Vbar
        total = squared_error(self.mode_matrix(t), lstsq, float(np.sum((Y - self.X @ W_star.T) ** 2)))
        return total / Y.size if reduction == "mean" else total


def balanced_solution(X: ArrayLike, Y: ArrayLike, weights: Sequence[ArrayLike], lr: float, *,
                      method: str = "continuous", reduction: str = "mean", lam: float | None = None,
                      approximate: bool = False) -> BalancedSolution:
    r"""The λ-balanced closed form for a depth-2 net with initial ``weights`` [W₁, W₂] trained on (X, Y) at ``lr``.

    Requires whitened inputs (XᵀX = I within :data:`theory.correlations.WHITENED_RTOL`; else ``ValueError``: the
    Riccati form needs Σˣˣ = I) and depth 2. λ defaults to :func:`measured_lambda`; the init must be λ-balanced
    within :data:`BALANCE_RTOL` (:func:`balance_deviation`) unless ``approximate=True``, which applies the same
    formula to any init (then ``.exact`` is False: the conserved D − λI is ignored). ``method``: 'continuous'
    (gradient flow, exact), 'first_order' / 'second_order' (the flow plus SGD's correction of P to that order, error
    O((ηs)²) / O((ηs)³): :mod:`theory.sgd_expansion`), 'finite_lr' (the rate-corrected form of the module
    docstring; needs η·max f < 1) or 'modified' (SGD's modified equation integrated from the init's own weights,
    error O((ηs)⁴), with :meth:`BalancedSolution.estimated_error`: :mod:`theory.modified_equation`; it needs no
    balance, so any depth-2 init is accepted). η = 2·lr/(P·N_out) ('mean'), τ = 1/η epochs. Reference: Braun et al.,
    NeurIPS 2022; Dominé et al., ICLR 2025.
    """
    X = as_float_array("X", X, ndim=2)
    Y = as_float_array("Y", Y, ndim=2)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must have the same number of rows (samples), got X.shape={X.shape}, "
                         f"Y.shape={Y.shape}")
    choice("method", method, METHODS)
    if not isinstance(approximate, (bool, np.bool_)):
        raise ValueError(f"approximate must be True or False, got {approximate!r}")
    if not is_whitened(X):
        raise ValueError("X must be whitened (XᵀX = I, e.g. one-hot items): the λ-balanced closed form needs Σˣˣ = I; "
                         "theory.predictor(..., theory='exact') covers any inputs")
    ws = chained_weights(weights, X.shape[1], Y.shape[1])
    if len(ws) != 2:
        raise ValueError(f"weights must be [W1, W2] (depth 2): the λ-balanced closed form is for one hidden layer, "
                         f"got depth {len(ws)}")
    eta = learning_rate_to_eta(lr, X.shape[0], Y.shape[1], reduction)
    lam = measured_lambda(ws[0], ws[1])[0] if lam is None else float(as_float_array("lam", lam, ndim=0))
    dev = balance_deviation(ws[0], ws[1], lam)
    if dev > BALANCE_RTOL and not approximate and method != "modified":
        raise ValueError(f"weights must be λ-balanced (W2ᵀW2 − W1W1ᵀ = λI) within BALANCE_RTOL={BALANCE_RTOL:g} for "
                         f"the exact solution, got relative deviation {dev:.3g} at λ={lam:.6g}; draw the init with "
                         "saxe.balanced_init_, or pass approximate=True to apply the formula as an approximation")
    st = exact_state(X, Y, ws)
    s = io_svd(X, Y)[1]
    s[s <= ZERO_S_FACTOR * np.finfo(float).eps * max(*X.shape, Y.shape[1]) * s.max(initial=0.0)] = 0.0
    C, R = st.Vbar.shape[1], st.Ubar.shape[1]
    f, O = _eigen_system(s, lam, C, R)
    if method == "finite_lr":
        if not eta * np.abs(f).max(initial=0.0) < 1.0:
            raise ValueError(f"lr={lr!r} gives η·max f = {eta * np.abs(f).max():.3g} >= 1: the finite-lr form needs "
                             "1 + ηf > 0 for every eigenvalue f = ±√(s² + λ²/4), ±λ/2 of F; lower lr")
        nz = f != 0
        rates = np.where(nz, np.log1p(eta * f) / eta, 0.0)
        beta = np.where(nz, rates / np.where(nz, f, 1.0), 1.0)
    else:
        rates, beta = f.copy(), np.ones_like(f)
    Q0 = np.vstack([st.layers[0].T, st.layers[1]])  # [B₁ᵀ; B₂] = [V̄ᵀW₁ᵀ; ŪᵀW₂]
    A0 = np.sqrt(beta)[:, None] * (O.T @ Q0)
    for arr in (st.Ubar, st.Vbar, s, f, O, rates, beta, A0, X, st.target):
        arr.setflags(write=False)
    return BalancedSolution(Ubar=st.Ubar, Vbar=st.Vbar, s=s, lam=float(lam), eta=eta, tau=1.0 / eta, method=method,
                            exact=(dev <= BALANCE_RTOL and method == "continuous"), deviation=dev, f=f, O=O,
                            rates=rates, beta=beta, A0=A0, X=X, target=st.target)
