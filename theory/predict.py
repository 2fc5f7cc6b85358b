r"""One-call predictions for a data set and learning rate, in the style of neural-tangents' ``predict``.

``predictor(X, Y, lr, weights=w0)`` does the SVD of Σʸˣ and every static quantity once and returns a
:class:`Prediction` whose methods map an array of epochs t to predicted observables. Three theories, each a
trajectory ``(M̄(t), G(t))`` in fixed bases (Ū, V̄) (:mod:`theory.trajectories`), from which every observable is
computed once, the same way::

    W_tot = Ū M̄ V̄ᵀ          modes = singular values of M̄          RSM = (X V̄) G (X V̄)ᵀ
    outputs = (X V̄) M̄ᵀ Ūᵀ   loss = (‖Y − X W*ᵀ‖² + tr(D Σ̄ˣˣ Dᵀ)) / (P·N_out),  D = M̄* − M̄

* ``theory='exact'`` (the default when ``weights`` are given): the exact reduced state of :mod:`theory.state`.
  SGD of the real network to the float64 floor for every depth, width (bottlenecks included), init scale, Σˣˣ
  and every lr below the stable bound.
* ``theory='coupled'``: the depth-2 small-init Z-map from the weights (a named approximation, error O(init²);
  whitened inputs).
* ``theory='scalar'`` (the default without weights): balanced decoupled modes from ``a0`` (or the weights' or
  γ's a priori strength); closed form (``method='continuous'``, Saxe's solution) or the exact scalar SGD map
  (``'discrete'``); whitened inputs.

An lr above the stable bound (:func:`theory.stable_lr`: the learned modes', and the initial weights' curvature)
is refused unless ``unstable=True``: SGD then oscillates or diverges and the orbit depends on float64 rounding,
so no trajectory is exact (:func:`theory.divergence_lr`).

Glossary: X (P, N_in), Y (P, N_out); U, s, V the SVD of Σʸˣ (modes in SVD order); η per-epoch rate, τ = 1/η epochs
(:mod:`theory.correlations`); L = ``depth``; a₀ initial strengths; t epochs (integers for ``method='discrete'``;
``np.inf`` = the fixed point).

References: Saxe, McClelland & Ganguli, arXiv:1312.6120; PNAS 116:11537 (2019); Novak et al., "Neural Tangents",
ICLR 2020 (the ``predict`` factory style).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from . import coupled as _coupled
from ._validate import as_float_array, choice, depth_and_widths
from .correlations import io_svd, learning_rate_to_eta
from .curvature import StableLR, stable_lr
from .init import expected_initial_mode_strength, initial_mode_strength
from .observables import end_to_end, gram_rsm, range_factor, selected_outputs, squared_error
from .stability import DISCRETE_STEP_CAP
from .stability import time_to_learn as _time_to_learn
from .state import chained_weights, exact_state, is_whitened
from .trajectories import Coupled, Exact, Scalar

__all__ = ["Prediction", "predictor", "ZERO_S_FACTOR", "THEORIES"]

THEORIES = ("exact", "coupled", "scalar")

# Continuous time_to_learn: the crossing is bracketed on a grid of this many steps per search window, then found
# on a second grid of as many steps inside the bracket and interpolated: a relative resolution of 1/256² of the
# window, with an interpolation error far below it.
CROSSING_GRID = 256

# A singular value of Σʸˣ below ZERO_S_FACTOR·ε·max(P, N_in, N_out)·s_max is rounding noise of a rank-deficient
# Σʸˣ (duplicate items give ~1e-16·s_max) and is set to exactly 0, so that the mode is treated as unlearnable.
ZERO_S_FACTOR = 10.0


def _readonly(a):
    if isinstance(a, np.ndarray):
        a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Prediction:
    r"""Predicted learning trajectory of one network on one data set (build it with :func:`predictor`).

    Attributes: ``theory`` ('exact', 'coupled' or 'scalar') and ``method`` ('discrete': the SGD map, integer
    epochs; 'continuous': gradient flow); ``U`` (N_out, r), ``s`` (r,), ``V`` (N_in, r) the SVD of Σʸˣ; ``eta`` per
    epoch and ``tau`` = 1/η epochs; ``depth`` L; ``widths`` the hidden widths; ``a0`` (r,) the initial strength per
    mode (the diagonal of ``mode_matrix(0)``); ``applicable`` maps each theory to '' where it applies to this
    data and init, else why not; ``bounds`` the stable learning rates (:func:`theory.stable_lr`). Every method
    takes epochs t (scalar → no leading axis; 1-d array → leading axis len(t); ``np.inf`` → the fixed point).
    Reference: Saxe, McClelland & Ganguli, arXiv:1312.6120; PNAS 116:11537 (2019).
    """

    theory: str
    method: str
    U: np.ndarray
    s: np.ndarray
    V: np.ndarray
    eta: float
    tau: float
    depth: int
    widths: tuple
    a0: np.ndarray
    applicable: dict = field(repr=False)
    bounds: StableLR = field(repr=False)
    X: np.ndarray = field(repr=False)
    reduction: str = field(repr=False)
    fitted: np.ndarray = field(repr=False)  # singular values of Ŷ = X W*ᵀ, the least-squares outputs
    learned: np.ndarray = field(repr=False)  # what mode α settles at: s (whitened X), else σ_α(W*) (r,)
    _traj: Exact | Coupled | Scalar = field(repr=False)
    _lstsq: np.ndarray = field(repr=False)  # M̄* in the trajectory's bases
    _unfittable: float = field(repr=False)
    _sxx_factor: np.ndarray | None = field(repr=False)  # range_factor(Σ̄ˣˣ), None: Σ̄ˣˣ = I
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def exact(self) -> bool:
        """True for the exact theory below the stable bound: SGD of the real network to the float64 floor."""
        return self.theory == "exact" and not self.bounds.exceeded

    # ------------------------------------------------------------------------------ epochs and the state
    def _epochs(self, t) -> tuple[np.ndarray, bool]:
        tt = as_float_array("t", t, allow_inf=True)
        if tt.ndim > 1:
            raise ValueError(f"t must be a scalar or a 1-d array of epochs, got shape {tt.shape}")
        if (tt < 0).any():
            raise ValueError(f"t must be >= 0 (epochs since the start of training), got min {tt.min()!r}")
        if self.method == "discrete":
            fin = tt[np.isfinite(tt)]
            if (fin != np.round(fin)).any():
                raise ValueError("t must be integer-valued (epochs = SGD updates) for method='discrete', got "
                                 f"{fin[fin != np.round(fin)][0]!r}; use method='continuous' for real-valued t")
            if fin.size and fin.max() > DISCRETE_STEP_CAP:
                raise ValueError(f"t must be <= DISCRETE_STEP_CAP = {DISCRETE_STEP_CAP} epochs for method='discrete' "
                                 f"(the most a map is iterated), got {float(fin.max())!r}; pass t = np.inf for the "
                                 "fixed point, or method='continuous'")
        return tt.reshape(-1), tt.ndim == 0

    def _state(self, t):
        """(M̄ (n, R, C), G (n, C, C), scalar) at epochs t, the fixed point at t = inf."""
        tt, scalar = self._epochs(t)
        inf = np.isinf(tt)
        R, C = self._traj.Ubar.shape[1], self._traj.Vbar.shape[1]
        M, G = np.empty((tt.size, R, C)), np.empty((tt.size, C, C))
        if inf.any():
            if "limit" not in self._cache:
                self._cache["limit"] = self._traj.limit(self._best_loss_sum(), float(np.sum(self.fitted**2)),
                                                        self._loss_sum)
            M[inf], G[inf] = self._cache["limit"]
        if (~inf).any():
            M[~inf], G[~inf] = self._traj.at(tt[~inf])
        return M, G, scalar

    def _loss_sum(self, M):
        return squared_error(M, self._lstsq, self._unfittable, self._sxx_factor)

    def _best_loss_sum(self) -> float:
        w = min(self.widths, default=self.fitted.size)
        return self._unfittable + float(np.sum(self.fitted[w:] ** 2))

    def best_loss(self) -> float:
        r"""The least loss (as :meth:`loss` reports it) a network whose narrowest layer has w units can reach:
        ``(‖Y − Ŷ‖² + Σ_{i > w} σ_i(Ŷ)²)/(P·N_out)``, Ŷ = X W*ᵀ the least-squares outputs (Eckart–Young)."""
        P, n_out = self.X.shape[0], self.U.shape[0]
        return self._best_loss_sum() / (P * n_out if self.reduction == "mean" else 1.0)

    # ------------------------------------------------------------------------------------- observables
    def mode_matrix(self, t) -> np.ndarray:
        r"""Mode matrix ``M(t) = Uᵀ W_tot(t) V`` (len(t), r, r) in SVD order; diag(a(t)) for the scalar theory."""
        M, _, scalar = self._state(t)
        r = self.s.size
        out = M[:, :r, :r]
        return out[0] if scalar else out

    def mode_strengths(self, t) -> np.ndarray:
        r"""Diagonal of M(t), (len(t), r) in SVD order: the strengths a_α(t) of the data's modes."""
        out = np.diagonal(self.mode_matrix(t), axis1=-2, axis2=-1)
        return out.copy()

    def modes(self, t) -> np.ndarray:
        r"""Predicted singular values of W_tot(t), sorted descending (what ``net_svd`` measures), (len(t), r)."""
        M, _, scalar = self._state(t)
        out = np.linalg.svd(M, compute_uv=False)[..., : self.s.size]  # the bases hold U and V: R, C ≥ r
        return out[0] if scalar else out

    def w_tot(self, t) -> np.ndarray:
        r"""Predicted ``W_tot(t) = Ū M̄(t) V̄ᵀ``, (len(t), N_out, N_in)."""
        M, _, scalar = self._state(t)
        out = end_to_end(M, self._traj.Ubar, self._traj.Vbar)
        return out[0] if scalar else out

    def loss(self, t) -> np.ndarray:
        r"""Loss torch reports: ``(‖Y − X W*ᵀ‖² + tr(D Σ̄ˣˣ Dᵀ))/(P·N_out)`` ('mean'; 'sum' without the division).

        W* is the least-squares map and D = M̄* − M̄ its reduced difference to the network: the first term is the
        part of Y no linear map of X fits, computed directly from the data (no cancellation of large sums).
        """
        M, _, scalar = self._state(t)
        P, n_out = self.X.shape[0], self.U.shape[0]
        out = self._loss_sum(M) / (P * n_out if self.reduction == "mean" else 1.0)
        return out[0] if scalar else out

    def rsm(self, t) -> np.ndarray:
        r"""First hidden layer's RSM ``h hᵀ = X V̄ G V̄ᵀ Xᵀ``, (len(t), P, P).

        Exact theory: G = B_1ᵀB_1 of the tracked first layer. Coupled: G = M (W1 = Z Vᵀ). Scalar: the balanced
        ``G = diag(abs(a)^{2/L})``.
        """
        if self.depth < 2:
            raise ValueError("rsm needs a hidden layer: depth must be >= 2, got depth=1")
        _, G, scalar = self._state(t)
        out = gram_rsm(G, self.X @ self._traj.Vbar)
        return out[0] if scalar else out

    def outputs(self, t, items=None, features=None) -> np.ndarray:
        r"""Predicted outputs ``X W_totᵀ = (X V̄) M̄ᵀ Ūᵀ`` at the chosen item rows / feature columns.

        ``items``/``features``: None (all), an int (that axis is dropped) or an index array. Shape
        (len(t), n_items, n_features); only the chosen rows and columns are computed.
        """
        M, _, scalar = self._state(t)
        out = selected_outputs(M, self._traj.Ubar, self.X @ self._traj.Vbar, items, features)
        return out[0] if scalar else out

    def time_to_learn(self, fraction=0.5) -> np.ndarray:
        r"""Epochs at which the prediction's own ``modes(t)`` first reach ``fraction`` of what they learn.

        "What mode α learns" is s_α for whitened inputs (XᵀX = I), and otherwise the α-th singular value of the
        least-squares map W* = Σʸˣ(Σˣˣ)⁺, where the modes settle (``learned``): with Σˣˣ ≠ I they never reach s.

        Scalar theory: the exact inverse of its curve (:func:`theory.stability.time_to_learn`). Exact and coupled
        theories: the first crossing of ``modes(t)[α] ≥ fraction·s_α`` (the α-th largest singular value against the
        α-th largest s), searched over epochs doubling up to ``DISCRETE_STEP_CAP``; 'discrete' gives an integer
        epoch, 'continuous' the crossing bracketed on two nested grids and interpolated. ``np.inf`` for modes never
        learned (s = 0, beyond a bottleneck, or not within the cap).
        """
        if not 0.0 < float(fraction) < 1.0:
            raise ValueError(f"fraction must be strictly between 0 and 1, got {fraction=}")
        if self.theory == "scalar":
            return self._scalar_time(float(fraction))
        return self._crossing(float(fraction))

    def _scalar_time(self, f: float) -> np.ndarray:
        out = np.full(self.s.size, np.inf)
        ok = (self.s > 0) & (self.a0 >= 0)
        rate = {"tau": self.tau} if self.method == "continuous" else {"eta": self.eta}
        out[ok] = _time_to_learn(f, self.s[ok], self.a0[ok], depth=self.depth, method=self.method, **rate)
        neg = (self.s > 0) & (self.a0 < 0)  # depth 1 only: a = s + (a0 − s)(decay); same first crossing formula
        if neg.any():
            need = (1.0 - f) * self.s[neg] / (self.s[neg] - self.a0[neg])  # decay factor to reach f·s
            if self.method == "continuous":
                out[neg] = -self.tau * np.log(need)
            else:
                out[neg] = np.ceil(np.log(need) / np.log1p(-self.eta)) if self.eta < 1 else 1.0
        return out

    def _crossing(self, f: float) -> np.ndarray:
        target = f * self.learned
        out = np.full(self.s.size, np.inf)
        todo = self.learned > 0
        start, end = 0, 256
        while todo.any() and start <= DISCRETE_STEP_CAP:
            if self.method == "discrete":
                t = np.arange(start, min(end, DISCRETE_STEP_CAP) + 1, dtype=np.float64)
            else:  # a coarse grid first; the crossing is refined below
                t = np.linspace(start, end, CROSSING_GRID + 1)
            sv = self.modes(t)
            reached = (sv >= target) & todo
            hit = reached.any(axis=0)
            first = reached.argmax(axis=0)
            for a in np.flatnonzero(hit):
                k = int(first[a])
                out[a] = t[k] if self.method == "discrete" or k == 0 else \
                    self._refine(int(a), t[k - 1], t[k], target[a])
            todo &= ~hit
            start, end = end + (self.method == "discrete"), 4 * end
        return out

    def _refine(self, a: int, lo: float, hi: float, value: float) -> float:
        """The crossing within [lo, hi] on a finer grid, then linearly interpolated (error ∝ (grid step)²)."""
        t = np.linspace(lo, hi, CROSSING_GRID + 1)
        sv = self.modes(t)[:, a]
        k = max(int(np.argmax(sv >= value)), 1)
        lo_v, hi_v = sv[k - 1], sv[k]
        return float(t[k - 1] + (t[k] - t[k - 1]) * (value - lo_v) / (hi_v - lo_v)) if hi_v > lo_v else float(t[k])


