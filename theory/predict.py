r"""One-call predictions for a data set and learning rate, in the style of neural-tangents' ``predict``.

``predictor(X, Y, lr, …)`` does the SVD of Σʸˣ and every static quantity once and returns a :class:`Prediction`
whose methods map an array of epochs t to predicted observables::

    decoupled (balanced):  M(t) = diag(a(t)),  a from theory.modes (continuous or exact discrete map)
    coupled, depth 2:      M(t) from theory.coupled (Z-map / closed form from the actual init)
    coupled, depth ≠ 2:    M(t) = B_L⋯B_1 of the projected weights (theory.projected.project_weights)

and then ``W_tot = U M Vᵀ``, the loss, the RSM and the outputs via :mod:`theory.observables`.

Modes with s = 0 (rank-deficient Σʸˣ; rounding-level singular values are set to 0, see ``ZERO_S_FACTOR``) are
not learned; their balanced dynamics ``τ du/dt = −u^{2L−1}`` (a = u^L)
decays algebraically for L ≥ 2::

    a(t) = a₀ (1 + (2L−2) a₀^{(2L−2)/L} t/τ)^{−L/(2L−2)}        (L = 2: a₀/(1 + 2a₀t/τ))

and exponentially for L = 1 (a = a₀ e^{−t/τ}); the discrete map is ``u ← u − η u^{2L−1}``.

Glossary: X (P, N_in) whitened inputs (XᵀX = I), Y (P, N_out) targets; U, s, V the SVD of Σʸˣ (modes in SVD
order); η per-epoch rate, τ = 1/η epochs (:mod:`theory.correlations`); L = ``depth``; a₀ initial strengths;
t epochs (integers for ``method='discrete'``; ``np.inf`` = the fixed point).

References: Saxe, McClelland & Ganguli, arXiv:1312.6120; PNAS 116:11537 (2019); Novak et al., "Neural Tangents",
ICLR 2020 (the ``predict`` factory style).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from . import coupled as _coupled
from . import projected as _projected
from ._validate import as_float_array, choice, integer
from .correlations import check_whitened, io_svd, learning_rate_to_eta
from .init import expected_initial_mode_strength, initial_mode_strength
from .modes import mode_strength, mode_strength_discrete
from .observables import _select, loss_from_modes, outputs_from_modes, rsm_from_modes, w_tot_from_modes
from .stability import time_to_learn as _time_to_learn

__all__ = ["Prediction", "predictor", "ZERO_S_FACTOR"]

# A singular value of Σʸˣ below ZERO_S_FACTOR·ε·max(P, N_in, N_out)·s_max is rounding noise of a rank-deficient
# Σʸˣ (duplicate items give ~1e-16·s_max) and is set to exactly 0, so that the mode is treated as unlearnable.
ZERO_S_FACTOR = 10.0


def _rows(traj) -> int:
    return (traj[0] if isinstance(traj, tuple) else traj).shape[0]


def _readonly(a):
    if isinstance(a, np.ndarray):
        a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Prediction:
    r"""Predicted learning trajectory of one network on one data set (build it with :func:`predictor`).

    Attributes: ``U`` (N_out, r), ``s`` (r,), ``V`` (N_in, r) the SVD of Σʸˣ; ``eta`` per epoch and ``tau`` = 1/η
    epochs; ``depth`` L; ``method`` 'discrete' (exact SGD map, integer epochs) or 'continuous' (gradient flow);
    ``coupled``; ``a0`` (r,) initial strength per mode (for coupled predictions the diagonal of M₀). Every method
    takes epochs t (scalar → no leading axis; 1-d array → leading axis len(t); ``np.inf`` → the fixed point).
    Reference: Saxe, McClelland & Ganguli, arXiv:1312.6120; PNAS 116:11537 (2019).
    """

    U: np.ndarray
    s: np.ndarray
    V: np.ndarray
    eta: float
    tau: float
    depth: int
    method: str
    coupled: bool
    a0: np.ndarray
    X: np.ndarray = field(repr=False)
    y_sq_norm: float = field(repr=False)
    reduction: str = field(repr=False)
    M0: np.ndarray | None = field(default=None, repr=False)
    factor: np.ndarray | None = field(default=None, repr=False)
    projected: tuple | None = field(default=None, repr=False)
    Ubar: np.ndarray | None = field(default=None, repr=False)  # extended bases of the projected theory
    Vbar: np.ndarray | None = field(default=None, repr=False)
    widths: tuple = field(default=(), repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------------------ epochs and caching
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
        return tt.reshape(-1), tt.ndim == 0

    def _discrete(self, n_max: int) -> np.ndarray:
        """Iterated trajectory with at least n_max+1 rows: a (n+1, r) decoupled, M (n+1, r, r) coupled."""
        have = self._cache.get("traj")
        if have is not None and _rows(have) > n_max:
            return have
        n_have = -1 if have is None else _rows(have) - 1
        try:  # grow geometrically so that a loop over scalar t stays linear in total cost
            traj = self._iterate(max(n_max, 2 * n_have))
        except ValueError:
            traj = self._iterate(n_max)  # diverges beyond what was asked: only compute (and raise) for n_max
        self._cache["traj"] = tuple(map(_readonly, traj)) if isinstance(traj, tuple) else _readonly(traj)
        return self._cache["traj"]

    def _iterate(self, n: int) -> np.ndarray:
        if not self.coupled:
            return _strengths_discrete(n, self.s, self.a0, self.eta, self.depth)
        if self.depth == 2:
            return _coupled.coupled_modes_discrete(n, self.s, self.M0, self.eta)
        return _projected.projected_trajectory_discrete(n, self.s, list(self.projected), self.eta)

    def _fixed_point(self) -> np.ndarray:
        r = self.s.size
        if not self.coupled:
            return np.diag(np.where((self.a0 != 0) | (self.depth == 1), self.s, 0.0))
        if self.depth == 2:
            return _coupled.coupled_modes_continuous(np.inf, self.s, self.M0, self.tau, factor=self.factor)
        keep = np.arange(r) < (min(self.widths) if self.widths else r)  # generic init: best rank-w_min map
        return np.diag(np.where(keep, self.s, 0.0))

    # ------------------------------------------------------------------------------------- trajectories
    def mode_matrix(self, t) -> np.ndarray:
        r"""Mode matrix ``M(t) = Uᵀ W_tot(t) V`` (len(t), r, r) in SVD order; diag(a(t)) when decoupled."""
        tt, scalar = self._epochs(t)
        r = self.s.size
        if not self.coupled:
            a = self._strengths(tt)
            out = np.zeros((tt.size, r, r))
            out[:, np.arange(r), np.arange(r)] = a
        else:
            out = np.empty((tt.size, r, r))
            inf = np.isinf(tt)
            out[inf] = self._fixed_point()
            fin = tt[~inf]
            if fin.size and self.projected is not None:
                r = self.s.size
                out[~inf] = self._full(fin)[0][:, :r, :r]
            elif fin.size and self.method == "discrete":
                out[~inf] = self._discrete(int(fin.max()))[fin.astype(np.intp)]
            elif fin.size and self.depth == 2:
                out[~inf] = _coupled.coupled_modes_continuous(fin, self.s, self.M0, self.tau, factor=self.factor)
        return out[0] if scalar else out

    def _full(self, fin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Projected theory at finite epochs: (M̄ (n, R, C), first-layer Gram G (n, C, C)), W_tot = Ū M̄ V̄ᵀ."""
        if self.method == "discrete":
            prods, grams = self._discrete(int(fin.max()))
            idx = fin.astype(np.intp)
            return prods[idx], grams[idx]
        return _projected.projected_trajectory_continuous(fin, self.s, list(self.projected), self.tau)

    def _extended(self, t):
        """For the projected theory: (M̄, G, scalar) with the fixed point at t = inf; else None."""
        if self.projected is None:
            return None
        tt, scalar = self._epochs(t)
        R, C = self.Ubar.shape[1], self.Vbar.shape[1]
        Mb, G = np.zeros((tt.size, R, C)), np.zeros((tt.size, C, C))
        inf = np.isinf(tt)
        if inf.any():  # generic init: the best rank-w_min map; G from the balanced fixed point (V S^{2/L} Vᵀ)
            r = self.s.size
            Mb[inf, :r, :r] = self._fixed_point()
            Mr = self._fixed_point()
            G[inf, :r, :r] = rsm_from_modes(Mr, np.eye(r), None, self.depth)
        if (~inf).any():
            Mb[~inf], G[~inf] = self._full(tt[~inf])
        return Mb, G, scalar

    def _strengths(self, tt: np.ndarray) -> np.ndarray:
        out = np.empty((tt.size, self.s.size))
        inf = np.isinf(tt)
        out[inf] = np.diag(self._fixed_point())
        fin = tt[~inf]
        if fin.size and self.method == "discrete":
            out[~inf] = self._discrete(int(fin.max()))[fin.astype(np.intp)]
        elif fin.size:
            out[~inf] = _strengths_continuous(fin, self.s, self.a0, self.tau, self.depth)
        return out

    def mode_strengths(self, t) -> np.ndarray:
        r"""Diagonal of M(t), (len(t), r) in SVD order: the strengths a_α(t) of the data's modes."""
        tt, scalar = self._epochs(t)
        out = self._strengths(tt) if not self.coupled else np.diagonal(self.mode_matrix(tt), axis1=-2, axis2=-1)
        return out[0] if scalar else out

    def modes(self, t) -> np.ndarray:
        r"""Predicted singular values of W_tot(t), sorted descending (what ``net_svd`` measures), (len(t), r)."""
        ext = self._extended(t)
        if ext is not None:  # exact: singular values of Ū M̄ V̄ᵀ are those of M̄
            out = np.linalg.svd(ext[0], compute_uv=False)[..., : self.s.size]
            return out[0] if ext[2] else out
        tt, scalar = self._epochs(t)
        if self.coupled:
            out = np.linalg.svd(self.mode_matrix(tt), compute_uv=False)
        else:
            out = -np.sort(-np.abs(self._strengths(tt)), axis=-1)
        return out[0] if scalar else out

    def w_tot(self, t) -> np.ndarray:
        r"""Predicted ``W_tot(t) = U M(t) Vᵀ`` (projected theory: ``Ū M̄(t) V̄ᵀ``), (len(t), N_out, N_in)."""
        ext = self._extended(t)
        if ext is not None:
            out = np.einsum("or,trc,ic->toi", self.Ubar, ext[0], self.Vbar)
            return out[0] if ext[2] else out
        return w_tot_from_modes(self.mode_matrix(t), self.U, self.V)

    def loss(self, t) -> np.ndarray:
        r"""Loss torch reports: ``(‖S − M(t)‖²_F + ‖Y‖² − Σs²)/(P·N_out)`` ('mean') or without the division ('sum')."""
        P, n_out = self.X.shape[0], self.U.shape[0]
        ext = self._extended(t)
        if ext is not None:  # ‖Y − X W_totᵀ‖² = ‖Y‖² − Σs² + ‖S̄ − M̄‖² (Ū, V̄ orthonormal, XᵀX = I)
            Mb = ext[0]
            S = np.zeros(Mb.shape[1:])
            S[np.arange(self.s.size), np.arange(self.s.size)] = self.s
            out = (self.y_sq_norm - np.sum(self.s**2) + np.sum((S - Mb) ** 2, axis=(-2, -1))) / (
                P * n_out if self.reduction == "mean" else 1.0)
            out = np.maximum(out, 0.0)
            return out[0] if ext[2] else out
        return loss_from_modes(self.mode_matrix(t), self.s, self.y_sq_norm, P, n_out, self.reduction)

    def rsm(self, t) -> np.ndarray:
        r"""First hidden layer's RSM ``X V (MᵀM)^{1/L} Vᵀ Xᵀ`` (balanced weights), (len(t), P, P).

        Projected (coupled, depth ≠ 2) theory: exactly ``X V̄ B_1ᵀB_1 V̄ᵀ Xᵀ`` from the tracked first layer.
        """
        ext = self._extended(t)
        if ext is not None:
            if self.depth < 2:
                raise ValueError("rsm needs a hidden layer: depth must be >= 2, got depth=1")
            xv = self.X @ self.Vbar
            out = np.einsum("pc,tcd,qd->tpq", xv, ext[1], xv)
            return out[0] if ext[2] else out
        return rsm_from_modes(self.mode_matrix(t), self.V, self.X, self.depth)

    def outputs(self, t, items=None, features=None) -> np.ndarray:
        r"""Predicted outputs ``X W_totᵀ`` at the chosen item rows / feature columns, (len(t), n_items, n_features)."""
        ext = self._extended(t)
        if ext is not None:  # X W_totᵀ = (X V̄) M̄ᵀ Ūᵀ, evaluated on the chosen rows/columns only
            left = self.X[_select("items", items, self.X.shape[0])] @ self.Vbar
            right = self.Ubar[_select("features", features, self.U.shape[0])]
            out = np.atleast_2d(left) @ np.swapaxes(ext[0], -1, -2) @ np.atleast_2d(right).T
            out = out[..., 0, :] if left.ndim == 1 else out
            out = out[..., 0] if right.ndim == 1 else out
            return out[0] if ext[2] else out
        return outputs_from_modes(self.mode_matrix(t), self.U, self.V, self.X, items, features)

    def time_to_learn(self, fraction=0.5) -> np.ndarray:
        r"""Epochs until each mode (SVD order) first reaches ``fraction``·s (:func:`theory.stability.time_to_learn`).

        Decoupled theory with ``a0`` (for coupled predictions the diagonal of M₀, i.e. ignoring mode mixing);
        ``method`` as the prediction's. Modes with s = 0 are never learned (``np.inf``).
        """
        out = np.full(self.s.size, np.inf)
        ok = (self.s > 0) & (self.a0 >= 0)
        rate = {"tau": self.tau} if self.method == "continuous" else {"eta": self.eta}
        out[ok] = _time_to_learn(fraction, self.s[ok], self.a0[ok], depth=self.depth, method=self.method, **rate)
        neg = (self.s > 0) & (self.a0 < 0)  # depth 1 only: a = s + (a0 − s)(decay); same first crossing formula
        if neg.any():
            need = (1.0 - fraction) * self.s[neg] / (self.s[neg] - self.a0[neg])  # decay factor to reach f·s
            if self.method == "continuous":
                out[neg] = -self.tau * np.log(need)
            else:
                out[neg] = np.ceil(np.log(need) / np.log1p(-self.eta)) if self.eta < 1 else 1.0
        return out


