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
from .coupled import (
    coupled_modes_continuous,
    coupled_modes_discrete,
    growing_part,
    initial_mode_matrix,
)
from .projected import (
    extended_basis,
    project_weights,
    projected_modes_continuous,
    projected_modes_discrete,
    projected_trajectory_continuous,
    projected_trajectory_discrete,
)
from .hierarchy import MAX_DENSE_ITEMS, MAX_ITEMS, HierarchySpectrum, hierarchy_spectrum
from .init import expected_initial_mode_strength, initial_mode_strength
from .modes import DIVERGENCE_FACTOR, mode_strength, mode_strength_discrete
from .observables import loss_from_modes, outputs_from_modes, rsm_from_modes, w_tot_from_modes
from .predict import Prediction, predictor
from .stability import (
    DISCRETE_STEP_CAP,
    ESCAPE_ETA_S,
    escape_eta,
    escape_lr,
    max_stable_eta,
    max_stable_lr,
    time_to_learn,
)

__all__ = [
    "projected_trajectory_continuous",
    "projected_trajectory_discrete",
    "extended_basis",
    "WHITENED_RTOL",
    "check_whitened",
    "io_correlations",
    "io_svd",
    "learning_rate_to_eta",
    "time_constant",
    # modes, stability, hierarchy, init
    "DIVERGENCE_FACTOR",
    "mode_strength",
    "mode_strength_discrete",
    "DISCRETE_STEP_CAP",
    "ESCAPE_ETA_S",
    "escape_eta",
    "escape_lr",
    "max_stable_eta",
    "max_stable_lr",
    "time_to_learn",
    "MAX_DENSE_ITEMS",
    "MAX_ITEMS",
    "HierarchySpectrum",
    "hierarchy_spectrum",
    "expected_initial_mode_strength",
    "initial_mode_strength",
    # coupled, observables, predict
    "growing_part",
    "initial_mode_matrix",
    "coupled_modes_discrete",
    "coupled_modes_continuous",
    "project_weights",
    "projected_modes_discrete",
    "projected_modes_continuous",
    "w_tot_from_modes",
    "loss_from_modes",
    "rsm_from_modes",
    "outputs_from_modes",
    "Prediction",
    "predictor",
]
