r"""Effective initial mode strength a₀ of a small random initialisation, for the balanced mode theory.

The tutorial initialises every weight matrix W_l (torch layout, shape (n_out_l, n_in_l)) with i.i.d. entries
N(0, σ_l²), σ_l = γ/√(n_in_l + n_out_l). Such weights are neither balanced nor aligned, but for small γ only the
component that grows along each mode matters, and it can be summarised by one number a₀ per mode that the
balanced solution :func:`theory.modes.mode_strength` then uses.

Depth 2 (exact for the early, linear phase). Write z₁ = W1 v_α and z₂ = W2ᵀ u_α (hidden-space vectors). While
the weights are small, τ dz₁/dt = s z₂ and τ dz₂/dt = s z₁, so z = (z₁ + z₂)/2 grows like e^{st/τ}, the
difference decays like e^{−st/τ}, and a = u_αᵀ W2 W1 v_α = z₂·z₁ → |z|² e^{2st/τ}: exactly the small-a limit of
Saxe's solution with a₀ = |z|². Hence, with Z = (W1 V + W2ᵀ U)/2,

    a₀_α = (ZᵀZ)_αα,      E[a₀] = (N_h/4)(σ₁² + σ₂²)     (z₁, z₂ independent with N_h entries of variance σ²).

The tutorial (8-30-10000, γ = 1e-12) gives E[a₀] ≈ 1.98e-25.

Depth 1: a = u_αᵀ W v_α directly; E[(uᵀWv)²]^{1/2} = σ₁ for unit u, v.

Depth L ≥ 3 (order-of-magnitude estimate). The growth is no longer linear at small weights, so no exact
projection exists. We use a₀ = ∏_l p_l, i.e. the balanced gain u₀ = (∏ p_l)^{1/L} is the geometric mean of
the per-layer rms gains along the mode: p₁ = |W1 v_α| (E p₁² = N_h1 σ₁²), p_L = |W_Lᵀ u_α|
(E p_L² = N_{h,L−1} σ_L²) and, for a middle layer, the rms image of a random unit vector taken forward and
backward, p_l² = ‖W_l‖²_F (1/n_in + 1/n_out)/2 (E p_l² = σ_l²(n_in + n_out)/2 = γ²/2). Simulated gradient
descent from such inits (widths 4…200, depth 3 and 4) reaches s/2 within ~20% of the time predicted with
this a₀ (the depth-L time scales like a₀^{−(L−2)/L}); treat it as good to a factor of about 1.5 in time.

Glossary: γ init scale; σ_l per-layer standard deviation; N_in, N_h…, N_out layer sizes; U (N_out, r),
V (N_in, r) the singular vectors of Σʸˣ; α the mode index. No time units (a₀ is a strength at t = 0).

References: Saxe, McClelland & Ganguli, arXiv:1312.6120, section 3 (small random initial conditions);
PNAS 116:11537 (2019); Neuromatch W1D2 tutorial 3 (``initializer_``).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from ._validate import as_float_array, integer, positive

__all__ = ["expected_initial_mode_strength", "initial_mode_strength"]


def _layer_sizes(layer_sizes) -> list[int]:
    if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__len__"):
        raise ValueError(f"layer_sizes must be a sequence [N_in, N_h1, ..., N_out], got {layer_sizes!r}")
    if len(layer_sizes) < 2:
        raise ValueError(f"layer_sizes must hold at least [N_in, N_out] (2 entries), got {list(layer_sizes)!r}")
    return [integer(f"layer_sizes[{i}]", n, minimum=1) for i, n in enumerate(layer_sizes)]


def layer_sigmas(gamma: float, sizes: Sequence[int]) -> list[float]:
    """σ_l = γ/√(n_in_l + n_out_l) of the tutorial's init rule, for layer sizes [N_in, N_h…, N_out]."""
    return [gamma / float(np.sqrt(n_in + n_out)) for n_in, n_out in zip(sizes[:-1], sizes[1:])]


def expected_initial_mode_strength(gamma: float, layer_sizes: Sequence[int]) -> float:
    r"""A priori a₀ for the tutorial init W_l ~ N(0, σ_l²), σ_l = γ/√(n_in_l + n_out_l).

    Equations (derivations in the module docstring), L = len(layer_sizes) − 1 weight matrices::

        L = 1:   a₀ = σ₁                                   (rms of u_αᵀ W v_α)
        L = 2:   a₀ = (N_h/4)(σ₁² + σ₂²)                   (E of (ZᵀZ)_αα, Z = (W1 V + W2ᵀ U)/2; exact)
        L ≥ 3:   a₀ = √(N_h1 σ₁²) · √(N_{h,L−1} σ_L²) · ∏_{l=2}^{L−1} σ_l √((n_in_l + n_out_l)/2)
                                                          (order-of-magnitude estimate, ~1.5× in time)

    The tutorial (``layer_sizes=[8, 30, 10000]``, γ = 1e-12) gives ≈ 1.98e-25.

    Glossary: γ = ``gamma`` > 0 init scale; ``layer_sizes`` = [N_in, N_h1, …, N_out] (positive integers);
    returns a₀ (same units as the singular values s of Σʸˣ). Reference: Saxe et al. arXiv:1312.6120.
    """
    gamma = positive("gamma", gamma)
    sizes = _layer_sizes(layer_sizes)
    with np.errstate(over="ignore"):
        a0 = _a_priori(gamma, sizes)
    if not np.isfinite(a0):
        raise ValueError(f"gamma={gamma!r} is too large for float64: the a priori mode strength of layer_sizes "
                         f"{sizes} overflows (a network this large cannot be trained or predicted either)")
    return a0