# --------------------------------------------------------------------------------- decoupled strengths
def _zero_mode_continuous(t: np.ndarray, a0: np.ndarray, tau: float, depth: int) -> np.ndarray:
    """a(t) of a mode with s = 0: a₀ e^{−t/τ} (L = 1), a₀(1 + (2L−2)a₀^{(2L−2)/L} t/τ)^{−L/(2L−2)} (L ≥ 2)."""
    if depth == 1:
        return a0 * np.exp(-t / tau)
    p = 2.0 * depth - 2.0
    return a0 * (1.0 + p * a0 ** (p / depth) * t / tau) ** (-depth / p)


def _strengths_continuous(t, s, a0, tau, depth) -> np.ndarray:
    t = t[:, None]
    out = np.empty((t.shape[0], s.size))
    ok = (s > 0) & (a0 >= 0)
    if ok.any():
        out[:, ok] = mode_strength(t, s[ok], a0[ok], tau, depth)
    zero = s == 0
    out[:, zero] = _zero_mode_continuous(t, a0[zero], tau, depth)
    neg = (s > 0) & (a0 < 0)  # depth 1 only (validated): a = s + (a0 − s) e^{−t/τ}
    out[:, neg] = s[neg] + (a0[neg] - s[neg]) * np.exp(-t / tau)
    return out


