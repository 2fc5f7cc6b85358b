r"""The distribution over init seeds of each mode's half-learning epoch, *exact in law*: the exact SGD map of the
reduced state (:mod:`theory.state`) run from draws of that state's exact initial law. No weights are used.

**Why this is exact.** With whitened inputs (Σˣˣ = I) and Σʸˣ = U S Vᵀ (U: N_out × r, V: N_in × r) the full
network's SGD is exactly the SGD of the reduced layers ``B_1 = W_1 V̄``, ``B_l = W_l``, ``B_L = Ūᵀ W_L`` with
V̄ = [V, Q_in], Ū = [U, Q_out] (:mod:`theory.state`, whose map :func:`theory.state.sgd_step` is iterated here).
Two facts make the law of (B_1, …, B_L) at init small and explicit for the tutorial's init W_l ~ N(0, σ_l²)
i.i.d., σ_l = γ/√(n_in_l + n_out_l) (:func:`theory.init.layer_sigmas`):

1. *Gaussian blocks.* ``W_1 V`` (n_1 × r) and ``Uᵀ W_L`` (r × n_{L−1}) are i.i.d. N(0, σ²) matrices (V, U have
   orthonormal columns), independent of each other, of the middle layers and of the complements below.
2. *The complements enter only through their Gram matrices.* The map is equivariant under an orthogonal change of
   basis of the complement of span U in the output space (and of span V in the input space): the update of
   ``W_L⊥ = U⊥ᵀ W_L`` is ``W_L⊥ ← W_L⊥ (I − η H)`` (H = W_{<L} W_{<L}ᵀ), and the other layers see W_L⊥ only
   through ``C = W_L⊥ᵀ W_L⊥``. So any factor R with RᵀR = C gives the same W_tot singular values, losses and
   half-learning epochs; C ~ Wishart_{n_{L−1}}(N_out − r, σ_L² I). R is drawn as σ_L times a Gaussian matrix
   ((N_out − r) × n_{L−1}) when N_out − r ≤ n_{L−1}, and otherwise as σ_L times the upper-triangular Bartlett
   factor (n_{L−1} × n_{L−1}: R_ii² ~ χ²_{N_out−r−i+1}, R_ij ~ N(0, 1) above the diagonal). Likewise the input
   side: W_1 V⊥ enters through ``D = W_1 V⊥ V⊥ᵀ W_1ᵀ`` ~ Wishart_{n_1}(N_in − r, σ_1² I).

The reduced network is r + min(n_1, N_in − r) → n_1 → … → n_{L−1} → r + min(n_{L−1}, N_out − r), with target
S̄ = diag(s) padded by zeros: the 8-30-30-30-10000 tutorial net becomes 8-30-30-30-38. Each draw is iterated
with the exact map (no approximation at any η below divergence); mode k's epoch in a draw is the first epoch t
(row t = after t updates) at which the k-th largest singular value of W_tot reaches f·s_k, as measured on
trained networks (:func:`experiments.metrics.half_learning_epochs`).

**What is approximate:** only the Monte-Carlo sampling (the median's relative standard error ≈ 1.25·spread/√D
with D = ``n_draws``). **Cost:** the map's arithmetic, D draws × epochs; the loop stops once every draw has
crossed every learnable mode, except a few slowest draws beyond every asked quantile (which then stay
unfollowed, ``censored_after``). Small inits whose plateaus last ~1e5 epochs and more are out of reach here; for
them :func:`theory.half_learning_distribution` (the reduced dynamics model, cheap at any plateau length, with its
measured gap) is the tool: by default this function iterates at most :data:`MAX_EPOCHS` epochs and refuses up
front where the balanced a priori plateau alone is longer (pass ``max_epochs`` to go further).

Glossary: s (r,) singular values of Σʸˣ (descending); layer_sizes [N_in, n_1, …, n_{L−1}, N_out]; L depth ≥ 2;
γ init scale; σ_l per-layer std; η per-epoch rate (η = 2·lr/(P·N_out)), τ = 1/η epochs; f = ``fraction``; D
draws; t epochs.

References: Saxe, McClelland & Ganguli, arXiv:1312.6120 (2014) and PNAS 116:11537 (2019); Bartlett, Proc. Roy.
Soc. Edinburgh 53:260 (1933) (the triangular factor of a Wishart matrix); Anderson, *An Introduction to
Multivariate Statistical Analysis* (3rd ed. 2003), Thm. 7.2.1.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from ._validate import integer
from .deep_init import DeepInitPrediction, _arguments, _quantile
from .init import expected_initial_mode_strength, layer_sigmas
from .stability import time_to_learn
from .state import escape_bound, orbit_diverged, product, sgd_step

__all__ = ["half_learning_exact_law", "reduced_initial_law", "MAX_EPOCHS",
           "DEFAULT_LAW_DRAWS"]

#: Default draws: the median's relative standard error ≈ 1.25·(spread ≈ 10 %)/√256 ≈ 0.8 %, well below the
#: ≈ 2.2 % of a 32-seed measured median it is compared with.
DEFAULT_LAW_DRAWS = 256
#: Default cap on the epochs iterated (the loop stops as soon as the asked quantiles are fixed, so the cap only
#: bounds a runaway: at the ≈ 34 µs per draw and epoch measured on the depth-4 tutorial net, 2e5 epochs of 256
#: draws would take ~30 min). The default is refused up
#: front where the balanced a priori epoch of the slowest learnable mode (gradient flow's closed form
#: :func:`theory.time_to_learn` from :func:`theory.expected_initial_mode_strength`: 1.2–2.3× *later* than the
#: measured medians on the tutorial's tree at depth 3 and 4, but far earlier than them for narrow hidden layers)
#: already exceeds it.
MAX_EPOCHS = 200_000


def reduced_initial_law(rng: np.random.Generator, n_draws: int, s: np.ndarray, sizes: Sequence[int],
                        gamma: float) -> tuple[list[np.ndarray], np.ndarray]:
    """``n_draws`` draws of the reduced layers [B_1, …, B_L] (each (D, rows, cols)) from their exact initial law
    (module docstring, 1–2) and the target S̄ (R, C): diag(s) padded with zeros."""
    sig = layer_sigmas(gamma, sizes)
    r, n_in, n1, n_last, n_out = s.size, sizes[0], sizes[1], sizes[-2], sizes[-1]
    first = [rng.standard_normal((n_draws, n1, r)) * sig[0]]
    if n_in > r:
        first.append(_gram_factor(rng, n_draws, n_in - r, n1, sig[0]).swapaxes(1, 2))  # D = F Fᵀ, F (n1, ·)
    mids = [rng.standard_normal((n_draws, o, i)) * sd for (i, o), sd in zip(zip(sizes[1:-2], sizes[2:-1]),
                                                                          sig[1:-1])]
    last = [rng.standard_normal((n_draws, r, n_last)) * sig[-1]]
    if n_out > r:
        last.append(_gram_factor(rng, n_draws, n_out - r, n_last, sig[-1]))  # C = RᵀR, R (·, n_last)
    layers = [np.concatenate(first, axis=2), *mids, np.concatenate(last, axis=1)]
    target = np.zeros((layers[-1].shape[1], layers[0].shape[2]))
    target[np.arange(r), np.arange(r)] = s
    return layers, target


def _gram_factor(rng: np.random.Generator, n_draws: int, dof: int, n: int, sigma: float) -> np.ndarray:
    """(D, k, n) factors R with RᵀR ~ Wishart_n(dof, σ² I): a Gaussian (dof × n) block when dof ≤ n, else the
    upper-triangular Bartlett factor (n × n)."""
    if dof <= n:
        return rng.standard_normal((n_draws, dof, n)) * sigma
    R = np.triu(rng.standard_normal((n_draws, n, n)), 1)
    idx = np.arange(n)
    R[:, idx, idx] = np.sqrt(rng.chisquare(dof - idx, size=(n_draws, n)))
    return R * sigma


def half_learning_exact_law(s: ArrayLike, layer_sizes: Sequence[int], gamma: float, eta: float, *,
                            fraction: float = 0.5, levels: ArrayLike = (0.1, 0.5, 0.9),
                            n_draws: int = DEFAULT_LAW_DRAWS, seed: int = 0,
                            max_epochs: int | None = None, modes: int | None = None) -> DeepInitPrediction:
    r"""Distribution over init seeds of the epoch at which W_tot's k-th singular value first reaches f·s_k, exact
    in law (module docstring): D draws of the reduced state's initial law, each iterated with the exact SGD map.

    Arguments as :func:`theory.half_learning_distribution` (whitened inputs, the tutorial's init rule, depth ≥ 2),
    but any init scale γ: the reduction is exact at every γ (the small-init domain is the model's; a mode whose
    strength starts above f·s_k counts from epoch 0, as on a trained network); ``max_epochs`` caps the epochs
    iterated (default :data:`MAX_EPOCHS`, refused up front where the
    balanced a priori epoch of the slowest learnable mode already exceeds it); ``modes`` how many leading modes
    (of s, descending) to report, default all — the dynamics always include every mode of s, but the loop stops
    once these are fixed, so the weak modes' long plateaus are not paid for when only the strong ones are asked
    (s[:k] instead would change the target, hence the dynamics). Returns
    :class:`theory.DeepInitPrediction` (epochs; ``np.inf`` only for modes beyond the narrowest hidden width, which
    W_tot's rank never lets learn, or for the few slowest draws, beyond every asked quantile, once those quantiles
    are fixed: ``censored_after`` says from which epoch). Raises ``ValueError`` when too many draws have not learned
    a learnable mode by ``max_epochs`` for the quantiles asked (naming how many), and
    :class:`theory.OrbitDivergenceError` when η makes the map diverge.
    """
    s, sizes, gamma, eta, lv, n_draws = _arguments(s, layer_sizes, gamma, eta, fraction, levels, n_draws,
                                                   small_init=False)
    if (np.diff(s) > 0).any():  # mode k's epoch compares W_tot's k-th largest singular value with f·s_k
        raise ValueError(f"s must be sorted in descending order (as theory.io_svd returns it), got {s!r}")
    rng = np.random.default_rng(integer("seed", seed))
    n_modes = s.size if modes is None else integer("modes", modes, minimum=1)
    if n_modes > s.size:
        raise ValueError(f"modes must be at most the {s.size} singular values given, got {modes=}")
    live = min(min(sizes[1:-1]), n_modes)  # W_tot's rank ≤ the narrowest hidden width
    depth = len(sizes) - 1
    default = max_epochs is None
    if default:
        balanced = time_to_learn(fraction, s[:live], expected_initial_mode_strength(gamma, sizes), tau=1.0 / eta,
                                 depth=depth)  # the closed form: instant even for a plateau of 1e9 epochs
        if not float(np.max(balanced)) <= MAX_EPOCHS:
            raise ValueError(f"the balanced a priori epoch {float(np.max(balanced)):.3g} of the slowest learnable mode "
                             f"asked already exceeds the default cap MAX_EPOCHS = {MAX_EPOCHS}: pass max_epochs "
                             "explicitly (or ask for fewer modes), "
                             "or use the model theory.half_learning_distribution, which is cheap at any plateau "
                             "length")
        max_epochs = MAX_EPOCHS
    max_epochs = integer("max_epochs", max_epochs, minimum=1)
    layers, target = reduced_initial_law(rng, n_draws, s, sizes, gamma)
    out = np.full((n_draws, n_modes), np.inf)
    todo = np.ones((n_draws, live), dtype=bool)
    # Draws still climbing may be left once the median and every level's quantile are fixed: the linear
    # interpolation at q reads the sorted samples at ⌊(D−1)q⌋ and the next, so ≤ `spare` unfinished draws per mode
    # leave them all finite (the heavy tail of slow draws would otherwise set the cost).
    spare = max(n_draws - 2 - int(np.floor((n_draws - 1) * max(0.5, float(lv.max(initial=0.5))))), 0)
    level = fraction * s[:live]
    scale = escape_bound(target, np.zeros_like(target))
    k = 0
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging orbit is reported below, not warned about
        for k in range(max_epochs + 1):
            if k < max_epochs:
                layers, M = sgd_step(layers, target, eta)
            else:
                M = product(layers)
            if not np.abs(M).max() <= scale:  # NaN compares False
                raise orbit_diverged(eta, k)
            gram = M.swapaxes(1, 2) @ M if M.shape[2] <= M.shape[1] else M @ M.swapaxes(1, 2)
            sv = np.sqrt(np.clip(np.linalg.eigvalsh(gram)[:, ::-1][:, :live], 0.0, None))
            new = todo & (sv >= level)
            out[:, :live][new] = k
            todo &= ~new
            if (todo.sum(axis=0) <= spare).all():
                break
    left = todo.sum(axis=0)
    if (left > spare).any():
        per_mode = ", ".join(f"mode {j + 1}: {int(c)}" for j, c in enumerate(left) if c > spare)
        cap = f"the default cap MAX_EPOCHS = {max_epochs}" if default else f"max_epochs={max_epochs}"
        raise ValueError(f"{cap} is too short: too many draws had not reached {fraction:g}·s_k by then for the "
                         f"quantiles asked ({per_mode} of {n_draws}; at most {spare} may be left); pass a larger "
                         "max_epochs")
    return DeepInitPrediction(out, lv, _quantile(out, lv), censored_after=float(k) if todo.any() else np.inf)
