r"""A priori distribution over seeds of each mode's half-learning epoch, from a small random init at any depth.

No weights are used: only the singular values s of Σʸˣ, the layer sizes, γ and η. The prediction is a cheap
Monte Carlo over the *initial statistics* of the random init (their exact joint law, below), each draw propagated
through a reduced, low-dimensional dynamics: an exact linear escape phase, then the unbalanced scalar gain chain.

**Setting.** W_l ~ N(0, σ_l²) i.i.d., σ_l = γ/√(n_in_l + n_out_l) (:func:`saxe.initializer_`), whitened inputs,
Σʸˣ = U diag(s) Vᵀ. Mode α (input v = v_α, output u = u_α, strength m = uᵀ W_L⋯W_1 v). Write a = W_1 v (first
layer's image of v), b = W_Lᵀ u (what the last layer reads along u), h_l = W_l⋯W_2 a and g = h_{L−1} =
W_{L−1}⋯W_2 a, so that m = bᵀg. While m ≪ s the residual Σʸˣ − W_tot ≈ Σʸˣ and, one mode at a time, gradient
flow is ascent on E = s·bᵀg (t in epochs, τ = 1/η)::

    τ ḃ = s g,      τ Ẇ_l = s W_{>l}ᵀ b (W_{<l} v)ᵀ     (W_{>l} = W_{L−1}⋯W_{l+1}, W_{<l} = W_{l−1}⋯W_1)

**1. The escape is set by the mode's Jacobian Gram K, not by a product of rms gains.** Differentiating g along
the flow, every inner layer contributes ġ = s K b with

    K = Σ_{l=1}^{L−1} |W_{<l} v|² W_{>l} W_{>l}ᵀ       (n_{L−1} × n_{L−1}; the NTK of b ↦ m restricted to v)

so, to first order around the init (K frozen), τ² b̈ = s² K b: b grows along each eigenvector e_k of K at the
rate s√κ_k per τ. Depth 2: K = I (Saxe's rate s, and the growing amplitude (a + b)/2 is the exact a₀ of
:mod:`theory.init`). Depth 3: K = W_2W_2ᵀ + |a|² I — the middle layer's *top* singular values (not its rms gain)
**shifted by the imbalance |a|²** the random init carries (|a|² ≈ n_1σ_1² ≫ |b|² ≈ n_{L−1}σ_L² since
N_out ≫ n): the first layer's whole norm feeds the growth through the middle layer's rank-one change
(Ẇ_2 = s b aᵀ). Depth 4: K = PPᵀ + |a|² W_3W_3ᵀ + |W_2 a|² I, P = W_3W_2. The discrete-time linear phase per
eigen-direction, (b_k, g_k) ← (b_k + ηs g_k, g_k + ηsκ_k b_k), is solved exactly: with r = √κ_k,
λ± = 1 ± ηs r, p = (b_k + g_k/r)/2, q = (b_k − g_k/r)/2::

    b_k(n) = p λ₊ⁿ + q λ₋ⁿ,   g_k(n) = r (p λ₊ⁿ − q λ₋ⁿ),   m(n) = Σ_k b_k g_k,   |b(n)|² = Σ_k b_k²

**2. Nonlinear phase: the unbalanced gain chain.** Once the growing direction dominates (after n_s steps with
(λ₊/λ₋)^{n_s} = :data:`SWITCH_RATIO` for the top κ) the mode is handed to the scalar chain of Saxe's deep
solution with unbalanced gains, iterated as the exact discrete SGD map at η (it equals
:func:`theory.modes.mode_strength_discrete` when the gains are balanced)::

    c_i ← c_i + η (s − ∏_j c_j) ∏_{j≠i} c_j,      conserved (flow): c_i² − c_j²

matched to the vector state: c_1 = |a(n_s)| = √(|a|² + |b(n_s)|² − |b(0)|²) (|a|² − |b|² is conserved),
L−2 equal middle gains μ chosen so that the chain's small-c_L growth rate equals the Rayleigh quotient
κ_eff = bᵀKb/|b|², i.e. μ^{2(L−2)} + (L−2) c_1² μ^{2(L−3)} = κ_eff, and c_L = m(n_s)/(c_1 μ^{L−2}). Where the
mode's free directions leave κ_eff below what the chain can represent (at depth 3: κ_eff ≤ c_1², no real μ), μ is
kept at least at the last gain (c_L ≤ μ): the mode then grows at the chain's slowest rate (a labelled
approximation; before this floor such draws got μ ≈ 1e-27 and overflowing chains). The chain is iterated by
:func:`theory.chain.chain_map_steps`, which crosses long plateaus with the chain's solvable flow (≲ 1e-3 of
the time): a depth-4 plateau of ~1e8 epochs costs a fraction of a second.

**3. Initial statistics (exact joint law).** a ~ N(0, σ_1² I_{n_1}) and b ~ N(0, σ_L² I_{n_{L−1}}), independent of
each other, of the middle layers and across modes (V, U orthonormal); the middle layers are Ginibre matrices
shared by all modes. By isotropy b's projections on K's eigenvectors are i.i.d. N(0, σ_L²) whatever K is. Depth 3
is drawn without any matrix: the squared singular values of W_2 are those of the Dumitriu–Edelman bidiagonal
model (upper bidiagonal, diagonal χ_{max−i}, superdiagonal χ_{min−1−i}: exactly the real Wishart/Laguerre law,
whose bulk is Marchenko–Pastur), x_k = q_kᵀa i.i.d. N(0, σ_1²) (k = 1…n_1), |a|² = Σ x_k², g_k = σ_k x_k along
the min(n_1, n_2) left singular vectors. Depth ≥ 4 draws the n × n middle Gaussian matrices themselves (their
law is what is sampled; the per-mode K is n_{L−1} × n_{L−1}).

**4. Which epoch is reported.** W_tot ≈ Σ_α a_α u_α v_αᵀ, so its k-th largest singular value reaches f·s_k at the
first epoch at which k modes have a_α ≥ f·s_k: t_k = k-th smallest over α of T_α(f s_k) (T_α(θ) = ∞ for
θ > s_α). Near-degenerate modes (s within :data:`DEGENERATE_RTOL`: the tree's pair 100.8, 99.4 and quadruple
72.5…70.2) share one hand-over step and are handed over as one matrix M_{αβ} = b_αᵀg_β (= u_αᵀW_tot v_β).

**5. Taken hidden directions (competition).** A learned mode occupies one direction in every hidden layer, and the
error's cross terms then remove that direction from every later mode (b_α along it is driven to 0 at rate ∝ the
learned strength). Modes are handed over in descending s; each takes the top left singular vector p of its
group's M restricted to the directions still free, d = Bᵀp/|Bᵀp| (last hidden layer, common basis), m = that
singular value. With Q the orthonormal taken directions, the later modes see b, g ← (I − QQᵀ)(b, g) and the Gram
K = Σ_l c_l F_l (F_l = W_{>l}W_{>l}ᵀ, c_l = |W_{<l}v|²) with each term's taken directions removed layer by layer:
the direction taken in layer l is ∝ W_{>l}ᵀd, so F_l ← F_l − F_lQ(QᵀF_lQ)⁺QᵀF_l and the layer's own coefficient
loses its component there, c_{l+1} ← c_{l+1} − gᵀQ(QᵀF_lQ)⁺Qᵀg (g = g(0); l = 1: |a|², and c₁² shrinks in the same
ratio); κ_eff = dᵀKd (floored at K's smallest eigenvalue before any taking). The modes of a group thus come out
spread (the second must use the next free direction), and later groups slower. Modes beyond the narrowest hidden
width never learn (W_tot's rank): ∞.

**Exact:** the law of the initial statistics; the linear phase given them (up to O((ηs√κ)²) per step: the layer
product's second-order terms, ηs√κ ≈ 0.02 on the tutorial); the discrete chain map. **Approximated:** (i) each
mode escapes on its own: the modes share the middle layers, and the slower modes' growth speeds the faster ones
up (on the tutorial, medians over 32 seeds: modes 1–4 are learned 1.8–3.4% (depth 3) and 3.9–9.6% (depth 4)
earlier than with the slower groups of modes removed from the target) — not modelled; (ii) the hand-over from
the vector linear phase to a scalar chain (the alignment of a, b with K's top directions continues in the chain's
stead; per seed, against the single-mode exact dynamics, switching at (λ₊/λ₋)ⁿ = 2…5 moves the median by
−4%…+1% (depth 3) and −3.5%…+2.4% (depth 4), per-seed correlation ≥ 0.998);
(iii) the residual's nonlinear terms during the linear phase (negligible while |b|² ≪ |a|²); (iv) the taking (5)
is applied at the hand-over as if the earlier modes were already learned, and the taken directions of the inner
layers are W_{>l}ᵀd (first order).
Measured (bench/deep_random_table.py, tutorial, 32 seeds): medians within +3.7% at depth 3; at depth 4 from
+9.1% (mode 1) to −10% (mode 8). ``--decompose`` runs the model on each seed's own initial statistics
(:func:`initial_statistics`; the law left out: +4.6% … −9.5% at depth 4, so the law is not the cause) and the
exact dynamics with the slower groups removed from the target (modes 1…k, no near-degenerate group split; medians,
depth 4): against the latter the model is +0.4% for mode 1 (per seed within ±4.4%), −1.7% … −5.7% for modes 2–4
and −0.9% … −9.5% in the last group (the full network), i.e. (a) the slower modes' speed-up of the faster ones,
(i), is missing (+3.9% … +9.6% for modes 1–4), and (b) a mode learned after others is slowed by them more than the
taking (5) models, most for the last member of the last group. At depth 3 both are small (+1.8% … +3.4%; −0.4% …
−1.4%).
:func:`theory.half_learning_exact_law` (:mod:`theory.deep_law`) gives the same distribution exact in law (the exact
map from draws of the reduced state's initial law), at the cost of iterating every epoch.
Narrow hidden layers (a few more directions than modes) are outside what the model captures well: on 200
features of the tree data, 32 seeds, lr 0.2 × the stable bound, widths [12, 12] (depth 3, γ 0.01) come out
+15% (mode 1) … −16% (mode 7) and widths [8, 8, 8] (depth 4, γ 0.1) +32% … −48%.

Glossary: s (r,) singular values of Σʸˣ (descending); layer_sizes [N_in, n_1, …, n_{L−1}, N_out]; L depth; γ init
scale; σ_l per-layer std; η per-epoch rate (η = 2·lr/(P·N_out)), τ = 1/η epochs; κ eigenvalues of K (strength²
units); f = ``fraction`` of s defining "learned" (½: half-learning); t epochs.

References: Saxe, McClelland & Ganguli, arXiv:1312.6120 (2014) and PNAS 116:11537 (2019) (mode dynamics, deep
balanced solution, conserved c_i² − c_j²); Arora, Cohen & Hazan, ICML 2018 (balancedness invariants of deep linear
flow); Dumitriu & Edelman, J. Math. Phys. 43:5830 (2002) (bidiagonal β-Laguerre model); Marchenko & Pastur,
Math. USSR-Sb. 1:457 (1967); Jacot, Gabriel & Hongler, NeurIPS 2018 (the NTK).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ._validate import as_float_array, integer, positive
from .chain import chain_map_steps
from .init import _layer_sizes, expected_initial_mode_strength, layer_sigmas

__all__ = ["DeepInitPrediction", "half_learning_distribution", "half_learning_from_statistics", "initial_statistics",
           "chain_map_steps", "SWITCH_RATIO",
           "SMALL_INIT", "DEFAULT_DRAWS", "DEGENERATE_RTOL"]

# Hand-over from the linear phase to the chain once the top growing exponential has outgrown the decaying one
# 4×: by then the growing direction holds ≳ 90% of m while |b|² ≲ 0.1|a|² (the linear phase still holds).
SWITCH_RATIO = 4.0
# The theory needs a small init: the a priori strength must stay below this fraction of the weakest s.
SMALL_INIT = 1e-2
# Singular values within this relative distance of their group's largest are treated as one degenerate group:
# a 5% gap in s moves the escape by ~5%, below the ±10% seed-to-seed spread of the escape times.
DEGENERATE_RTOL = 0.05
# Monte-Carlo draws by default: the median's relative standard error is ≈ 1.25·(spread ≈ 10%)/√512 ≈ 0.6%.
DEFAULT_DRAWS = 512


@dataclass(frozen=True)
class DeepInitPrediction:
    """``samples`` (n_draws, r) predicted epochs t_k per draw (``np.inf``: never — a mode beyond W_tot's rank — or,
    for a learnable mode, not by epoch ``censored_after``: the slowest draws of an exact-law prediction, beyond
    every reported quantile); ``quantiles`` (len(q), r) at ``levels``; ``median`` (r,)."""

    samples: np.ndarray
    levels: np.ndarray
    quantiles: np.ndarray
    censored_after: float = np.inf

    @property
    def median(self) -> np.ndarray:
        return _quantile(self.samples, 0.5)


def _quantile(x: np.ndarray, q: float | np.ndarray) -> np.ndarray:
    """np.quantile over axis 0 that keeps ∞ (never reached) as ∞ instead of ∞ − ∞ = NaN in the interpolation."""
    out = np.quantile(np.where(np.isinf(x), _NEVER, x), q, axis=0)
    return np.where(out >= _NEVER / 2, np.inf, out)


# stand-in for ∞ in quantile interpolation: far above any step count
_NEVER = 1e300
_TINY = np.finfo(float).tiny


def _middle_gain(kappa: np.ndarray, c1sq: np.ndarray, depth: int) -> np.ndarray:
    """μ > 0 with μ^{2(L−2)} + (L−2) c₁² μ^{2(L−3)} = κ (the chain's small-c_L growth rate², equal middle gains)."""
    m = depth - 2
    lo, hi = np.zeros_like(kappa), np.maximum(kappa, 1e-300) ** (1.0 / (2 * m))
    for _ in range(80):  # bisection on μ: the left side is increasing in μ
        mid = 0.5 * (lo + hi)
        big = mid ** (2 * m) + m * c1sq * mid ** (2 * m - 2) > kappa
        hi, lo = np.where(big, mid, hi), np.where(big, lo, mid)
    return 0.5 * (lo + hi)


def _statistics(rng: np.random.Generator, sizes: list[int], gamma: float, r: int):
    """One draw of the initial statistics for r modes: κ (r, n), eigenbases E (r, n, n) or None (a basis common to
    all modes), b and g in that basis (r, n), |a|² (r,), K's terms F_l = W_{>l}W_{>l}ᵀ (L−1, n, n) in the common
    basis and their coefficients c_l = |W_{<l}v|² (r, L−1): K = Σ_l c_l F_l."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    sig = layer_sigmas(gamma, sizes)
    n = sizes[-2]
    b = rng.standard_normal((r, n)) * sig[-1]  # isotropic: i.i.d. in any basis, e.g. K's eigenbasis
    if len(pairs) == 2:
        a = rng.standard_normal((r, n)) * sig[0]
        return np.ones((r, n)), None, b, a, np.sum(a**2, axis=1), np.eye(n)[None], np.ones((r, 1))
    if len(pairs) == 3:
        out = _depth3(rng, sizes, sig, b, r)
        return out + (np.stack([np.diag(out[0][0] - out[4][0]), np.eye(n)]), np.stack([np.ones(r), out[4]], 1))
    mids = [rng.standard_normal((n_out, n_in)) * sd for (n_in, n_out), sd in zip(pairs[1:-1], sig[1:-1])]
    a = rng.standard_normal((r, sizes[1])) * sig[0]
    return _gram_statistics(a, b, mids)


def _gram_statistics(a: np.ndarray, b: np.ndarray, mids: list[np.ndarray]):
    """:func:`_statistics`' tuple from the first layer's images a (r, n_1), the projections b (r, n) — isotropic
    draws, or an actual init's Wᴸᵀu_α, then expressed in each mode's eigenbasis of K — and the middle layers."""
    r, n = b.shape
    kap, E, gk = np.empty((r, n)), np.empty((r, n, n)), np.empty((r, n))
    F, c = np.empty((len(mids) + 1, n, n)), np.ones((r, len(mids) + 1))
    for al in range(r):
        hs = [a[al]]
        for W in mids:
            hs.append(W @ hs[-1])
        K, above = np.zeros((n, n)), np.eye(n)
        for l in range(len(mids), -1, -1):  # l = index of the inner layer (0 = W_1), W_{>l} built top-down
            F[l] = above @ above.T
            c[al, l] = float(hs[l - 1] @ hs[l - 1] if l > 0 else 1.0)
            K += c[al, l] * F[l]
            if l > 0:
                above = above @ mids[l - 1]
        kap[al], E[al] = np.linalg.eigh(K)
        gk[al] = E[al].T @ hs[-1]
    return kap, E, b, gk, np.sum(a**2, axis=1), F, c


def initial_statistics(weights: Sequence[ArrayLike], U: ArrayLike, V: ArrayLike) -> tuple:
    """One init's *actual* initial statistics (module docstring, 1 and 3), in the layout of a draw from their law:
    a_α = W_1v_α, b_α = W_Lᵀu_α (in K's eigenbasis per mode), the middle layers themselves. ``weights`` [W_1 … W_L]
    (torch layout, depth ≥ 2), ``U`` (N_out, r), ``V`` (N_in, r) the singular vectors of Σʸˣ. With
    :func:`half_learning_from_statistics` it runs the model's dynamics on a given init, separating its error from
    that of the law (bench/deep_random_table.py ``--decompose``)."""
    ws = [as_float_array(f"weights[{i}]", w, ndim=2) for i, w in enumerate(weights)]
    if len(ws) < 2:
        raise ValueError(f"weights must hold at least two layers (depth ≥ 2), got {len(ws)}")
    U, V = as_float_array("U", U, ndim=2), as_float_array("V", V, ndim=2)
    for i in range(1, len(ws)):
        if ws[i].shape[1] != ws[i - 1].shape[0]:
            raise ValueError(f"weights must chain: weights[{i}] has {ws[i].shape[1]} columns but weights[{i - 1}] has "
                             f"{ws[i - 1].shape[0]} rows")
    if V.shape[0] != ws[0].shape[1] or U.shape[0] != ws[-1].shape[0] or U.shape[1] != V.shape[1]:
        raise ValueError(f"U (N_out, r) and V (N_in, r) must match the weights' N_in = {ws[0].shape[1]} and N_out = "
                         f"{ws[-1].shape[0]}, got U {U.shape} and V {V.shape}")
    a, b = (ws[0] @ V).T, (ws[-1].T @ U).T
    kap, E, _, gk, a2, F, c = _gram_statistics(a, b, ws[1:-1])
    return kap, E, np.einsum("rij,ri->rj", E, b), gk, a2, F, c


def _depth3(rng, sizes, sig, b, r):
    """Depth 3 without matrices: Laguerre singular values (Dumitriu–Edelman) and Gaussian projections."""
    n1, n2 = sizes[1], sizes[2]
    # W_2 (n2 × n1) = σ₂ G; G's singular values are those of the bidiagonal B with B_ii ~ χ_{max−i}, B_{i,i+1}
    # ~ χ_{min−1−i} (β = 1): a (min × min) upper bidiagonal whose Gram is real Wishart(max, min).
    lo, hi = min(n1, n2), max(n1, n2)
    B = np.diag(np.sqrt(rng.chisquare(hi - np.arange(lo))))
    B += np.diag(np.sqrt(rng.chisquare(lo - 1 - np.arange(lo - 1))), 1)
    sv2 = np.zeros(n2)
    sv2[:lo] = np.linalg.svd(B, compute_uv=False) ** 2 * sig[1] ** 2
    x = rng.standard_normal((r, n1)) * sig[0]  # a in W_2's right singular basis
    # g = W_2 a: along the left singular vectors k < lo, g_k = σ_k x_k; other left directions get 0
    g = np.zeros((r, n2))
    g[:, :lo] = np.sqrt(sv2[:lo]) * x[:, :lo]
    a2 = np.sum(x**2, axis=1)
    return sv2[None, :] + a2[:, None], None, b, g, a2


def _groups(s: np.ndarray) -> list[np.ndarray]:
    """Runs of consecutive (descending) singular values within :data:`DEGENERATE_RTOL` of the run's first."""
    order = np.argsort(-s, kind="stable")
    out, cur = [], [order[0]]
    for i in order[1:]:
        if s[cur[0]] - s[i] <= DEGENERATE_RTOL * s[cur[0]]:
            cur.append(i)
        else:
            out.append(np.array(cur))
            cur = [i]
    return out + [np.array(cur)]


def _arguments(s, layer_sizes, gamma, eta, fraction, levels, n_draws, small_init: bool = True
               ) -> tuple[np.ndarray, list[int], float, float, np.ndarray, int]:
    """The checked (s, sizes, γ, η, levels, n_draws) of an a priori prediction (also :mod:`theory.deep_law`'s, which
    is exact at any init scale: ``small_init=False`` skips the model's small-init domain)."""
    s = as_float_array("s", s, ndim=1)
    if s.size == 0 or (s <= 0).any():
        raise ValueError(f"s must be a non-empty 1-d array of positive singular values, got {s!r}")
    sizes = _layer_sizes(layer_sizes)
    if len(sizes) - 1 < 2:
        raise ValueError(f"layer_sizes must describe depth >= 2 (a hidden layer), got {sizes!r}")
    if s.size > min(sizes[0], sizes[-1]):
        raise ValueError(f"s has {s.size} modes but layer_sizes {sizes!r} allow at most min(N_in, N_out)")
    gamma, eta = positive("gamma", gamma), positive("eta", eta)
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"fraction must be strictly between 0 and 1, got {fraction=}")
    lv = as_float_array("levels", levels, ndim=1)
    if ((lv < 0) | (lv > 1)).any():
        raise ValueError(f"levels must lie in [0, 1], got {lv!r}")
    a_prior = expected_initial_mode_strength(gamma, sizes)
    if small_init and a_prior >= SMALL_INIT * s.min():
        raise ValueError(f"gamma={gamma!r} is outside the small-init domain: the a priori strength {a_prior:.3g} "
                         f"must be < SMALL_INIT·min(s) = {SMALL_INIT * s.min():.3g}")
    return s, sizes, gamma, eta, lv, integer("n_draws", n_draws, minimum=1)


def half_learning_distribution(s: ArrayLike, layer_sizes: Sequence[int], gamma: float, eta: float, *,
                               fraction: float = 0.5, levels: ArrayLike = (0.1, 0.5, 0.9),
                               n_draws: int = DEFAULT_DRAWS, seed: int = 0) -> DeepInitPrediction:
    r"""Distribution over init seeds of the epoch at which W_tot's k-th singular value first reaches f·s_k.

    Procedure (derivation, equations and what is exact in the module docstring): per draw, the initial
    statistics (K's spectrum κ, projections of b and g, ``|a|²``) from their exact law; per mode the discrete
    linear phase ``b_k(n) = pλ₊ⁿ + qλ₋ⁿ`` up to ``n_s = ⌈ln R / ln(λ₊/λ₋)⌉`` (R = :data:`SWITCH_RATIO`, top κ);
    then the chain ``c_i ← c_i + η(s − ∏c)∏_{j≠i}c_j`` from ``c₁ = |a(n_s)|``, middle μ (rate-matched to
    κ_eff), ``c_L = m/(c₁μ^{L−2})``, each mode in descending s on the hidden directions the earlier ones left
    free (module docstring, 5); t_k = k-th smallest over modes of the first epoch with a_α ≥ f s_k.

    Glossary: ``s`` (r,) positive singular values of Σʸˣ; ``layer_sizes`` [N_in, n_1, …, N_out] (depth L =
    len − 1 ≥ 2, r ≤ N_in, N_out); γ = ``gamma`` > 0 init scale; η = ``eta`` per-epoch rate; f = ``fraction``
    ∈ (0, 1); ``levels`` quantile levels in [0, 1]; ``n_draws`` Monte-Carlo draws (seeded by ``seed``).
    Returns :class:`DeepInitPrediction` (epochs). Raises ``ValueError`` outside the small-init domain
    (a priori strength ≥ :data:`SMALL_INIT`·min s) or when ηs√κ ≥ 1 (the linear phase is not an escape).
    Reference: Saxe et al. arXiv:1312.6120; PNAS 116:11537 (2019).
    """
    s, sizes, gamma, eta, lv, n_draws = _arguments(s, layer_sizes, gamma, eta, fraction, levels, n_draws)
    rng = np.random.default_rng(integer("seed", seed))
    draws = [_statistics(rng, sizes, gamma, s.size) for _ in range(n_draws)]
    samples = half_learning_from_statistics(draws, s, sizes, eta, fraction)
    return DeepInitPrediction(samples, lv, _quantile(samples, lv))


def half_learning_from_statistics(draws: list[tuple], s: np.ndarray, sizes: list[int], eta: float,
                                  fraction: float = 0.5) -> np.ndarray:
    """(D, r) epochs t_k per draw of the initial statistics (:func:`half_learning_distribution`'s propagation:
    linear phase, hand-over, chain), for draws from the law or an init's own (:func:`initial_statistics`)."""
    r, depth = s.size, len(sizes) - 1
    n_draws = len(draws)
    kap, bk, gk, a2 = (np.stack([d[i] for d in draws]) for i in (0, 2, 3, 4))  # (D, r, n), …, (D, r)
    E = None if draws[0][1] is None else np.stack([d[1] for d in draws])  # (D, r, n, n) eigenbases of K
    F, cf = np.stack([d[5] for d in draws]), np.stack([d[6] for d in draws])
    h = eta * s[None, :] * np.sqrt(kap.max(axis=2))
    if (h >= 1).any():
        raise ValueError(f"eta={eta!r} is too large for an escape: η·s·√κ reaches {h.max():.3g} (must be < 1)")
    n_s = np.ceil(np.log(SWITCH_RATIO) / (np.log1p(h) - np.log1p(-h)))
    groups = _groups(s)
    for G in groups:  # one hand-over step per group of near-degenerate modes: their strengths form one matrix
        n_s[:, G] = n_s[:, G].max(axis=1, keepdims=True)
    live = np.argsort(-s, kind="stable")[: min(sizes[1:-1])]  # W_tot's rank ≤ the narrowest hidden width
    c0 = _hand_over(kap, E, bk, gk, a2, F, cf, s, eta, n_s, depth, groups)[:, live].reshape(-1, depth)
    sm = np.tile(s[live], n_draws)
    T = np.full((n_draws, r, r), np.inf)  # [draw, mode, k]
    T[:, live] = (n_s[:, live].reshape(-1, 1) + chain_map_steps(c0, sm, eta, np.tile(fraction * s, (sm.size, 1))
                                                                 )).reshape(n_draws, live.size, r)
    return np.sort(T, axis=1)[:, np.arange(r), np.arange(r)]  # k-th smallest over modes of T(·, f s_k)


def _hand_over(kap, E, bk, gk, a2, F, cf, s, eta, n_s, depth, groups):
    """The chains' gains (D, r, L) at the hand-over steps n_s (D, r) from the exact linear-phase state.

    Per mode (module docstring, 1–2, 5): c₁² = |a|² + |b(n_s)|² − |b(0)|², μ from κ_eff = dᵀKd, c_L = m/(c₁μ^{L−2}),
    with m the top singular value of the group's M_{αβ} = b_αᵀg_β on the hidden directions still free, d its
    direction; c₁² and κ_eff are the group's means after the taken directions are removed (F (D, L−1, n, n), cf
    (D, r, L−1): K's terms and coefficients).
    """
    rt = np.sqrt(kap)
    hk = eta * s[None, :, None] * rt
    lp = np.exp(n_s[..., None] * np.log1p(hk))
    lm = np.exp(n_s[..., None] * np.log1p(-hk))
    p, q = 0.5 * (bk + gk / rt), 0.5 * (bk - gk / rt)
    b, g = p * lp + q * lm, rt * (p * lp - q * lm)
    c1sq0 = a2 + np.sum(b**2, axis=2) - np.sum(bk**2, axis=2)  # |a(n_s)|²: |a|² − |b|² is conserved
    g0 = gk
    if E is not None:  # into one basis for all modes (depth 2 and 3 are drawn in a common basis already)
        b, g = np.einsum("drij,drj->dri", E, b), np.einsum("drij,drj->dri", E, g)
        g0 = np.einsum("drij,drj->dri", E, gk)
    m, kq, c1sq = np.empty_like(a2), np.empty_like(a2), np.empty_like(a2)
    Q = np.zeros((b.shape[0], b.shape[2], 0))  # taken hidden directions (orthonormal columns), common basis
    for G in groups:
        for al in G:  # descending s: each member takes the top direction left free by all earlier ones
            rho = np.ones((b.shape[0], G.size, F.shape[1]))  # kept fraction of each K term's coefficient
            la, Fp = 0.0, F
            # (matrix products throughout: a three-operand einsum is summed naively, ~1000× slower at 50 modes)
            if Q.shape[2]:
                z = Q.mT @ g0[:, G].mT  # (D, j, a)
                FQ = F @ Q[:, None]  # (D, L−1, n, j)
                Wi = np.linalg.pinv(Q[:, None].mT @ FQ, hermitian=True)  # (QᵀF_lQ)⁺
                loss = np.einsum("dja,dlja->dal", z, Wi @ z[:, None])  # |h_{l−1}|² lost to the taken directions
                la = np.minimum(loss[..., 0], a2[:, G])
                rho[..., 1:] = np.clip(1 - loss[..., :-1] / cf[:, G, 1:], 0.0, 1.0)
                Fp = F - FQ @ Wi @ FQ.mT
            bp = b[:, G] - (b[:, G] @ Q) @ Q.mT
            gp = g[:, G] - (g[:, G] @ Q) @ Q.mT
            Uu, S, _ = np.linalg.svd(bp @ gp.mT)
            m[:, al] = S[:, 0]
            d = np.einsum("da,dan->dn", Uu[:, :, 0], bp)
            d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), _TINY)
            dFd = np.einsum("dln,dn->dl", (Fp @ d[:, None, :, None])[..., 0], d)  # dᵀF_l d
            # κ_eff = dᵀ(Σ_l ρ c_l F_l)d per member, floored at K's smallest eigenvalue before any taking (guards the
            # rate of a nearly emptied mode)
            kq[:, al] = np.maximum((rho * cf[:, G] * dFd[:, None]).sum(axis=2).mean(axis=1),
                                   kap[:, G].min(axis=(1, 2)))
            c1sq[:, al] = np.maximum((c1sq0[:, G] * (1 - la / a2[:, G])).mean(axis=1), _TINY)
            Q = np.concatenate([Q, d[..., None]], axis=2)
    m = np.maximum(m, _TINY)
    c1 = np.sqrt(c1sq)
    if depth == 2:
        return np.stack([c1, m / c1], axis=-1)
    # Rate matching needs κ_eff > (L−2)c₁²μ^{2(L−3)} (at depth 3: κ_eff > c₁²); where a mode's free directions
    # leave less, μ → 0 would put the whole strength into c_L. The middle gains are then kept at least at the
    # last gain (μ ≥ (m/c₁)^{1/(L−1)}, i.e. c_L ≤ μ: the imbalance a small init carries), so such a mode grows at
    # the chain's slowest rate instead of from a c_L beyond any scale.
    mu = np.maximum(_middle_gain(kq, c1sq, depth), (m / c1) ** (1.0 / (depth - 1)))
    with np.errstate(divide="ignore", over="ignore"):  # only modes beyond W_tot's rank (dropped by the caller)
        return np.stack([c1] + [mu] * (depth - 2) + [m / (c1 * mu ** (depth - 2))], axis=-1)
