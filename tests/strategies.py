"""Shared hypothesis strategies for the theory tests (bounded elements; matrices drawn from integer seeds)."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

# Singular values span five decades, like real data sets (the tutorial's are ~70…160, a regression's ~1).
S_MIN, S_MAX = 1e-2, 1e3


def singular_values(min_value: float = S_MIN, max_value: float = S_MAX):
    """A positive, bounded singular value s."""
    return st.floats(min_value=min_value, max_value=max_value, allow_nan=False, allow_infinity=False)


def seeds():
    """Seeds for ``np.random.default_rng`` (matrices are built from a seed, so examples shrink cleanly)."""
    return st.integers(min_value=0, max_value=2**32 - 1)


@st.composite
def mode_params(draw, min_ratio: float = 1e-12, max_ratio: float = 0.999):
    """(s, a0, tau) with 0 < a0 < s: a0 = s·r for r drawn log-uniformly in [min_ratio, max_ratio]."""
    s = draw(singular_values())
    log_r = draw(st.floats(min_value=np.log10(min_ratio), max_value=np.log10(max_ratio)))
    tau = draw(st.floats(min_value=1e-1, max_value=1e3))
    return s, s * 10.0**log_r, tau


def spectra(max_modes: int = 6):
    """1-d arrays of singular values (1 … ``max_modes`` entries, ties possible)."""
    return hnp.arrays(
        np.float64,
        st.integers(min_value=1, max_value=max_modes),
        elements=singular_values(),
    )


def orthogonal(n: int, seed: int, k: int | None = None) -> np.ndarray:
    """(n, k) matrix with orthonormal columns from the QR of a Gaussian drawn with ``seed`` (k defaults to n)."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    q = q * np.sign(np.diag(r))  # Haar-distributed
    return q[:, : (n if k is None else k)]


def whitened_problem(s, seed: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Whitened one-hot X = I_P and Y (P, N_out) with Σʸˣ = YᵀX = U diag(s) Vᵀ exactly (U, V from ``seed``)."""
    r = len(s)
    U, V = orthogonal(n_out, seed, r), orthogonal(r, seed + 1)
    return np.eye(r), V @ np.diag(s) @ U.T


def balanced_weights(n_in: int, n_h: int, n_out: int, lam: float, gamma: float, seed: int) -> list[np.ndarray]:
    """[W₁, W₂] float64 of an exactly λ-balanced depth-2 net (``saxe.balanced_init_``, generator seeded by ``seed``)."""
    import torch

    import saxe

    net = saxe.make_net(n_in, [n_h], n_out).double()
    saxe.balanced_init_(net, lam, gamma=gamma, generator=torch.Generator().manual_seed(seed))
    return [w.detach().numpy().copy() for w in saxe.weights(net)]


def drawn_balanced_problem(seed: int, n_h: int, lam: float, log_gamma: float, spread: float):
    """A whitened 3-mode problem (s_max = 2, the others spread below it by ``spread``) with an exactly λ-balanced init
    of scale 10^log_gamma; the inputs are padded with zero rows of Y to N_in ≥ N_h where λ < 0 (which needs it).
    Returns (X, Y, w0, s_max, span), span in τ·s_max units: past the escape of a small init."""
    s = 2.0 * np.array([1.0, 1.0 - 0.5 * spread, 1.0 - spread + 0.05])
    n_out = max(6, n_h)
    _, Y = whitened_problem(s, seed, n_out)
    n_in = 3 if lam >= 0 else max(3, n_h)
    X, Y = np.eye(n_in), np.vstack([Y, np.zeros((n_in - 3, n_out))])
    w0 = balanced_weights(n_in, n_h, n_out, lam, 10.0**log_gamma, seed)
    return X, Y, w0, float(s[0]), 8.0 * (1.0 + abs(log_gamma))


def orthogonals(n: int, k: int | None = None):
    """Strategy for :func:`orthogonal` (n, k) matrices."""
    return seeds().map(lambda seed: orthogonal(n, seed, k))


@st.composite
def matrices_with_spectrum(draw, n_rows: int, n_cols: int):
    """(M, U, s, V) with M = U diag(s) Vᵀ, s descending drawn from :func:`singular_values`."""
    r = min(n_rows, n_cols)
    s = np.sort(draw(hnp.arrays(np.float64, r, elements=singular_values())))[::-1]
    seed = draw(seeds())
    U = orthogonal(n_rows, seed, r)
    V = orthogonal(n_cols, seed + 1, r)
    return U @ np.diag(s) @ V.T, U, s, V
