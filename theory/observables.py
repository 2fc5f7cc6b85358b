r"""Observables a trained network reports, predicted from a mode trajectory M(t) (whitened inputs).

A mode trajectory is an array ``M`` of shape (…, r, r): the mode matrix ``M = Uᵀ W_tot V`` at one or more epochs
(leading axes), e.g. from :func:`theory.coupled.coupled_modes_discrete`, or ``diag(a)`` for the decoupled theory.
The predicted network is ``W_tot = U M Vᵀ`` (no component outside the data's singular subspaces; the parts there
start O(init) and only decay).

Glossary: U (N_out, r), s (r,), V (N_in, r) the thin SVD of Σʸˣ = YᵀX (:func:`theory.io_svd`); X (P, N_in) inputs
with XᵀX = I; P samples (items), N_out output features; L = ``depth`` the number of weight matrices. Time enters
only through the leading axes of M (epochs).

References: Saxe, McClelland & Ganguli, arXiv:1312.6120; PNAS 116:11537 (2019) (RSMs, illusory correlations).
"""
from __future__ import annotations

import numbers

import numpy as np

from ._validate import as_float_array, choice, integer

__all__ = ["w_tot_from_modes", "loss_from_modes", "rsm_from_modes", "outputs_from_modes", "UNFITTABLE_RTOL",
           "end_to_end", "range_factor", "squared_error", "gram_rsm", "selected_outputs"]

# ‖Y‖² − Σ s² is a difference of two O(‖Y‖²) sums: rounding can leave it at −1e-13·‖Y‖²; a deficit beyond this
# relative size means Y_sq_norm and s do not describe the same data.
UNFITTABLE_RTOL = 1e-9


def _trajectory(M, r: int | None = None) -> np.ndarray:
    M = as_float_array("M", M)
    if M.ndim < 2 or M.shape[-1] != M.shape[-2]:
        raise ValueError(f"M must be a mode matrix (…, r, r) (square in its last two axes), got shape {M.shape}")
    if r is not None and M.shape[-1] != r:
        raise ValueError(f"M must be (…, {r}, {r}) to match the {r} modes, got shape {M.shape}")
    return M


def _basis(name: str, B, r: int | None = None) -> np.ndarray:
    B = as_float_array(name, B, ndim=2)
    if r is not None and B.shape[1] != r:
        raise ValueError(f"{name} must have r={r} columns (one per mode, from io_svd), got shape {B.shape}")
    return B


def _inputs(X, n_in: int) -> np.ndarray:
    if X is None:
        return np.eye(n_in)
    X = as_float_array("X", X, ndim=2)
    if X.shape[1] != n_in:
        raise ValueError(f"X must have N_in={n_in} columns (rows of V), got shape {X.shape}")
    return X


def _select(name: str, index, n: int):
    """Row selection: None → all; an int → that row (axis dropped); else an integer index array."""
    if index is None:
        return slice(None)
    if isinstance(index, numbers.Integral) and not isinstance(index, bool):
        if not -n <= int(index) < n:
            raise ValueError(f"{name} must index one of {n} entries, got {name}={index}")
        return int(index)
    arr = np.asarray(index)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise ValueError(f"{name} must be None, an int or a 1-d integer index array, got {index!r}")
    if arr.size and ((arr < -n) | (arr >= n)).any():
        raise ValueError(f"{name} must index entries 0…{n - 1}, got {arr.tolist()}")
    return arr.astype(np.intp)


# ------------------------------------------------------------------ the representation every theory shares
# A theory's state at epochs t is (M̄, G) in fixed orthonormal bases (Ū, V̄): W_tot = Ū M̄ V̄ᵀ and the first hidden
# layer's Gram W_1ᵀW_1 = V̄ G V̄ᵀ (theory.trajectories). These four functions are the one home of the observables;
# the *_from_modes functions below are their whitened, decoupled-basis special case (Ū = U, V̄ = V).
def end_to_end(M, Ubar, Vbar) -> np.ndarray:
    """``W_tot = Ū M̄ V̄ᵀ`` (…, N_out, N_in), batched over M̄'s leading (epoch) axes."""
    return Ubar @ M @ Vbar.T


