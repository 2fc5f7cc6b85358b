r"""The learning rate at which full-batch SGD of a deep linear network actually diverges.

Above the stable bound (``f = lr / max_stable_lr > 1``, i.e. L η s₁^{2−2/L} > 2) the learned top mode is no longer
a stable fixed point, yet training does not blow up at once. Measured on the tutorial's data (8-30-1000 and
8-30-10000, depth 2, γ = 1e-6) it stays bounded up to f ≈ 1.16 and diverges from f ≈ 1.17–1.21; a single mode
would only escape at η s₁ = 2 (f = 2, :func:`theory.stability.escape_eta`). The mechanism, derived here:

1. **Period 2.** For 1 < f the top mode's balanced map ``u ← u + η u^{L−1}(s₁ − u^L)`` settles on a period-2
   orbit a₋ < s₁ < a₊ (then period doubling). Along it the within-mode directions are stable: the balance
   ``a² − b²`` of the two layers' gains is multiplied per step by ``1 − η²(s − ab)²``, whose product over the orbit
   stays below 1 up to f ≈ 1.3 (depth 2), and a direction outside the data's modes by ``1 − η a`` (also stable).
2. **Cross-mode instability.** Linearised around the orbit, the weights that couple mode 1 to mode j (entries
   (1, j) and (j, 1) of every layer, a 2L-dimensional block of the Jacobian for each j) have a Floquet multiplier
   that crosses 1 at an f set by ρ = s_j/s₁ alone: ≈ 1.0 for ρ → 1, ≈ 1.1 for ρ ≈ 0.8, none for ρ ≲ 0.6 below
   f = 1.25 (depth 2). Rounding or the init seeds that direction and it grows; modes 1 and j mix.
3. **Escape.** Just past that onset the mixed orbit is still bounded (f ≈ 1.1–1.16 at ρ ≈ 0.8); from a sharp
   threshold on (f ≈ 1.17 at ρ ≈ 0.8) it is not, and the weights escape within a few hundred epochs. A weak
   second mode couples only once the top mode's orbit is chaotic (ρ = 0.3: f ≈ 1.55; measured on a rank-2 table
   with the plain loop: bounded at 1.5, 3 of 4 seeds diverge at 1.55); a single mode escapes at f = 2.

Step 3 has no closed form, so it is computed: the exact SGD map of the network restricted to its top
``n_modes`` modes (an invariant subspace of the decoupled dynamics: k input modes, k output modes, hidden
widths min(N_h, k)), started at the balanced learned state plus a relative 1e-8 perturbation of every weight (the
part of a real init or of rounding that seeds step 2), is iterated for ``horizon`` epochs at each f of a grid,
with ``n_perturbations`` perturbations each; :func:`divergence_lr` is the smallest f at which at least half of
them diverge, refined to 0.002 in f. Near it the outcome of a single run is decided by rounding (the maps are
chaotic): two float64 engines agree on the fraction of seeds that diverge, not on each seed.

Glossary: s₁ ≥ s₂ ≥ … the singular values of Σʸˣ (whitened inputs); L depth; η per epoch; f the lr in units of
:func:`theory.stability.max_stable_lr`; lr in torch's units.

References: Saxe, McClelland & Ganguli, arXiv:1312.6120 (the mode dynamics); Cohen et al., ICLR 2021 (training
beyond 2/η sharpness); Ott, "Chaos in Dynamical Systems" (2002), ch. 3 (period doubling, Floquet multipliers).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from ._validate import as_float_array, choice, integer
from .correlations import io_svd
from .stability import max_stable_lr
from .state import is_whitened, product, sgd_step

__all__ = ["divergence_lr", "divergence_fraction", "PERTURBATION", "ESCAPE_AMPLITUDE"]

# Relative size of the perturbation that seeds the cross-mode instability (γ = 1e-6 inits carry ~1e-7..1e-12, a
# decoupled init only rounding, 1e-16): it sets *when* a run escapes (≈ ln(1/size)/rate epochs), not whether.
PERTURBATION = 1e-8
# A run of the minimal model has diverged once an entry of W_tot exceeds this many s₁ (a bounded orbit stays
# below (2 + η s)/η·... ≲ 3 s₁ for f ≤ 2; an escaping one passes 1e3 s₁ within a few steps).
ESCAPE_AMPLITUDE = 1e3
# Grids of f = lr / max_stable_lr: each pass scans the interval below the first point of the previous pass at
# which at least half of the runs diverged.
GRID_STEPS = (0.1, 0.02, 0.002)
# The scan ends here: a single balanced mode escapes by itself at f = 2 (depth 2, η s₁ = 2), ≈ 2.2 (depth 3) and
# ≈ 2.5 (depth 4) (iterating the scalar map); other modes can only make it earlier.
F_MAX = 3.0


def _model_spectrum(X, Y, n_modes: int) -> np.ndarray:
    X = as_float_array("X", X, ndim=2)
    Y = as_float_array("Y", Y, ndim=2)
    if not is_whitened(X):
        raise ValueError("divergence_lr needs whitened inputs (XᵀX = I, e.g. one-hot items): its model is the "
                         "decoupled mode dynamics")
    s = io_svd(X, Y)[1]
    if not s.size or s[0] <= 0:
        raise ValueError("Y must not be all zero: there is no mode to learn, hence no divergence")
    s = s[s > 1e-12 * s[0]]
    return s[:n_modes] / s[0]


def divergence_fraction(f: ArrayLike, s: ArrayLike, depth: int = 2, *, width: int | None = None, horizon: int = 4000,
                        n_perturbations: int = 16, seed: int = 0) -> np.ndarray:
    r"""Fraction of perturbed runs of the minimal top-mode model that diverge within ``horizon`` epochs, per f.

    ``f`` (n,) learning rates in units of the stable bound; ``s`` (k,) the top singular values, normalised so that
    s[0] = 1; ``width`` the narrowest hidden width (default: no bottleneck). The model is the exact SGD map of
    the network restricted to these k modes (module docstring), started at the balanced learned state with a
    relative :data:`PERTURBATION` of every weight, one draw per ``seed`` and perturbation index.
    """
    f = np.atleast_1d(as_float_array("f", f))
    s = as_float_array("s", s, ndim=1)
    depth = integer("depth", depth, minimum=1)
    k = s.size
    w = k if width is None else min(int(width), k)
    sizes = [k] + [w] * (depth - 1) + [k]
    gains = np.zeros(k)
    gains[:w] = s[:w] ** (1.0 / depth)
    eta = np.repeat(f, n_perturbations) * 2.0 / depth  # η s₁^{2−2/L} = 2f/L with s₁ = 1
    R = eta.size
    rng = np.random.default_rng(seed)
    layers = []
    for l in range(depth):
        base = np.zeros((sizes[l + 1], sizes[l]))
        m = min(base.shape)
        base[np.arange(m), np.arange(m)] = gains[:m]
        layers.append(base + PERTURBATION * rng.standard_normal((R,) + base.shape))
    target = np.diag(s)
    died = np.zeros(R, dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        for k_step in range(horizon):
            layers, M = sgd_step(layers, target, eta)
            if k_step % 16 == 15 or k_step == horizon - 1:
                bad = ~(np.abs(product(layers)).max(axis=(-2, -1)) <= ESCAPE_AMPLITUDE)
                if bad.any():
                    died |= bad
                    layers = [np.where(bad[:, None, None], 0.0, B) for B in layers]
    return died.reshape(f.size, n_perturbations).mean(axis=1)


def divergence_lr(X: ArrayLike, Y: ArrayLike, depth: int = 2, *, hidden: int | Sequence[int] | None = None,
                  reduction: str = "mean", n_modes: int = 3, horizon: int = 4000, n_perturbations: int = 16) -> float:
    r"""Learning rate (torch's units) from which full-batch SGD diverges, from the top modes of (X, Y).

    The smallest lr at which at least half of the perturbed runs of the minimal model (module docstring) diverge
    within ``horizon`` epochs: ``f* · max_stable_lr`` with f* found on grids of step 0.1, 0.02, then 0.002. Between
    ``max_stable_lr`` and this lr SGD stays bounded but never settles (the top modes oscillate and mix). ``inf``
    if no f up to :data:`F_MAX` diverges. ``hidden``: the narrowest hidden width matters when it is below
    ``n_modes``. Inputs must be whitened. Measured against real float64 SGD: ``bench/divergence_edge.py``.
    Reference: module docstring.
    """
    depth = integer("depth", depth, minimum=1)
    choice("reduction", reduction, ("mean", "sum"))
    n_modes = integer("n_modes", n_modes, minimum=1)
    horizon = integer("horizon", horizon, minimum=1)
    n_perturbations = integer("n_perturbations", n_perturbations, minimum=1)
    s = _model_spectrum(X, Y, n_modes)
    width = None
    if isinstance(hidden, Sequence):
        width = min(integer(f"hidden[{i}]", h, minimum=1) for i, h in enumerate(hidden))
    elif hidden is not None:
        width = integer("hidden", hidden, minimum=1)
    s_max = float(io_svd(X, Y)[1][0])
    bound = float(max_stable_lr(s_max, np.shape(X)[0], np.shape(Y)[1], depth=depth, reduction=reduction))
    run: dict = dict(depth=depth, width=width, horizon=horizon, n_perturbations=n_perturbations)
    lo, hi = 1.0 - GRID_STEPS[0], F_MAX  # the answer lies in (lo, hi]
    found = False
    for step in GRID_STEPS:
        grid = np.round(np.arange(lo + step, hi + step / 2, step), 10)
        hit = np.flatnonzero(divergence_fraction(grid, s, **run) >= 0.5)
        if hit.size:
            found = True
            lo, hi = (grid[hit[0] - 1] if hit[0] else grid[0] - step), grid[hit[0]]
    if not found:
        return math.inf
    return float(hi * bound)