def _strengths_discrete(n: int, s, a0, eta, depth) -> np.ndarray:
    out = np.empty((n + 1, s.size))
    ok = (s > 0) & (a0 >= 0)
    if ok.any():
        out[:, ok] = mode_strength_discrete(n, s[ok], a0[ok], eta, depth)
    rest = ~ok
    if depth == 1:  # a_k = s + (a0 − s)(1 − η)^k, exact for the linear map
        out[:, rest] = s[rest] + (a0[rest] - s[rest]) * (1.0 - eta) ** np.arange(n + 1)[:, None]
    elif rest.any():  # s = 0, depth ≥ 2: u ← u − η u^{2L−1}
        u = a0[rest] ** (1.0 / depth)
        out[0, rest] = a0[rest]
        for k in range(1, n + 1):
            u = u - eta * u ** (2 * depth - 1)
            out[k, rest] = u**depth
    if not np.isfinite(out).all():
        raise ValueError(f"eta={eta!r} makes the discrete map diverge; lower the learning rate")
    return out


# ------------------------------------------------------------------------------------------- factory
def _resolve_depth(depth, weights, hidden) -> tuple[int, tuple]:
    """Depth and hidden widths from whichever of depth / weights / hidden are given (they must agree)."""
    claims = {}
    if depth is not None:
        claims["depth"] = integer("depth", depth, minimum=1)
    if weights is not None:
        if isinstance(weights, np.ndarray) or not hasattr(weights, "__len__") or len(weights) == 0:
            raise ValueError("weights must be a non-empty list of 2-D arrays (torch layout), "
                             f"got {type(weights).__name__}")
        claims["weights"] = len(weights)
    if hidden is not None and not isinstance(hidden, numbers.Integral):
        if isinstance(hidden, (str, bytes)) or not hasattr(hidden, "__len__"):
            raise ValueError(f"hidden must be an int or a list of hidden widths, got {hidden!r}")
        claims["hidden"] = len(hidden) + 1
    if len(set(claims.values())) > 1:
        raise ValueError(f"depth, weights and hidden disagree on the number of weight matrices: {claims} "
                         "(depth L = len(weights) = len(hidden) + 1)")
    L = next(iter(claims.values()), 2)
    from_weights = tuple(np.shape(w)[0] for w in weights[:-1]) if weights is not None else None
    if hidden is None:
        widths = from_weights or ()
    elif isinstance(hidden, numbers.Integral):
        widths = (integer("hidden", hidden, minimum=1),) * (L - 1)
    else:
        widths = tuple(integer(f"hidden[{i}]", h, minimum=1) for i, h in enumerate(hidden))
    if from_weights is not None and widths != from_weights:
        raise ValueError(f"hidden={hidden!r} disagrees with the widths of the weights, {list(from_weights)}")
    return L, widths


