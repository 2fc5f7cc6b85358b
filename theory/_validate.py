"""Argument checks shared by the theory modules.

Every public function of :mod:`theory` validates its input with these helpers so that bad input raises a
``ValueError`` that names the argument, what was expected and what arrived, instead of returning NaN or
failing deep inside numpy.
"""
from __future__ import annotations

import numbers

import numpy as np


def as_float_array(name: str, value, *, ndim: int | None = None, allow_inf: bool = False) -> np.ndarray:
    """``value`` as a float64 array; raise ``ValueError`` if it is not numeric, finite or of ``ndim``."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array, got {type(value).__name__}: {exc}") from None
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} must not contain NaN, got {int(np.isnan(arr).sum())} NaN entries")
    if not allow_inf and np.isinf(arr).any():
        raise ValueError(f"{name} must be finite, got {int(np.isinf(arr).sum())} infinite entries")
    return arr


def positive(name: str, value, *, allow_zero: bool = False) -> float:
    """``value`` as a float that is > 0 (or >= 0 with ``allow_zero``) and finite."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    v = float(value)
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {name}={value!r}")
    return v


def integer(name: str, value, *, minimum: int = 0) -> int:
    """``value`` as an ``int`` >= ``minimum`` (bools and non-integral floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={value!r}")
    return int(value)


def choice(name: str, value, options: tuple[str, ...]) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def times(name: str, t) -> np.ndarray:
    """Epochs ``t`` as a float64 array of values >= 0; ``np.inf`` allowed (the fixed point)."""
    arr = as_float_array(name, t, allow_inf=True)
    if (arr < 0).any():
        raise ValueError(f"{name} must be >= 0 (epochs since the start of training), got min {arr.min()!r}")
    return arr


def nonnegative_array(name: str, value, *, strict: bool = False) -> np.ndarray:
    """``value`` as a finite float64 array whose entries are all >= 0 (all > 0 with ``strict``)."""
    arr = as_float_array(name, value)
    bad = (arr <= 0) if strict else (arr < 0)
    if bad.any():
        bound = "> 0" if strict else ">= 0"
        raise ValueError(
            f"{name} must be {bound} everywhere, got {int(bad.sum())} offending entries, "
            f"e.g. {name}={arr[bad].flat[0]!r}"
        )
    return arr


def broadcast(**arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """The keyword arrays broadcast against each other (copies); ``ValueError`` naming them if they cannot."""
    try:
        return tuple(np.array(a, dtype=np.float64) for a in np.broadcast_arrays(*arrays.values()))
    except ValueError:
        shapes = ", ".join(f"{k}.shape={np.shape(v)}" for k, v in arrays.items())
        raise ValueError(f"{', '.join(arrays)} must broadcast against each other, got {shapes}") from None


def depth_and_widths(depth, weights, hidden) -> tuple[int, tuple]:
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
    for i, n in enumerate(from_weights or ()):
        if n < 1:
            raise ValueError(f"weights[{i}] must have at least 1 row (its hidden width), got shape "
                             f"{np.shape(weights[i])}")
    if hidden is None:
        widths = from_weights or ()
    elif isinstance(hidden, numbers.Integral):
        widths = (integer("hidden", hidden, minimum=1),) * (L - 1)
    else:
        widths = tuple(integer(f"hidden[{i}]", h, minimum=1) for i, h in enumerate(hidden))
    if from_weights is not None and widths != from_weights:
        raise ValueError(f"hidden={hidden!r} disagrees with the widths of the weights, {list(from_weights)}")
    return L, widths
