r"""The tolerance model of ``saxe verify``: each run's float64 floor, and the theories checked against it.

**The floor.** Two exact float64 trainings of the same run (same data, init and lr) differ only in rounding: the
engine that trained the run and its twin (``reduced`` ↔ ``autograd``, :data:`TWIN`). Their distance, measured with
the same metrics as theory against training (:mod:`experiments.metrics`), is the run's *floor*: no theory can be
checked more finely than training itself is defined. It is large where a weak mode rises from a tiny init late in
a long run (rounding injected into it is amplified by its whole sigmoidal growth; measured 5.5e-6 … 1.5e-5 of a
weak mode's s between two engines on a 6 × 12 table), tiny on the tutorial (~1e-12).

**The tolerance** of an exact theory on a quantity is ``max(FLOOR_SAFETY × floor, EXACT_ABS_TOL)``. Mode errors are
normalised by s_max, not by each mode's own s: rounding is relative to the largest weights, so a weak mode's
rounding-level error divided by its own small s could fail a correct theory; a wrong theory on a weak mode is
still off by ≳ 1e-3 of s_max. Approximations (the closed form, the scalar map from a random init, the small-init
coupled map) are reported, never checked.
"""
from __future__ import annotations

import math

import numpy as np

import theory

from . import metrics as M

# Margin over the measured floor: the theory's own float64 iteration rounds as much as either engine does, so its
# distance to one training is of the floor's order; 10× keeps a correct theory inside while any modelling error
# (≥ 1e-6 relative: an O(γ²) term at γ = 1e-3, a wrong η, one epoch of lag) stays far outside.
FLOOR_SAFETY = 10.0
# Below this an exact theory always passes: the float64 agreement the toolkit promises. The runs measured so far
# (tutorial, shark, deep3, deep3_random, bottlenecks, γ up to 3) agree to ≤ 1e-11; 1e-9 leaves two decades.
EXACT_ABS_TOL = 1e-9
#: The engine whose training sets a run's floor, given the engine that trained it.
TWIN = {"reduced": "autograd", "autograd": "reduced"}
QUANTITIES = ("modes", "loss", "rsm", "illusion")


def rsm_scale(X, s, V, depth: int) -> np.ndarray:
    """The RSM a balanced network has once it has learned every mode, ``X V S^{2/L} Vᵀ Xᵀ``: the reference that
    RSM errors are divided by (data only, so every theory and the floor share it)."""
    return theory.rsm_from_modes(np.diag(s), V, X, depth)


def quantity_errors(pred: dict, meas, s, rsm_ref, track: bool) -> dict:
    """Each metric of :mod:`experiments.metrics` between a prediction (or a twin training) and a training."""
    out = {"modes": M.modes_error(pred["modes"], meas.modes, s)}
    if pred.get("loss") is not None:  # a closed form of the modes alone has no loss
        out["loss"] = M.loss_error(pred["loss"], meas.losses)
    if rsm_ref is not None and pred.get("rsm") is not None and meas.rsms is not None:
        out["rsm"] = M.rsm_error(pred["rsm"], meas.rsms, rsm_ref)
    if track and pred.get("illusion") is not None:
        out["illusion"] = M.illusion_error(pred["illusion"], meas.illusions)
    return out


def record_as_prediction(rec) -> dict:
    """A training record in the layout of a prediction, so the floor uses the theory's own metrics."""
    return {"modes": rec.modes, "loss": rec.losses, "rsm": rec.rsms, "illusion": rec.illusions}


def floor(rec, twin, s, rsm_ref, track: bool) -> dict:
    """The run's float64 floor per quantity: the metric between its training and the twin engine's."""
    return quantity_errors(record_as_prediction(twin), rec, s, rsm_ref, track)


def tolerance(floor_value: float) -> float:
    return max(FLOOR_SAFETY * floor_value, EXACT_ABS_TOL)


def predict(spec, w0: list[np.ndarray], a0: float) -> dict:
    """Every theory that applies to the run: name → {modes, loss, rsm, illusion, predictor} over its epochs."""
    depth = len(spec.hidden) + 1
    t = np.arange(spec.n_epochs + 1)
    build = {
        "continuous": dict(theory="scalar", a0=a0, depth=depth, method="continuous"),
        "discrete": dict(theory="scalar", a0=a0, depth=depth, method="discrete"),
        "exact": dict(theory="exact", weights=w0),
    }
    if depth == 2:
        build["coupled"] = dict(theory="coupled", weights=w0)
    out = {}
    for name, kw in build.items():
        p = theory.predictor(spec.X, spec.Y, spec.lr, **kw)
        d = {"modes": p.modes(t), "loss": p.loss(t), "predictor": p}
        if depth > 1:
            d["rsm"] = p.rsm(t)
        if spec.track is not None:
            d["illusion"] = np.asarray(p.outputs(t, items=[spec.track[0]], features=[spec.track[1]])).reshape(-1)
        out[name] = d
    return out


def evaluate(spec, rec, preds: dict, run_floor: dict | None, float32: bool) -> tuple[list[dict], dict]:
    """Checks ``{run}.{quantity}.{theory}`` (value, tolerance, passed) and half-learning epochs per theory."""
    p = preds["exact"]["predictor"]
    s, depth = p.s, len(spec.hidden) + 1
    ref = rsm_scale(spec.X, s, p.V, depth) if depth > 1 else None
    checks, halves = [], {"measured": M.half_learning_epochs(rec.modes, s)}
    for th, pr in preds.items():
        checked = th in spec.checked and not float32 and run_floor is not None
        for q, v in quantity_errors(pr, rec, s, ref, spec.track is not None).items():
            tol = tolerance(run_floor[q]) if checked else None
            passed = None if tol is None else bool(math.isfinite(v) and v <= tol)
            checks.append({"name": f"{spec.name}.{q}.{th}", "value": v, "tolerance": tol, "passed": passed,
                           "floor": None if run_floor is None else run_floor.get(q)})
        halves[th] = M.half_learning_epochs(pr["modes"], s)
    # exact (fractional) continuous-time half-learning epoch per mode, in SVD order (mode 1 = largest s)
    halves["continuous_exact"] = np.asarray(preds["continuous"]["predictor"].time_to_learn(0.5), dtype=np.float64)
    return checks, halves
