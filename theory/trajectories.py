r"""The three theories as trajectories of one representation ``(M̄(t), G(t))`` in fixed bases (Ū, V̄).

Every theory is handed to :class:`theory.predict.Prediction` as an object with ``at(t)`` (finite epochs, a 1-d
array) and ``limit()`` (t = ∞), each returning ``M̄`` (n, R, C) — so that ``W_tot = Ū M̄ V̄ᵀ`` — and ``G`` (n, C, C)
— so that the first hidden layer's RSM is ``X V̄ G V̄ᵀ Xᵀ`` — plus the bases ``Ubar``, ``Vbar``. The observables
are then computed once, from that representation, whatever the theory:

* :class:`Exact` — the exact reduced weights of :mod:`theory.state` (any depth, width, init, Σˣˣ). Discrete:
  the exact SGD map, re-iterated from checkpoints so that memory stays O(requested epochs); continuous: the
  gradient flow (:func:`theory.state.exact_flow`).
* :class:`Coupled` — the depth-2 small-init approximation: the growing part ``Z = (W1 V + W2ᵀ U)/2`` follows
  ``Z ← Z (I + η(S − ZᵀZ))``, M = ZᵀZ, G = M (:mod:`theory.coupled`; its factor is iterated, never the Gram
  matrix, so a bottleneck's zero eigenvalues stay exactly zero). Error O(init²): a *named approximation*.
* :class:`Scalar` — balanced, decoupled modes a_α(t) (:mod:`theory.modes`): M = diag(a), G = diag(|a|^{2/L}).

Glossary: t epochs (updates); η per epoch; τ = 1/η epochs; L depth; s the singular values of Σʸˣ.
Reference: Saxe, McClelland & Ganguli, arXiv:1312.6120; PNAS 116:11537 (2019).
"""
from __future__ import annotations

import numpy as np

from . import coupled as _coupled
from .errors import OrbitDivergenceError
from .modes import mode_strength, mode_strength_discrete
from .stability import DISCRETE_STEP_CAP
from .state import ODE_RTOL, ExactState, escape_bound, exact_flow, orbit_diverged, product, sgd_step

__all__ = ["Exact", "Coupled", "Scalar", "CHECKPOINT_EVERY", "LIMIT_RTOL"]

# The discrete maps store their state every this many steps; any epoch is re-iterated from the checkpoint below.
CHECKPOINT_EVERY = 64
# t = ∞ of the exact theory: iterated until the loss is within this fraction of ‖Ŷ‖² of the best loss a network
# of these widths can reach (all it can learn has been learned) and M̄ moves by less than this relative amount.
LIMIT_RTOL = 1e-12


class _Checkpointed:
    """A discrete map ``state ← step(state)`` evaluated at any epochs by re-iterating from stored checkpoints."""

    _bound: float  # |M̄| beyond which the orbit counts as diverged (set by each subclass)

    def __init__(self, start, eta: float):
        self.eta = eta
        self._checkpoints = {0: start}

    def _step(self, state):  # -> next state
        raise NotImplementedError

    def _observe(self, state):  # -> (M̄, G)
        raise NotImplementedError

    def _check(self, M, k: int) -> None:
        if not np.abs(M).max(initial=0.0) <= self._bound:  # NaN compares False
            raise orbit_diverged(self.eta, k)

    def at(self, t: np.ndarray):
        ks = t.astype(np.int64)
        M0, G0 = self._observe(self._checkpoints[0])
        M, G = np.empty((ks.size,) + M0.shape), np.empty((ks.size,) + G0.shape)
        order = np.argsort(ks, kind="stable")
        k_cur, state = None, None
        with np.errstate(over="ignore", invalid="ignore"):
            for i in order:
                k = int(ks[i])
                if k_cur is None or k < k_cur or k - k_cur > CHECKPOINT_EVERY:
                    base = max(c for c in self._checkpoints if c <= k)
                    k_cur, state = base, self._checkpoints[base]
                while k_cur < k:
                    state = self._step(state)
                    k_cur += 1
                    if k_cur % CHECKPOINT_EVERY == 0:
                        self._checkpoints.setdefault(k_cur, state)
                M[i], G[i] = self._observe(state)
                self._check(M[i], k)
        return M, G