def _initial_strengths(a0, r: int, depth: int) -> np.ndarray:
    a0 = as_float_array("a0", a0)
    if a0.ndim > 1 or (a0.ndim == 1 and a0.size != r):
        raise ValueError(f"a0 must be a scalar or one value per mode ({r},), got shape {a0.shape}")
    if depth >= 2 and (a0 < 0).any():
        raise ValueError(f"a0 must be >= 0 for depth >= 2 (a balanced strength u^L), got min {a0.min()!r}")
    return np.broadcast_to(a0, (r,)).copy()


def predictor(X, Y, lr, *, depth=None, reduction="mean", a0=None, weights=None, gamma=None, hidden=None,
              method="discrete", coupled=False) -> Prediction:
    r"""Build a :class:`Prediction` for SGD with learning rate ``lr`` on ``nn.MSELoss(reduction)`` of (X, Y).

    Computes ``Σʸˣ = YᵀX = U S Vᵀ`` (:func:`theory.io_svd`), ``η = 2·lr/(P·N_out)`` ('mean') or ``2·lr`` ('sum'),
    ``τ = 1/η`` epochs, and the initial state:

    * ``coupled=True``: needs ``weights`` [W_1 … W_L] (numpy, torch layout): depth 2 → ``M₀ = ZᵀZ`` with
      ``Z = (W1 V + W2ᵀ U)/2``; other depths → the projected weights (:mod:`theory.coupled`).
    * ``coupled=False``: ``a0`` (scalar or per mode) if given, else ``initial_mode_strength(weights, U, V)``, else
      ``expected_initial_mode_strength(gamma, [N_in, *hidden, N_out])``.

    ``depth`` L (number of weight matrices) defaults to len(weights), len(hidden) + 1 or 2; all given must agree.
    ``hidden``: an int (every hidden layer) or a list of widths. ``method``: 'discrete' (exact SGD map, integer
    epochs) or 'continuous' (gradient flow). X must be whitened (XᵀX = I, e.g. one-hot items). Every misuse raises
    ``ValueError``. Reference: Saxe, McClelland & Ganguli, arXiv:1312.6120; PNAS 116:11537 (2019).
    """
    X = as_float_array("X", X, ndim=2)
    Y = as_float_array("Y", Y, ndim=2)
    check_whitened(X)
    U, s, V = io_svd(X, Y)
    s[s <= ZERO_S_FACTOR * np.finfo(float).eps * max(*X.shape, Y.shape[1]) * s.max(initial=0.0)] = 0.0
    eta = learning_rate_to_eta(lr, X.shape[0], Y.shape[1], reduction)
    choice("method", method, ("discrete", "continuous"))
    if not isinstance(coupled, (bool, np.bool_)):
        raise ValueError(f"coupled must be True or False, got {coupled!r}")
    L, widths = _resolve_depth(depth, weights, hidden)
    ws = _coupled._chained(weights, X.shape[1], Y.shape[1]) if weights is not None else None
    common = dict(U=_readonly(U), s=_readonly(s), V=_readonly(V), eta=eta, tau=1.0 / eta, depth=L, method=method,
                  X=_readonly(X), y_sq_norm=float(np.sum(Y**2)), reduction=reduction, widths=widths)
    if coupled:
        if ws is None:
            raise ValueError("coupled=True needs the initial weights: pass weights=[W_1, …, W_L] (torch layout)")
        if a0 is not None:
            raise ValueError("a0 must not be given with coupled=True (the initial state comes from weights)")
        if L == 2:
            Z = _coupled.growing_part(ws[0], ws[1], U, V)
            M0, proj = Z.T @ Z, None
        else:
            Z, proj = None, tuple(_readonly(B) for B in _projected.project_weights(ws, U, V))
            M0 = _projected._product(list(proj))[: s.size, : s.size]
            Ubar, Vbar = _projected.extended_basis(ws, U, V)
            return Prediction(coupled=True, a0=_readonly(np.diagonal(M0).copy()), M0=_readonly(M0), factor=None,
                              projected=proj, Ubar=_readonly(Ubar), Vbar=_readonly(Vbar), **common)
        return Prediction(coupled=True, a0=_readonly(np.diagonal(M0).copy()), M0=_readonly(M0), factor=_readonly(Z),
                          projected=None, **common)
    if a0 is not None:
        strengths = _initial_strengths(a0, s.size, L)
    elif ws is not None:
        strengths = np.asarray(initial_mode_strength(ws, U, V), dtype=float)
    elif gamma is not None:
        if L >= 2 and len(widths) != L - 1:
            raise ValueError(f"hidden must give the hidden width(s) for depth {L} to use gamma, got hidden={hidden!r}")
        strengths = np.full(s.size, expected_initial_mode_strength(gamma, [X.shape[1], *widths, Y.shape[1]]))
    else:
        raise ValueError("the initial strength is unknown: pass a0, weights (initial weights) or gamma (init scale)")
    return Prediction(coupled=False, a0=_readonly(strengths), **common)
