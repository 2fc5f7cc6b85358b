"""Exact learning dynamics of deep linear networks (numpy + scipy only, float64).

Conventions (sums over samples, η = 2·lr/(P·N_out) for torch's mean MSE, τ = 1/η in epochs) are stated once in
:mod:`theory.correlations`.
"""
from .correlations import (
    WHITENED_RTOL,
    check_whitened,
    io_correlations,
    io_svd,
    learning_rate_to_eta,
    time_constant,
)

__all__ = [
    "WHITENED_RTOL",
    "check_whitened",
    "io_correlations",
    "io_svd",
    "learning_rate_to_eta",
    "time_constant",
]
