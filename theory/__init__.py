"""Exact learning dynamics of deep linear networks (numpy + scipy only, float64).

Conventions (sums over samples, η = 2·lr/(P·N_out) for torch's mean MSE, τ = 1/η in epochs) are stated once in
:mod:`theory.correlations`. The one exact theory state (any depth, width, init, Σˣˣ) is :mod:`theory.state`;
:func:`predictor` builds a prediction of every observable from it (or from the named approximations).
"""
from .balanced import BalancedSolution, balance_deviation, balanced_solution, measured_lambda
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
from .curvature import StableLR, balanced_best_fit, sharpness, stable_lr
from .deep_init import DeepInitPrediction, half_learning_distribution
from .deep_law import half_learning_exact_law
from .divergence import divergence_fraction, divergence_lr
from .errors import OrbitDivergenceError
from .finite_lr import max_monotone_eta, mode_strength_finite_lr, time_to_strength_finite_lr
from .finite_lr_coupled import coupled_modes_finite_lr
from .hierarchy import MAX_DENSE_ITEMS, MAX_ITEMS, HierarchySpectrum, hierarchy_spectrum
from .init import expected_initial_mode_strength, initial_mode_strength
from .modes import ORBIT_ESCAPE_FACTOR, mode_strength, mode_strength_discrete
from .ntk import ntk_matrix, ntk_relative_change
from .observables import loss_from_modes, outputs_from_modes, rsm_from_modes, w_tot_from_modes
from .predict import THEORIES, Prediction, predictor
from .projected import (
    extended_basis,
    project_weights,
    projected_modes_continuous,
    projected_modes_discrete,
    projected_trajectory_continuous,
    projected_trajectory_discrete,
)
from .stability import (
    DISCRETE_STEP_CAP,
    ESCAPE_ETA_S,
    escape_eta,
    escape_lr,
    max_stable_eta,
    max_stable_lr,
    time_to_learn,
)
from .state import ExactState, exact_flow, exact_state, exact_trajectory

__all__ = [
    # conventions
    "WHITENED_RTOL",
    "check_whitened",
    "io_correlations",
    "io_svd",
    "learning_rate_to_eta",
    "time_constant",
    # the exact state and the predictor
    "ExactState",
    "exact_state",
    "exact_trajectory",
    "exact_flow",
    "THEORIES",
    "OrbitDivergenceError",
    "Prediction",
    "predictor",
    # modes, stability, divergence, hierarchy, init
    "ORBIT_ESCAPE_FACTOR",
    "mode_strength",
    "mode_strength_discrete",
    "mode_strength_finite_lr",
    "time_to_strength_finite_lr",
    "max_monotone_eta",
    "coupled_modes_finite_lr",
    "DISCRETE_STEP_CAP",
    "ESCAPE_ETA_S",
    "escape_eta",
    "escape_lr",
    "max_stable_eta",
    "max_stable_lr",
    "time_to_learn",
    "StableLR",
    "stable_lr",
    "sharpness",
    "balanced_best_fit",
    "divergence_lr",
    "divergence_fraction",
    "MAX_DENSE_ITEMS",
    "MAX_ITEMS",
    "HierarchySpectrum",
    "hierarchy_spectrum",
    "expected_initial_mode_strength",
    "half_learning_distribution",
    "half_learning_exact_law",
    "DeepInitPrediction",
    "initial_mode_strength",
    # coupled (small-init approximation), projected (whitened exact), observables
    "growing_part",
    "initial_mode_matrix",
    "coupled_modes_discrete",
    "coupled_modes_continuous",
    "extended_basis",
    "project_weights",
    "projected_modes_discrete",
    "projected_modes_continuous",
    "projected_trajectory_discrete",
    "projected_trajectory_continuous",
    "w_tot_from_modes",
    "loss_from_modes",
    "rsm_from_modes",
    "outputs_from_modes",
    # λ-balanced init (lazy → rich), the NTK
    "BalancedSolution",
    "balanced_solution",
    "measured_lambda",
    "balance_deviation",
    "ntk_matrix",
    "ntk_relative_change",
]
