"""``saxe verify``: train real networks and measure, for every recorded quantity, how far each theory is.

Runs (default): ``tutorial`` (8-30-10000, lr = 100, γ = 1e-12, 250 epochs, the tutorial's tree data),
``shark`` (the same with the has_bones feature appended; item 0, last feature tracked), ``deep3`` (two hidden
layers of 30, lr below the depth-3 stable bound, decoupled balanced init: the scalar theory is exact) and
``deep3_random`` (the same from a random init; reported only). ``--data items.csv`` runs your own table.

Theories: ``continuous`` (Saxe's closed form, a priori a₀), ``discrete`` (the exact scalar SGD map, same a₀),
``coupled`` (the matrix map from the actual initial weights). Metric names: ``{run}.{quantity}.{theory}``
(see :mod:`experiments.metrics`). Exit code 0 if every check with a tolerance passes, 1 if one fails, 2 for
bad input. Results (``metrics.json``, ``report.md``, figures) are written atomically.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import saxe
import theory

from . import metrics as M
from .cli import UsageError
from .progress import epoch_bar, items_bar
from .report import package_versions, write_json, write_text
from .verify_report import render_report, save_run_figures

THEORIES = ("continuous", "discrete", "coupled")

# Tolerances (relative, see experiments.metrics). The coupled map is exact for weights of the form
# W1 = Z Vᵀ, W2 = U Zᵀ; a random init of scale γ departs from it by the decaying part and the component of W2
# outside span(U), both O(γ²)-small against learned modes (1e-24 at γ = 1e-12), so what remains is float64
# rounding amplified through the sigmoidal transient (measured ≲ 1e-9). 1e-6 leaves three decades of headroom
# and still fails on any modelling error (a wrong η convention or an off-by-one epoch is ≥ 1e-2).
COUPLED_TOL = 1e-6
# Exact theories: from a decoupled balanced init the scalar map is exact SGD, and at depth ≠ 2 the coupled theory
# iterates the projected weights (theory.projected.project_weights), exact SGD for any init; only float64 rounding
# of the iteration remains, the same budget as above.
EXACT_TOL = 1e-6
# Above this init scale the O(γ²) terms the coupled map neglects may reach the tolerance (γ² ≈ 1e-12 relative at
# γ = 1e-6), so the coupled theory is only reported, not checked, for larger γ.
COUPLED_CHECK_MAX_GAMMA = 1e-6
# deep3: lr as a fraction of the depth-3 stable bound, and the decoupled initial strength of every mode.
DEEP3_LR_FRACTION = 0.6
DEEP3_A0 = 1e-4
# --data: default lr as a fraction of the stable bound, and the fraction of s the slowest mode must reach.
DATA_LR_FRACTION = 0.5
LEARNED_FRACTION = 0.99
MAX_DEFAULT_EPOCHS = 200_000

HAS_BONES = (-1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0)
SHARK_ITEMS = ("Shark", "Tuna", "Robin", "Canary", "Rose", "Daisy", "Pine", "Oak")


@dataclass
class RunSpec:
    name: str
    X: np.ndarray
    Y: np.ndarray
    item_names: tuple[str, ...]
    hidden: list[int]
    lr: float
    gamma: float
    n_epochs: int
    seed: int
    init: str = "random"  # or "decoupled"
    a0: float | None = None  # decoupled init strength
    track: tuple[int, int] | None = None
    track_label: str = ""
    checked: dict[str, float] = field(default_factory=dict)  # theory → tolerance
    description: str = ""


def add_arguments(p) -> None:
    p.add_argument("--out", default="verify_out", help="output folder (default: verify_out)")
    p.add_argument("--data", help="items × features CSV (header of feature names, first column item names)")
    p.add_argument("--lr", type=float, help="learning rate (--data: default a safe fraction of the stable bound)")
    p.add_argument("--epochs", type=int, help="number of epochs (--data: default enough for the slowest mode)")
    p.add_argument("--gamma", type=float, help="init scale γ (default 1e-12)")
    p.add_argument("--hidden", type=int, help="hidden width (default 30)")
    p.add_argument("--depth", type=int, help="number of weight matrices for --data (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed for data and init (default 0)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="training precision (float32 reproduces the tutorial; checks become reported-only)")
    p.add_argument("--engine", choices=saxe.ENGINES, default="auto", help="training engine (default auto)")
    p.add_argument("--features", type=int, default=10000, help="tree features for the default runs")
    p.add_argument("--quick", action="store_true", help="reduced run for tests (2000 features, fewer figures)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or summary")


def _check_args(args) -> None:
    for name in ("lr", "gamma"):
        v = getattr(args, name)
        if v is not None and not (math.isfinite(v) and (v > 0 if name == "lr" else v >= 0)):
            raise UsageError(f"--{name} must be {'> 0' if name == 'lr' else '>= 0'} and finite, got {v}")
    for name, lo in (("epochs", 1), ("hidden", 1), ("depth", 1), ("features", 1)):
        v = getattr(args, name)
        if v is not None and v < lo:
            raise UsageError(f"--{name} must be >= {lo}, got {v}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")


def _a_priori_a0(spec: RunSpec) -> float:
    if spec.init == "decoupled":
        return float(spec.a0)
    sizes = [spec.X.shape[1], *spec.hidden, spec.Y.shape[1]]
    return float(theory.expected_initial_mode_strength(spec.gamma, sizes))


def default_specs(args) -> list[RunSpec]:
    n_features = 2000 if args.quick else args.features
    labels, features = saxe.generate_hsd(n_features=n_features, rng=args.seed)
    gamma = 1e-12 if args.gamma is None else args.gamma
    hidden = 30 if args.hidden is None else args.hidden
    lr = 100.0 if args.lr is None else args.lr
    epochs = 250 if args.epochs is None else args.epochs
    items = saxe.ITEM_NAMES
    coupled = {"coupled": COUPLED_TOL} if gamma <= COUPLED_CHECK_MAX_GAMMA else {}
    specs = [
        RunSpec("tutorial", labels, features, items, [hidden], lr, gamma, epochs, args.seed, checked=coupled,
                description=f"the tutorial: {labels.shape[1]}-{hidden}-{features.shape[1]}, lr={lr:g}, γ={gamma:g}"),
        RunSpec("shark", labels, saxe.add_feature(features, HAS_BONES), SHARK_ITEMS, [hidden], lr, gamma, epochs,
                args.seed, track=(0, features.shape[1]), track_label="Shark has_bones", checked=coupled,
                description="the tutorial's data plus has_bones (false for the shark), output tracked"),
    ]
    s = theory.io_svd(labels, features)[1]
    P, n_out = features.shape
    lr3 = DEEP3_LR_FRACTION * float(theory.max_stable_lr(s[0], P, n_out, depth=3)) if args.lr is None else lr
    eta3 = theory.learning_rate_to_eta(lr3, P, n_out)
    t_learn = theory.time_to_learn(LEARNED_FRACTION, s.min(), DEEP3_A0, eta=eta3, depth=3, method="discrete")
    epochs3 = int(np.ceil(float(np.max(t_learn)) * 1.1)) if args.epochs is None else epochs
    # random init of the same a priori strength: a0 scales as γ^L, so invert with one evaluation
    sizes3 = [labels.shape[1], hidden, hidden, n_out]
    gamma3 = (DEEP3_A0 / float(theory.expected_initial_mode_strength(1.0, sizes3))) ** (1 / 3)
    specs += [
        RunSpec("deep3", labels, features, items, [hidden, hidden], lr3, 0.0, epochs3, args.seed, init="decoupled",
                a0=DEEP3_A0, checked={"discrete": EXACT_TOL, "coupled": EXACT_TOL},
                description=f"depth 3 ({hidden}, {hidden} hidden), lr={lr3:.4g} "
                            f"({DEEP3_LR_FRACTION:g}× the stable bound), decoupled balanced init a₀={DEEP3_A0:g}"),
        RunSpec("deep3_random", labels, features, items, [hidden, hidden], lr3, gamma3, epochs3, args.seed,
                checked={"coupled": EXACT_TOL},
                description=f"depth 3 from a random init of scale γ={gamma3:.3g} (a priori a₀={DEEP3_A0:g})"),
    ]
    return specs


def data_spec(args) -> RunSpec:
    table = saxe.load_items_csv(args.data)  # DataFileError (a ValueError) → exit 2
    X, Y = table.inputs, table.features
    depth = 2 if args.depth is None else args.depth
    hidden = [30 if args.hidden is None else args.hidden] * (depth - 1)
    gamma = 1e-12 if args.gamma is None else args.gamma
    U, s, V = theory.io_svd(X, Y)
    if s[0] <= 0:
        raise UsageError(f"{args.data}: every feature is zero, there is nothing to learn")
    P, n_out = Y.shape
    lr = args.lr
    if lr is None:
        lr = DATA_LR_FRACTION * float(theory.max_stable_lr(s[0], P, n_out, depth=depth))
    epochs = args.epochs
    if epochs is None:
        a0 = float(theory.expected_initial_mode_strength(gamma, [X.shape[1], *hidden, n_out]))
        s_min = s[s > 1e-12 * s[0]].min()
        eta = theory.learning_rate_to_eta(lr, P, n_out)
        t = float(np.max(theory.time_to_learn(LEARNED_FRACTION, s_min, max(a0, 1e-300), eta=eta, depth=depth,
                                              method="discrete")))
        if not math.isfinite(t) or t > MAX_DEFAULT_EPOCHS:
            raise UsageError(f"the slowest mode of {args.data} would need more than {MAX_DEFAULT_EPOCHS} epochs at "
                             f"γ={gamma:g}, depth {depth}: raise --gamma or set --epochs")
        epochs = max(10, int(math.ceil(t * 1.1)))
    checked = {"coupled": COUPLED_TOL} if gamma <= COUPLED_CHECK_MAX_GAMMA or depth != 2 else {}
    return RunSpec(table.name, X, Y, table.item_names, hidden, lr, gamma, epochs, args.seed, checked=checked,
                   description=f"{args.data}: {P} items × {n_out} features, depth {depth}, lr={lr:.4g}, γ={gamma:g}")


def train_run(spec: RunSpec, dtype: torch.dtype, engine: str, quiet: bool):
    net = saxe.make_net(spec.X.shape[1], spec.hidden, spec.Y.shape[1]).to(dtype)
    gen = torch.Generator().manual_seed(spec.seed)
    if spec.init == "decoupled":
        U, _, V = theory.io_svd(spec.X, spec.Y)
        saxe.decoupled_init_(net, U, V, spec.a0, generator=gen)
    else:
        saxe.initializer_(net, spec.gamma, generator=gen)
    w0 = [w.detach().double().cpu().numpy().copy() for w in saxe.weights(net)]
    i, j = spec.track if spec.track is not None else (0, -1)
    with epoch_bar(spec.n_epochs + 1, f"train {spec.name}", quiet) as bar:
        rec = saxe.train(net, spec.X, spec.Y, spec.n_epochs, spec.lr, illusory_i=i, illusory_j=j, engine=engine,
                         progress=bar)
    return rec, w0


def predict_run(spec: RunSpec, w0: list[np.ndarray]) -> dict:
    depth = len(spec.hidden) + 1
    t = np.arange(spec.n_epochs + 1)
    a0 = _a_priori_a0(spec)
    preds = {
        "continuous": theory.predictor(spec.X, spec.Y, spec.lr, depth=depth, a0=a0, method="continuous"),
        "discrete": theory.predictor(spec.X, spec.Y, spec.lr, depth=depth, a0=a0, method="discrete"),
        "coupled": theory.predictor(spec.X, spec.Y, spec.lr, depth=depth, weights=w0, method="discrete",
                                    coupled=True),
    }
    out = {}
    for name, p in preds.items():
        d = {"modes": p.modes(t), "loss": p.loss(t), "predictor": p}
        if depth > 1:
            d["rsm"] = p.rsm(t)
        if spec.track is not None:
            d["illusion"] = np.asarray(p.outputs(t, items=[spec.track[0]], features=[spec.track[1]])).reshape(-1)
        out[name] = d
    return out


def evaluate(spec: RunSpec, rec, preds: dict, float32: bool) -> tuple[list[dict], dict]:
    s = preds["coupled"]["predictor"].s
    depth = len(spec.hidden) + 1
    rsm_ref = preds["coupled"]["predictor"].rsm(np.array([np.inf]))[0] if depth > 1 else None
    checks, halves = [], {"measured": M.half_learning_epochs(rec.modes, s)}
    for th in THEORIES:
        p = preds[th]
        values = {"modes": M.modes_error(p["modes"], rec.modes, s), "loss": M.loss_error(p["loss"], rec.losses)}
        if depth > 1 and rec.rsms is not None:
            values["rsm"] = M.rsm_error(p["rsm"], rec.rsms, rsm_ref)
        if spec.track is not None:
            values["illusion"] = M.illusion_error(p["illusion"], rec.illusions)
        tol = None if float32 else spec.checked.get(th)
        for q, v in values.items():
            passed = None if tol is None else bool(math.isfinite(v) and v <= tol)
            checks.append({"name": f"{spec.name}.{q}.{th}", "value": v, "tolerance": tol, "passed": passed})
        halves[th] = M.half_learning_epochs(p["modes"], s)
    # exact (fractional) continuous-time half-learning epoch per mode, in SVD order (mode 1 = largest s)
    halves["continuous_exact"] = np.asarray(preds["continuous"]["predictor"].time_to_learn(0.5), dtype=np.float64)
    return checks, halves


def run(args) -> int:
    _check_args(args)
    specs = [data_spec(args)] if args.data else default_specs(args)  # all input validated before any write
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    engine = args.engine if not (args.dtype == "float32" and args.engine == "auto") else "autograd"
    all_checks, runs, figures = [], {}, {}
    t_start = time.perf_counter()
    for spec in items_bar(specs, "verify", args.quiet):
        rec, w0 = train_run(spec, dtype, engine, args.quiet)
        t0 = time.perf_counter()
        preds = predict_run(spec, w0)
        t_theory = time.perf_counter() - t0
        checks, halves = evaluate(spec, rec, preds, args.dtype == "float32")
        all_checks += checks
        figures[spec.name] = save_run_figures(out, spec, rec, preds, quick=args.quick)
        runs[spec.name] = {
            "description": spec.description,
            "config": {"items": list(spec.item_names), "n_items": spec.X.shape[0], "n_features": spec.Y.shape[1],
                       "hidden": spec.hidden, "depth": len(spec.hidden) + 1, "lr": spec.lr, "gamma": spec.gamma,
                       "init": spec.init, "a0_decoupled": spec.a0, "a0_a_priori": _a_priori_a0(spec),
                       "n_epochs": spec.n_epochs, "dtype": args.dtype, "engine": rec.info["engine"],
                       "track": spec.track, "track_label": spec.track_label,
                       "eta": theory.learning_rate_to_eta(spec.lr, *spec.Y.shape),
                       "tau": theory.time_constant(spec.lr, *spec.Y.shape),
                       "tolerances": spec.checked},
            "seed": spec.seed,
            "s": preds["coupled"]["predictor"].s,
            "half_learning_epochs": halves,
            "timings": {"train_s": rec.info["seconds"], "theory_s": t_theory},
            "final_loss": float(rec.losses[-1]),
            "figures": figures[spec.name],
        }
    failed = [c["name"] for c in all_checks if c["passed"] is False]
    result = {"checks": all_checks, "runs": runs, "passed": not failed, "failed": failed,
              "versions": package_versions(), "total_seconds": time.perf_counter() - t_start,
              "command": {k: v for k, v in vars(args).items() if not k.startswith("_")}}
    write_text(out / "report.md", render_report(result, out))
    write_json(out / "metrics.json", result)  # last: its presence marks a complete run
    if not args.quiet:
        _print_summary(result, out)
    return 1 if failed else 0


def _print_summary(result: dict, out: Path) -> None:
    width = max(len(c["name"]) for c in result["checks"])
    for c in result["checks"]:
        tol = "reported" if c["tolerance"] is None else f"≤ {c['tolerance']:.0e}"
        mark = {True: "PASS", False: "FAIL", None: "    "}[c["passed"]]
        print(f"{mark}  {c['name']:<{width}}  {c['value']:.3e}  ({tol})")
    n_checked = sum(c["passed"] is not None for c in result["checks"])
    print(f"{n_checked - len(result['failed'])}/{n_checked} checks passed; report: {out / 'report.md'}, "
          f"metrics: {out / 'metrics.json'} ({result['total_seconds']:.1f} s)")