def range_factor(sxx) -> np.ndarray:
    r"""F with ``Σ̄ˣˣ = F Fᵀ`` over Σ̄ˣˣ's range: F = Q √Λ, eigenvalues at the rounding level of the largest being
    its null space (exactly 0). Factored once per prediction, for :func:`squared_error`."""
    lam, Q = np.linalg.eigh(0.5 * (sxx + sxx.T))
    keep = lam > np.finfo(float).eps * lam.size * lam.max(initial=0.0)
    return Q[:, keep] * np.sqrt(lam[keep])


def squared_error(M, lstsq, unfittable: float, sxx_factor=None) -> np.ndarray:
    r"""``‖Y − X W_totᵀ‖²_F = ‖Y − X W*ᵀ‖² + tr(D Σ̄ˣˣ Dᵀ)``, D = M̄* − M̄ (``sxx_factor=None``: Σ̄ˣˣ = I).

    W* is the least-squares map (M̄* = ``lstsq`` in the same bases) and ``unfittable`` = ‖Y − X W*ᵀ‖², computed from
    the data directly, so a small loss is never the difference of two large sums. ``sxx_factor`` is
    :func:`range_factor` (Σ̄ˣˣ): tr(D Σ̄ˣˣ Dᵀ) is then the sum of squares ‖D F‖², never below 0, and the init's
    untrainable part of D in Σ̄ˣˣ's null space (P < N_in) adds nothing (as Σ (D Σ̄ˣˣ) ∘ D it came out −5e-16 there).
    """
    D = lstsq - M
    if sxx_factor is not None:
        D = D @ sxx_factor
    return unfittable + np.sum(D * D, axis=(-2, -1))


def gram_rsm(G, XV) -> np.ndarray:
    """First hidden layer's RSM ``h hᵀ = (X V̄) G (X V̄)ᵀ`` (…, P, P), symmetrised."""
    out = XV @ G @ XV.T
    return 0.5 * (out + np.swapaxes(out, -1, -2))


def selected_outputs(M, Ubar, XV, items=None, features=None) -> np.ndarray:
    """``X W_totᵀ = (X V̄) M̄ᵀ Ūᵀ`` on the chosen item rows / feature columns only (an int drops that axis)."""
    left = XV[_select("items", items, XV.shape[0])]
    right = Ubar[_select("features", features, Ubar.shape[0])]
    out = np.atleast_2d(left) @ np.swapaxes(M, -1, -2) @ np.atleast_2d(right).T
    out = out[..., 0, :] if left.ndim == 1 else out
    return out[..., 0] if right.ndim == 1 else out


def w_tot_from_modes(M, U, V) -> np.ndarray:
    r"""Predicted end-to-end map ``W_tot = U M Vᵀ`` (…, N_out, N_in), batched over M's leading (epoch) axes.

    Glossary in the module docstring (M (…, r, r); U, V from :func:`theory.io_svd`). Reference: Saxe et al.,
    arXiv:1312.6120, eq. (4) (W_tot = Σ_α a_α u_α v_αᵀ in the decoupled case).
    """
    M = _trajectory(M)
    U = _basis("U", U, M.shape[-1])
    V = _basis("V", V, M.shape[-1])
    return end_to_end(M, U, V)