def _a_priori(gamma: float, sizes: list[int]) -> float:
    pairs = list(zip(sizes[:-1], sizes[1:]))  # (n_in_l, n_out_l)
    var = [np.float64(sig) ** 2 for sig in layer_sigmas(gamma, sizes)]
    if len(pairs) == 1:
        return float(np.sqrt(var[0]))
    if len(pairs) == 2:
        return float(sizes[1] / 4.0 * (var[0] + var[1]))
    p2 = [sizes[1] * var[0], sizes[-2] * var[-1]]
    p2 += [v * (n_in + n_out) / 2.0 for v, (n_in, n_out) in zip(var[1:-1], pairs[1:-1])]
    return float(np.prod(np.sqrt(p2)))


def _weights(weights) -> list[np.ndarray]:
    if isinstance(weights, np.ndarray) or not hasattr(weights, "__len__") or len(weights) == 0:
        raise ValueError(
            f"weights must be a non-empty list [W1, ..., WL] of 2-d arrays (torch layout), got {type(weights).__name__}"
        )
    ws = [as_float_array(f"weights[{i}]", w, ndim=2) for i, w in enumerate(weights)]
    for i in range(1, len(ws)):
        if ws[i].shape[1] != ws[i - 1].shape[0]:
            raise ValueError(
                f"weights must chain (weights[{i}].shape[1] == weights[{i - 1}].shape[0]), got "
                f"weights[{i - 1}].shape={ws[i - 1].shape}, weights[{i}].shape={ws[i].shape}"
            )
    return ws


def _singular_vectors(U, V, ws: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    U = as_float_array("U", U, ndim=2)
    V = as_float_array("V", V, ndim=2)
    n_in, n_out = ws[0].shape[1], ws[-1].shape[0]
    if V.shape[0] != n_in:
        raise ValueError(f"V must have N_in = weights[0].shape[1] = {n_in} rows, got V.shape={V.shape}")
    if U.shape[0] != n_out:
        raise ValueError(f"U must have N_out = weights[-1].shape[0] = {n_out} rows, got U.shape={U.shape}")
    if U.shape[1] != V.shape[1]:
        raise ValueError(
            f"U and V must have the same number of columns (modes), got U.shape={U.shape}, V.shape={V.shape}"
        )
    return U, V


def initial_mode_strength(weights: Sequence[ArrayLike], U: ArrayLike, V: ArrayLike) -> np.ndarray:
    r"""Effective a₀ per mode of the given weights (torch layout [W1 (N_h1, N_in), …, WL (N_out, N_h{L−1})]).

    Equations (module docstring), one value per column α of U and V::

        L = 1:   a₀_α = u_αᵀ W v_α                          (signed, returned as is: a negative value means
                                                            the mode starts anti-aligned; depth 1 decays to s)
        L = 2:   a₀_α = (ZᵀZ)_αα,  Z = (W1 V + W2ᵀ U)/2     (growing part of the init; exact early dynamics)
        L ≥ 3:   a₀_α = |W1 v_α| · |W_Lᵀ u_α| · ∏_{l=2}^{L−1} ‖W_l‖_F √((1/n_in_l + 1/n_out_l)/2)
                                                          (estimate; with every norm at its rms value
                                                           this is :func:`expected_initial_mode_strength`)

    Glossary: ``weights`` the L weight matrices; U (N_out, r), V (N_in, r) singular vectors of Σʸˣ (e.g. from
    :func:`theory.correlations.io_svd`). Returns a (r,) float64 array. Reference: Saxe et al. arXiv:1312.6120.
    """
    ws = _weights(weights)
    U, V = _singular_vectors(U, V, ws)
    if len(ws) == 1:
        return np.einsum("or,oi,ir->r", U, ws[0], V)
    if len(ws) == 2:
        Z = 0.5 * (ws[0] @ V + ws[1].T @ U)
        return np.einsum("hr,hr->r", Z, Z)
    first = np.linalg.norm(ws[0] @ V, axis=0)
    last = np.linalg.norm(ws[-1].T @ U, axis=0)
    middle = [np.linalg.norm(w) * np.sqrt(0.5 * (1.0 / w.shape[1] + 1.0 / w.shape[0])) for w in ws[1:-1]]
    return first * last * float(np.prod(middle))