class Exact(_Checkpointed):
    """The exact theory state (:mod:`theory.state`) advanced by its SGD map or its gradient flow."""

    def __init__(self, state: ExactState, eta: float, method: str):
        super().__init__(list(state.layers), eta)
        self.state, self.method, self.tau = state, method, 1.0 / eta
        self.Ubar, self.Vbar = state.Ubar, state.Vbar
        self._bound = escape_bound(state.target, product(state.layers))

    def _step(self, layers):
        return sgd_step(layers, self.state.target, self.eta, self.state.sxx)[0]

    def _observe(self, layers):
        C = self.state.target.shape[1]
        return product(layers), (layers[0].T @ layers[0] if len(layers) > 1 else np.eye(C))

    def at(self, t: np.ndarray):
        if self.method == "continuous":
            return exact_flow(t, self.state, self.tau)
        return super().at(t)

    def limit(self, best_loss: float, scale: float, loss_of):
        """(M̄, G) at t = ∞: advanced until all the widths allow is learned (loss = ``best_loss``) and M̄ is still."""
        t = 64.0
        prev = None
        while True:
            M, G = self.at(np.array([t]))
            gap = loss_of(M[0]) - best_loss
            still = LIMIT_RTOL if self.method == "discrete" else 100 * ODE_RTOL  # the flow is only this accurate
            if prev is not None and gap <= LIMIT_RTOL * scale and \
                    np.abs(M[0] - prev).max() <= still * max(np.abs(M[0]).max(), 1e-300):
                return M[0], G[0]
            if t >= DISCRETE_STEP_CAP:
                move = np.abs(M[0] - prev).max() / max(np.abs(M[0]).max(), 1e-300) if prev is not None else np.inf
                why = (f"it reached the best loss (gap {gap:.3g} ≤ {LIMIT_RTOL:g}·scale) but M̄ still moves by "
                       f"{move:.3g} (relative) between epochs {t / 2:g} and {t:g}" if gap <= LIMIT_RTOL * scale else
                       f"loss gap {gap:.3g} above the best fit")
                raise ValueError(
                    f"t=inf: the exact trajectory has not settled on the best fit these widths allow within "
                    f"{DISCRETE_STEP_CAP} epochs ({why}); a mode with exactly zero initial overlap is a "
                    "saddle that exact arithmetic never leaves, and an lr above the stable bound never settles. "
                    "Evaluate at finite epochs instead")
            prev, t = M[0], 2.0 * t


class Coupled(_Checkpointed):
    """Depth-2 small-init approximation: Z ← Z(I + η(S − ZᵀZ)), M = ZᵀZ = G (bases U, V)."""

    def __init__(self, U, s, V, Z0: np.ndarray, eta: float, method: str):
        super().__init__(Z0, eta)
        self.s, self.Z0, self.method, self.tau = s, Z0, method, 1.0 / eta
        self.Ubar, self.Vbar = U, V
        self._S = np.diag(s)
        self._I = np.eye(s.size)
        M0 = Z0.T @ Z0
        self.M0 = 0.5 * (M0 + M0.T)
        self._bound = escape_bound(s, self.M0)

    def _step(self, Z):
        return Z @ (self._I + self.eta * (self._S - Z.T @ Z))

    def _observe(self, Z):
        M = Z.T @ Z
        M = 0.5 * (M + M.T)
        return M, M

    def at(self, t: np.ndarray):
        if self.method == "continuous":
            M = _coupled.coupled_modes_continuous(t, self.s, self.M0, self.tau, factor=self.Z0)
            return M, M
        return super().at(t)

    def limit(self, *_):
        M = _coupled.coupled_modes_continuous(np.inf, self.s, self.M0, self.tau, factor=self.Z0)
        return M, M


class Scalar:
    """Balanced, decoupled modes: M = diag(a(t)), G = diag(|a|^{2/L}) (bases U, V); zero modes decay."""

    def __init__(self, U, s, V, a0: np.ndarray, eta: float, depth: int, method: str):
        self.Ubar, self.Vbar = U, V
        self.s, self.a0, self.eta, self.tau, self.depth, self.method = s, a0, eta, 1.0 / eta, depth, method
        self._cache: np.ndarray | None = None

    def strengths(self, t: np.ndarray) -> np.ndarray:
        if self.method == "continuous":
            return _strengths_continuous(t, self.s, self.a0, self.tau, self.depth)
        n = int(t.max(initial=0))
        if self._cache is None or self._cache.shape[0] <= n:
            have = -1 if self._cache is None else self._cache.shape[0] - 1
            try:  # grow geometrically so that a loop over scalar t stays linear in total cost
                cache = _strengths_discrete(max(n, 2 * have), self.s, self.a0, self.eta, self.depth)
            except OrbitDivergenceError:
                cache = _strengths_discrete(n, self.s, self.a0, self.eta, self.depth)
            self._cache = cache
        return self._cache[t.astype(np.intp)]

    def _as_state(self, a: np.ndarray):
        r = self.s.size
        M = np.zeros((a.shape[0], r, r))
        G = np.zeros((a.shape[0], r, r))
        idx = np.arange(r)
        M[:, idx, idx] = a
        G[:, idx, idx] = np.abs(a) ** (2.0 / self.depth)
        return M, G

    def at(self, t: np.ndarray):
        return self._as_state(self.strengths(t))

    def fixed_point(self) -> np.ndarray:
        return np.where((self.a0 != 0) | (self.depth == 1), self.s, 0.0)

    def limit(self, *_):
        M, G = self._as_state(self.fixed_point()[None])
        return M[0], G[0]


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
        raise OrbitDivergenceError(f"eta={eta!r} makes the discrete map diverge; lower the learning rate")
    return out