def loss_from_modes(M, s, Y_sq_norm, n_samples, n_out, reduction: str = "mean") -> np.ndarray:
    r"""The loss torch's ``nn.MSELoss`` reports for ``W_tot = U M Vᵀ`` and whitened X, shape M.shape[:-2].

    Derivation (XᵀX = I, Σʸˣ = YᵀX = U S Vᵀ)::

        ‖Y − X W_totᵀ‖²_F = ‖Y‖² − 2⟨Σʸˣ, W_tot⟩ + ‖W_tot‖² = ‖Σʸˣ − W_tot‖² + (‖Y‖² − ‖Σʸˣ‖²)
                          = ‖S − M‖²_F + (‖Y‖²_F − Σ s²)

    since U, V have orthonormal columns. The second term is ‖(I − XXᵀ)Y‖², the part of Y that no linear map of X
    can fit (zero for square one-hot X = I). Divided by P·N_out for ``reduction='mean'``, by 1 for ``'sum'``.

    Glossary: ``Y_sq_norm`` = ‖Y‖²_F; ``n_samples`` = P; ``n_out`` = N_out; s (r,) singular values. Epochs enter
    through M's leading axes. Reference: Saxe et al., arXiv:1312.6120; PNAS 116:11537 (2019).
    """
    s = as_float_array("s", s, ndim=1)
    M = _trajectory(M, s.size)
    y2 = as_float_array("Y_sq_norm", Y_sq_norm, ndim=0)
    n_samples = integer("n_samples", n_samples, minimum=1)
    n_out = integer("n_out", n_out, minimum=1)
    choice("reduction", reduction, ("mean", "sum"))
    unfittable = float(y2) - float(np.sum(s**2))
    if unfittable < -UNFITTABLE_RTOL * max(float(y2), float(np.sum(s**2))):
        raise ValueError(f"Y_sq_norm must be >= Σ s² = {np.sum(s**2):.6g} (‖Y‖² ≥ ‖YᵀX‖² for whitened X), "
                         f"got Y_sq_norm={float(y2)!r}")
    total = squared_error(M, np.diag(s), max(unfittable, 0.0))
    return total / (n_samples * n_out) if reduction == "mean" else total


def rsm_from_modes(M, V, X=None, depth: int = 2) -> np.ndarray:
    r"""First hidden layer's representational similarity matrix ``h hᵀ`` (…, P, P), ``h = X W1ᵀ``.

    For balanced weights (W_{l+1}ᵀW_{l+1} = W_l W_lᵀ) ``W1ᵀW1 = (W_totᵀW_tot)^{1/L} = V (MᵀM)^{1/L} Vᵀ`` (no part
    outside span V), so::

        RSM = X W1ᵀ W1 Xᵀ = X V (MᵀM)^{1/L} Vᵀ Xᵀ.

    The power uses the SVD ``M = Q Σ Wᵀ`` (the eigendecomposition of MᵀM = W Σ² Wᵀ without squaring, so
    eigenvalues cannot come out negative): ``(MᵀM)^{1/L} = W Σ^{2/L} Wᵀ``. For depth 2 and the coupled map
    (``W1 = Z Vᵀ``, M = ZᵀZ symmetric PSD) this is exactly ``X V M Vᵀ Xᵀ``. ``X=None`` means X = I (one-hot
    items = inputs). Depth 1 has no hidden layer (``ValueError``).

    Glossary in the module docstring; epochs enter through M's leading axes. Reference: Saxe et al.,
    PNAS 116:11537 (2019), "representational similarity".
    """
    M = _trajectory(M)
    V = _basis("V", V, M.shape[-1])
    depth = integer("depth", depth, minimum=1)
    if depth == 1:
        raise ValueError("depth must be >= 2 for an RSM: a depth-1 network (linear regression) has no hidden layer")
    X = _inputs(X, V.shape[0])
    _, sig, Wt = np.linalg.svd(M)
    power = (np.swapaxes(Wt, -1, -2) * sig[..., None, :] ** (2.0 / depth)) @ Wt
    return gram_rsm(power, X @ V)


def outputs_from_modes(M, U, V, X=None, items=None, features=None) -> np.ndarray:
    r"""Predicted outputs ``X W_totᵀ = (X V) Mᵀ Uᵀ`` restricted to item rows and feature columns.

    Only the selected rows of ``X V`` (P × r) and of U (N_out × r) are used, so one item/feature trace (the
    tutorial's illusory correlation: item 0, last feature) costs O(T r²), never the (T, P, N_out) tensor.
    ``items``/``features``: None (all), an int (that axis is dropped, like numpy indexing) or an index array.
    Shape (…, n_items, n_features) with … = M.shape[:-2]. X=None means X = I (one-hot items).

    Glossary in the module docstring; epochs enter through M's leading axes. Reference: Saxe et al.,
    PNAS 116:11537 (2019) (illusory correlations).
    """
    M = _trajectory(M)
    U = _basis("U", U, M.shape[-1])
    V = _basis("V", V, M.shape[-1])
    X = _inputs(X, V.shape[0])
    return selected_outputs(M, U, X @ V, items, features)
