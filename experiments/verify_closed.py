r"""``saxe verify``'s closed forms past Saxe's assumptions: the theories added to a run beside the exact state.

* ``closed_finite_lr`` — the finite-learning-rate closed form of the balanced decoupled modes
  (:func:`theory.mode_strength_finite_lr`, order 1) from the a priori a₀, every depth; the same assumptions as
  Saxe's ``continuous`` closed form except lr → 0. Refused (and then absent, with the reason in the report) where
  the approach to s alternates, ``L·η·s^{2−2/L} ≥ 1`` (:func:`theory.max_monotone_eta`).
* ``coupled_finite_lr`` — depth 2: the coupled (matrix) closed form from the actual init's mode matrix with the
  same per-mode finite-lr times (:func:`theory.coupled_modes_finite_lr`).
* ``modified_equation`` — depth 2, random init: SGD's modified equation (order 3 with its linear tail summed,
  :mod:`theory.modified_equation`) integrated from the actual init's weights, with its error estimate.
* ``balanced`` / ``balanced_first_order`` / ``balanced_second_order`` / ``balanced_finite_lr`` /
  ``balanced_modified`` — runs from a λ-balanced init (``init='balanced'``): the exact gradient-flow solution of
  :mod:`theory.balanced`, the same plus SGD's first- and second-order corrections (:mod:`theory.sgd_expansion`,
  errors O((ηs)²) and O((ηs)³)), the labelled finite-lr variant, and SGD's modified equation (error O((ηs)⁴)).

All are approximations of SGD (each assumes something the network does not do exactly), so they are reported,
never checked: their measured gaps are the point. Every prediction is the (T, r) singular values in descending
order, the layout of the training record; a ``balanced`` prediction also has the loss and the RSM.
"""
from __future__ import annotations

import numpy as np

import theory
from theory.state import is_whitened

from .metrics import as_singular_values


def finite_lr_predictions(spec, w0: list[np.ndarray], a0: float, p) -> tuple[dict, dict]:
    """(predictions, reasons): ``closed_finite_lr`` and, at depth 2, ``coupled_finite_lr``; a theory outside its
    domain is left out and its reason (the ValueError's message) returned instead. ``p``: the run's exact
    :class:`theory.Prediction` (its U, s, V and η)."""
    depth = len(spec.hidden) + 1
    U, s, V, eta = p.U, p.s, p.V, p.eta
    t = np.arange(spec.n_epochs + 1, dtype=np.float64)
    preds, reasons = {}, {}
    if not is_whitened(spec.X):
        return preds, {"closed_finite_lr": "the closed forms assume whitened inputs (Σˣˣ = I)"}
    try:
        a = theory.mode_strength_finite_lr(t[:, None], s, a0, eta, depth=depth)
        preds["closed_finite_lr"] = {"modes": as_singular_values(a)}
    except ValueError as exc:
        reasons["closed_finite_lr"] = str(exc)
    if depth == 2 and spec.init == "random":
        try:
            M0 = theory.initial_mode_matrix(w0, U, V)
            M = theory.coupled_modes_finite_lr(t, s, M0, eta)
            preds["coupled_finite_lr"] = {"modes": np.linalg.svd(M, compute_uv=False)}
        except ValueError as exc:
            reasons["coupled_finite_lr"] = str(exc)
        try:
            sol = theory.balanced_solution(spec.X, spec.Y, w0, spec.lr, method="modified")
            preds["modified_equation"] = _balanced_observables(spec, sol, t)
        except ValueError as exc:
            reasons["modified_equation"] = str(exc)
    return preds, reasons


def _balanced_observables(spec, sol, t: np.ndarray) -> dict:
    """Modes (descending singular values), loss and RSM of a :class:`theory.BalancedSolution` at epochs t; for
    ``method='modified'`` also its own ``estimate`` (of the mode matrix's entries, units of s_max) and
    ``exact_steps`` k₀ (the SGD steps it took by the exact map), from the same integration."""
    r = min(spec.X.shape[1], spec.Y.shape[1])
    out = {"modes": np.linalg.svd(sol.mode_matrix(t), compute_uv=False)[..., :r], "loss": sol.loss(t, spec.Y),
           "rsm": sol.rsm(t)}
    if sol.method == "modified":
        out.update(estimate=float(sol.estimated_error(t)), exact_steps=int(sol.exact_steps(t)))
    return out


def balanced_predictions(spec, w0: list[np.ndarray]) -> tuple[dict, dict]:
    """``balanced`` (the exact gradient-flow solution from the λ-balanced init), ``balanced_first_order`` and
    ``balanced_second_order`` (plus SGD's corrections to that order, :mod:`theory.sgd_expansion`),
    ``balanced_finite_lr`` and ``balanced_modified`` (SGD's modified equation, :mod:`theory.modified_equation`)."""
    t = np.arange(spec.n_epochs + 1, dtype=np.float64)
    preds, reasons = {}, {}
    for name, method in (("balanced", "continuous"), ("balanced_first_order", "first_order"),
                         ("balanced_second_order", "second_order"), ("balanced_finite_lr", "finite_lr"),
                         ("balanced_modified", "modified")):
        try:
            sol = theory.balanced_solution(spec.X, spec.Y, w0, spec.lr, method=method)
            preds[name] = _balanced_observables(spec, sol, t)
        except ValueError as exc:
            reasons[name] = str(exc)
    return preds, reasons