# ------------------------------------------------------------------------------------------- factory
def _initial_strengths(a0, r: int, depth: int) -> np.ndarray:
    a0 = as_float_array("a0", a0)
    if a0.ndim > 1 or (a0.ndim == 1 and a0.size != r):
        raise ValueError(f"a0 must be a scalar or one value per mode ({r},), got shape {a0.shape}")
    if depth >= 2 and (a0 < 0).any():
        raise ValueError(f"a0 must be >= 0 for depth >= 2 (a balanced strength u^L), got min {a0.min()!r}")
    return np.broadcast_to(a0, (r,)).copy()


def _applicable(whitened: bool, depth: int, has_weights: bool) -> dict:
    why_white = "" if whitened else "needs whitened inputs (XᵀX = I); these are not"
    return {
        "exact": "" if has_weights else "needs the initial weights (weights=[W_1, …, W_L])",
        "coupled": why_white or ("" if depth == 2 and has_weights else
                                 "needs depth 2 and the initial weights (small-init approximation, error O(init²))"),
        "scalar": why_white,
    }


def predictor(X: ArrayLike, Y: ArrayLike, lr: float, *, theory: str | None = None, method: str = "discrete",
              depth: int | None = None, reduction: str = "mean", a0: ArrayLike | None = None,
              weights: Sequence[ArrayLike] | None = None, gamma: float | None = None,
              hidden: int | Sequence[int] | None = None, unstable: bool = False) -> Prediction:
    r"""Build a :class:`Prediction` for SGD with learning rate ``lr`` on ``nn.MSELoss(reduction)`` of (X, Y).

    Computes ``Σʸˣ = YᵀX = U S Vᵀ`` (:func:`theory.io_svd`), ``η = 2·lr/(P·N_out)`` ('mean') or ``2·lr`` ('sum'),
    ``τ = 1/η`` epochs, and the initial state of the chosen ``theory`` (module docstring):

    * ``'exact'`` (default when ``weights`` are given): the exact reduced state from ``weights`` [W_1 … W_L]
      (numpy or torch, torch layout); any X (whitened or not).
    * ``'coupled'``: depth 2 only, from ``weights``: ``Z = (W1 V + W2ᵀ U)/2`` (approximation, O(init²)).
    * ``'scalar'`` (default otherwise): ``a0`` (scalar or per mode) if given, else ``initial_mode_strength(weights,
      U, V)``, else ``expected_initial_mode_strength(gamma, [N_in, *hidden, N_out])``.

    ``depth`` L defaults to len(weights), len(hidden) + 1 or 2; all given must agree. ``hidden``: an int (every
    hidden layer) or a list of widths. ``method``: 'discrete' (the SGD map, integer epochs) or 'continuous'
    (gradient flow). ``unstable=True`` allows an lr above :func:`theory.stable_lr` (refused by default: the
    prediction is then not exact). Every misuse raises ``ValueError`` naming the argument.
    Reference: Saxe, McClelland & Ganguli, arXiv:1312.6120; PNAS 116:11537 (2019).
    """
    X = as_float_array("X", X, ndim=2)
    Y = as_float_array("Y", Y, ndim=2)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must have the same number of rows (samples), got X.shape={X.shape}, "
                         f"Y.shape={Y.shape}")
    U, s, V = io_svd(X, Y)
    s[s <= ZERO_S_FACTOR * np.finfo(float).eps * max(*X.shape, Y.shape[1]) * s.max(initial=0.0)] = 0.0
    eta = learning_rate_to_eta(lr, X.shape[0], Y.shape[1], reduction)
    choice("method", method, ("discrete", "continuous"))
    L, widths = depth_and_widths(depth, weights, hidden)
    ws = chained_weights(weights, X.shape[1], Y.shape[1]) if weights is not None else None
    theory = ("exact" if ws is not None and a0 is None and gamma is None else "scalar") if theory is None else theory
    choice("theory", theory, THEORIES)
    whitened = is_whitened(X)
    applicable = _applicable(whitened, L, ws is not None)
    if applicable[theory]:
        raise ValueError(f"theory={theory!r} {applicable[theory]}; "
                         + ("theory='exact' with the initial weights covers any inputs" if not whitened else
                            "pass weights=[W_1, …, W_L] (torch layout)"))
    if theory != "scalar" and a0 is not None:
        raise ValueError(f"a0 must not be given with theory={theory!r} (the initial state comes from weights)")
    if not isinstance(unstable, (bool, np.bool_)):
        raise ValueError(f"unstable must be True or False, got {unstable!r}")
    bounds = stable_lr(X, Y, depth=L, hidden=widths or None, weights=ws, reduction=reduction, lr=lr)
    if bounds.exceeded and not unstable:
        raise ValueError(f"lr={lr!r} is above the stable bound: {bounds.describe()}. Above the learned-state bound "
                         "SGD does not settle (the top modes oscillate, and diverge beyond theory.divergence_lr) and "
                         "its orbit depends on float64 rounding, so no prediction is exact; pass unstable=True to "
                         "iterate the maps anyway")
    W_star = np.linalg.lstsq(X, Y, rcond=None)[0].T
    fitted = np.linalg.svd(X @ W_star.T, compute_uv=False)
    learned = s.copy()
    if not whitened:  # the modes settle at W*'s singular values, not at those of Σʸˣ (rounding-level ones: 0)
        sw = np.linalg.svd(W_star, compute_uv=False)[: s.size]
        rank_tol = np.finfo(float).eps * max(X.shape) * sw.max(initial=0.0)  # lstsq's own rank cut (rcond=None)
        learned[: sw.size] = np.where(sw > rank_tol, sw, 0.0)
        learned[sw.size:] = 0.0
    traj: Exact | Coupled | Scalar
    if theory == "exact":
        assert ws is not None  # applicable["exact"] is "" only with weights
        st = exact_state(X, Y, ws)
        traj = Exact(st, eta, method)
        lstsq, unfittable, sxx = st.lstsq, st.unfittable, st.sxx
    else:
        lstsq, unfittable, sxx = U.T @ W_star @ V, float(np.sum((Y - X @ W_star.T) ** 2)), None
        if theory == "coupled":
            assert ws is not None  # applicable["coupled"] is "" only with weights
            traj = Coupled(U, s, V, _coupled.growing_part(ws[0], ws[1], U, V), eta, method)
        else:
            if a0 is not None:
                strengths = _initial_strengths(a0, s.size, L)
            elif ws is not None:
                strengths = np.asarray(initial_mode_strength(ws, U, V), dtype=float)
            elif gamma is not None:
                if L >= 2 and len(widths) != L - 1:
                    raise ValueError(f"hidden must give the hidden width(s) for depth {L} to use gamma, "
                                     f"got hidden={hidden!r}")
                strengths = np.full(s.size, expected_initial_mode_strength(gamma, [X.shape[1], *widths, Y.shape[1]]))
            else:
                raise ValueError("the initial strength is unknown: pass a0, weights (initial weights) or gamma "
                                 "(init scale)")
            traj = Scalar(U, s, V, _readonly(strengths), eta, L, method)
    M0 = traj.at(np.zeros(1))[0][0]
    r = s.size
    return Prediction(theory=theory, method=method, U=_readonly(U), s=_readonly(s), V=_readonly(V), eta=eta,
                      tau=1.0 / eta, depth=L, widths=widths, a0=_readonly(np.diagonal(M0[:r, :r]).copy()),
                      applicable=applicable, bounds=bounds, X=_readonly(X), reduction=reduction,
                      fitted=_readonly(fitted), learned=_readonly(learned), _traj=traj, _lstsq=lstsq,
                      _unfittable=unfittable, _sxx_factor=None if sxx is None else range_factor(sxx))
