"""``saxe verify``: train real networks and measure, for every recorded quantity, how far each theory is.

Runs (default): ``tutorial`` (8-30-10000, lr = 100, γ = 1e-12, 250 epochs, the tutorial's tree data),
``shark`` (the same with the has_bones feature appended; item 0, last feature tracked), ``deep3`` (two hidden
layers of 30, lr below the depth-3 stable bound, decoupled balanced init: the scalar theory is exact) and
``deep3_random`` (the same from a random init; reported only). ``--data items.csv`` runs your own table.

Theories: ``exact`` (the one exact theory state from the actual initial weights, :mod:`theory.state`; checked),
``coupled`` (depth 2: the small-init Z-map, a named approximation; reported), ``discrete`` (the scalar SGD map from
the a priori a₀; checked only from the decoupled init of ``deep3``, where it is exact) and ``continuous`` (Saxe's
closed form, same a₀; reported). Each checked number must lie within ``max(10 × the run's float64 floor, 1e-9)``,
the floor being the distance between the run's training and a twin training by the other engine
(:mod:`experiments.verify_checks`). Metric names: ``{run}.{quantity}.{theory}`` (see :mod:`experiments.metrics`).
Exit code 0 if every check with a tolerance passes, 1 if one fails, 2 for bad input. Results (``metrics.json``,
``report.md``, figures) are written atomically.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import saxe
import theory
from saxe.train import torch_threads

from . import verify_checks as C
from . import verify_closed as VC
from . import verify_ensemble as VE
from .cli import MAX_SEED, UsageError
from .outdir import prepared_out
from .progress import epoch_bar, items_bar
from .report import package_versions, write_json, write_text
from .tutorial import default_lr
from .verify_report import render_report, save_run_figures

THEORIES = ("exact", "coupled", "discrete", "continuous")

# deep3: lr as a fraction of the depth-3 stable bound, and the decoupled initial strength of every mode (the
# setting of the seed ensembles too, experiments.verify_ensemble).
DEEP3_LR_FRACTION = VE.DEEP_LR_FRACTION
DEEP3_A0 = VE.DEEP_A0
# balanced: a λ-balanced init at a large scale (λ that of the tutorial's rule at this γ), where the small-init
# theories are far off (the init is not small) and the λ-balanced solution is exact in continuous time.
BALANCED_GAMMA = 3.0
# --data: default lr as a fraction of the stable bound, and the fraction of s the slowest mode must reach.
# 0.45, not 0.5: at depth 2 half the stable bound is exactly L·η·s₁ = 1, the edge of the finite-lr closed form's
# monotone range, where one ulp decided whether closed_finite_lr and coupled_finite_lr were reported at all.
DATA_LR_FRACTION = 0.45
LEARNED_FRACTION = 0.99
MAX_DEFAULT_EPOCHS = 200_000
# --data: the default hidden width, at least the number of items (≥ the rank of Σʸˣ: no bottleneck).
DEFAULT_HIDDEN = 30
# --data with a bottleneck: default epochs run until the predicted loss has covered all but this fraction of its
# way down to the least loss the widths allow.
BOTTLENECK_SETTLED = 1e-4

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
    init: str = "random"  # or "decoupled", "balanced"
    a0: float | None = None  # decoupled init strength
    lam: float | None = None  # λ of a λ-balanced init
    track: tuple[int, int] | None = None
    track_label: str = ""
    checked: tuple[str, ...] = ("exact",)  # theories checked against the floor-based tolerance
    description: str = ""


def add_arguments(p) -> None:
    p.add_argument("--out", default="verify_out", help="output folder (default: verify_out); must be empty or new")
    p.add_argument("--force", action="store_true",
                   help="replace the results of a previous run in --out (its metrics.json is removed first)")
    p.add_argument("--data", help="items × features CSV (header of feature names, first column item names)")
    p.add_argument("--lr", type=float, help="learning rate (--data: default a safe fraction of the stable bound)")
    p.add_argument("--epochs", type=int, help="number of epochs (--data: default enough for the slowest mode)")
    p.add_argument("--gamma", type=float, help="init scale γ (default 1e-12)")
    p.add_argument("--hidden", type=int, help="hidden width (default 30; --data: max(30, number of items)); "
                                              "a width below the rank of the data is a bottleneck")
    p.add_argument("--depth", type=int, help="number of weight matrices for --data (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed for data and init (default 0)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="training precision of the runs (float32 reproduces the tutorial; their checks become "
                        "reported-only; the seed ensembles always train in float64 and stay checked)")
    p.add_argument("--engine", choices=saxe.ENGINES, default="auto", help="training engine (default auto)")
    p.add_argument("--features", type=int, help="tree features for the default runs (default 10000; --quick: 2000)")
    p.add_argument("--quick", action="store_true", help="reduced run for tests (2000 features unless --features is "
                   "given, fewer figures)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or summary")


def _check_args(args) -> None:
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise UsageError(f"--lr must be > 0 and finite, got {args.lr}")
    if args.gamma is not None and not (math.isfinite(args.gamma) and args.gamma > 0):
        raise UsageError(f"--gamma must be > 0 and finite (a zero init sits on the saddle W = 0 for ever), "
                         f"got {args.gamma}")
    for name, lo in (("epochs", 1), ("hidden", 1), ("depth", 1), ("features", 1)):
        v = getattr(args, name)
        if v is not None and v < lo:
            raise UsageError(f"--{name} must be >= {lo}, got {v}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    if args.seed > MAX_SEED:
        raise UsageError(f"--seed must be <= {MAX_SEED} (a 64-bit seed), got {args.seed}")


def _a_priori_a0(spec: RunSpec) -> float:
    if spec.init == "decoupled":
        return float(spec.a0)
    sizes = [spec.X.shape[1], *spec.hidden, spec.Y.shape[1]]
    return float(theory.expected_initial_mode_strength(spec.gamma, sizes))


def default_specs(args) -> list[RunSpec]:
    n_features = args.features if args.features is not None else (2000 if args.quick else 10000)
    labels, features = saxe.generate_hsd(n_features=n_features, rng=args.seed)
    gamma = 1e-12 if args.gamma is None else args.gamma
    hidden = 30 if args.hidden is None else args.hidden
    lr = default_lr(n_features) if args.lr is None else args.lr  # the tutorial's, scaled to keep its η·s
    epochs = 250 if args.epochs is None else args.epochs
    items = saxe.ITEM_NAMES
    specs = [
        RunSpec("tutorial", labels, features, items, [hidden], lr, gamma, epochs, args.seed,
                description=f"the tutorial: {labels.shape[1]}-{hidden}-{features.shape[1]}, lr={lr:g}, γ={gamma:g}"),
        RunSpec("shark", labels, saxe.add_feature(features, HAS_BONES), SHARK_ITEMS, [hidden], lr, gamma, epochs,
                args.seed, track=(0, features.shape[1]), track_label="Shark has_bones",
                description="the tutorial's data plus has_bones (false for the shark), output tracked"),
    ]
    s = theory.io_svd(labels, features)[1]
    P, n_out = features.shape
    # the deep runs' setting, shared with the seed ensembles; the random init has the same a priori strength
    lr3, gamma3, _ = VE.deep_setting(s, P, n_out, labels.shape[1], hidden, 3)
    lr3 = lr3 if args.lr is None else lr
    eta3 = theory.learning_rate_to_eta(lr3, P, n_out)
    t_learn = theory.time_to_learn(LEARNED_FRACTION, s.min(), DEEP3_A0, eta=eta3, depth=3, method="discrete")
    epochs3 = int(np.ceil(float(np.max(t_learn)) * 1.1)) if args.epochs is None else epochs
    specs += [
        RunSpec("deep3", labels, features, items, [hidden, hidden], lr3, 0.0, epochs3, args.seed, init="decoupled",
                a0=DEEP3_A0, checked=("exact", "discrete"),
                description=f"depth 3 ({hidden}, {hidden} hidden), lr={lr3:.4g} "
                            f"({DEEP3_LR_FRACTION:g}× the stable bound), decoupled balanced init a₀={DEEP3_A0:g}"),
        RunSpec("deep3_random", labels, features, items, [hidden, hidden], lr3, gamma3, epochs3, args.seed,
                description=f"depth 3 from a random init of scale γ={gamma3:.3g} (a priori a₀={DEEP3_A0:g})"),
    ]
    a0_tut = float(theory.expected_initial_mode_strength(gamma, [labels.shape[1], hidden, n_out]))
    specs.append(RunSpec("tutorial_decoupled", labels, features, items, [hidden], lr, 0.0, epochs, args.seed,
                         init="decoupled", a0=a0_tut, checked=("exact", "discrete"),
                         description=f"the tutorial's net, lr={lr:g}, from the decoupled balanced init with the "
                                     f"tutorial's a priori a₀={a0_tut:.3g}: the scalar SGD map is exact, so the "
                                     "closed forms' gaps are theirs alone"))
    lam = _tutorial_rule_lambda(BALANCED_GAMMA, [labels.shape[1], hidden, n_out])
    specs.append(RunSpec("balanced", labels, features, items, [hidden], lr, BALANCED_GAMMA, epochs, args.seed,
                         init="balanced", lam=lam,
                         description=f"λ-balanced init (W₂ᵀW₂ − W₁W₁ᵀ = λI, λ={lam:.4g}, that of the tutorial's rule) "
                                     f"at γ={BALANCED_GAMMA:g}, lr={lr:g}"))
    return specs


def _tutorial_rule_lambda(gamma: float, sizes: list[int]) -> float:
    """E[tr(W₂ᵀW₂ − W₁W₁ᵀ)]/N_h of the tutorial's init rule: γ²(N_out/(N_h+N_out) − N_in/(N_in+N_h))."""
    n_in, n_h, n_out = sizes
    return gamma**2 * (n_out / (n_h + n_out) - n_in / (n_in + n_h))


def data_spec(args) -> RunSpec:
    table = saxe.load_items_csv(args.data)  # DataFileError (a ValueError) → exit 2
    X, Y = table.inputs, table.features
    depth = 2 if args.depth is None else args.depth
    P, n_out = Y.shape
    hidden = [max(DEFAULT_HIDDEN, P) if args.hidden is None else args.hidden] * (depth - 1)
    gamma = 1e-12 if args.gamma is None else args.gamma
    U, s, V = theory.io_svd(X, Y)
    if s[0] <= 0:
        raise UsageError(f"{args.data}: every feature is zero, there is nothing to learn")
    lr = args.lr
    if lr is None:
        lr = DATA_LR_FRACTION * float(theory.stable_lr(X, Y, depth=depth, hidden=hidden or None).learned)
    epochs = args.epochs
    if epochs is None:
        a0 = float(theory.expected_initial_mode_strength(gamma, [X.shape[1], *hidden, n_out]))
        learnable = s[s > 1e-12 * s[0]][: min(hidden, default=s.size)]
        eta = theory.learning_rate_to_eta(lr, P, n_out)
        t = float(np.max(theory.time_to_learn(LEARNED_FRACTION, learnable.min(), max(a0, 1e-300), eta=eta,
                                              depth=depth, method="discrete")))
        if not math.isfinite(t) or t > MAX_DEFAULT_EPOCHS:
            raise UsageError(f"the slowest mode of {args.data} would need more than {MAX_DEFAULT_EPOCHS} epochs at "
                             f"γ={gamma:g}, depth {depth}: raise --gamma or set --epochs")
        epochs = max(10, int(math.ceil(t * 1.1)))
    spec = RunSpec(table.name, X, Y, table.item_names, hidden, lr, gamma, epochs, args.seed,
                   description=f"{args.data}: {P} items × {n_out} features, depth {depth}"
                               + (f", hidden {hidden[0]}" if hidden else "") + f", lr={lr:.4g}, γ={gamma:g}")
    if args.epochs is None and min(hidden, default=P) < int(np.sum(s > 1e-12 * s[0])):
        spec.n_epochs = _bottleneck_epochs(spec)
    return spec


def _bottleneck_epochs(spec: RunSpec) -> int:
    """Default epochs behind a bottleneck: the modes at its edge compete for the last hidden units far more slowly
    than they rise, so run until the exact theory's loss is within BOTTLENECK_SETTLED of the least loss these
    widths allow (relative to the distance from the start), at least the epochs the rise needs."""
    p = theory.predictor(spec.X, spec.Y, spec.lr, weights=init_net(spec)[1])
    best, start = p.best_loss(), float(p.loss(0))
    t = spec.n_epochs
    while float(p.loss(t)) - best > BOTTLENECK_SETTLED * (start - best):
        if t >= MAX_DEFAULT_EPOCHS:
            raise UsageError(f"{spec.name}: the modes at the edge of the bottleneck (hidden {min(spec.hidden)}) would "
                             f"need more than {MAX_DEFAULT_EPOCHS} epochs to settle: set --epochs")
        t = min(2 * t, MAX_DEFAULT_EPOCHS)
    return t


def _check_stable(specs: list[RunSpec]) -> None:
    """Refuse, before anything is trained or written, an lr at which SGD cannot settle: no theory is exact there."""
    for spec in specs:
        bound = theory.stable_lr(spec.X, spec.Y, depth=len(spec.hidden) + 1, hidden=spec.hidden or None).learned
        if spec.lr > bound:
            raise UsageError(f"--lr {spec.lr:g} is above the stable bound {bound:.4g} of run {spec.name} (depth "
                             f"{len(spec.hidden) + 1}): SGD cannot settle there and no theory is exact; choose an lr "
                             f"below it")


def init_net(spec: RunSpec, dtype: torch.dtype = torch.float64):
    """The run's network at its initial weights, and those weights as float64 numpy copies."""
    net = saxe.make_net(spec.X.shape[1], spec.hidden, spec.Y.shape[1]).to(dtype)
    gen = torch.Generator().manual_seed(spec.seed)
    if spec.init == "decoupled":
        U, _, V = theory.io_svd(spec.X, spec.Y)
        saxe.decoupled_init_(net, U, V, spec.a0, generator=gen)
    elif spec.init == "balanced":
        saxe.balanced_init_(net, float(spec.lam), gamma=spec.gamma, generator=gen)
    else:
        saxe.initializer_(net, spec.gamma, generator=gen)
    return net, [w.detach().double().cpu().numpy().copy() for w in saxe.weights(net)]


def train_run(spec: RunSpec, dtype: torch.dtype, engine: str, quiet: bool, label: str = "train"):
    net, w0 = init_net(spec, dtype)
    i, j = spec.track if spec.track is not None else (0, -1)
    with epoch_bar(spec.n_epochs + 1, f"{label} {spec.name}", quiet) as bar:
        rec = saxe.train(net, spec.X, spec.Y, spec.n_epochs, spec.lr, illusory_i=i, illusory_j=j, engine=engine,
                         progress=bar)
    return rec, w0


def run(args) -> int:
    _check_args(args)
    if args.depth is not None and not args.data:
        raise UsageError("--depth applies to --data runs only (the default runs have fixed depths 2 and 3)")
    specs = [data_spec(args)] if args.data else default_specs(args)  # all input validated before any write
    _check_stable(specs)
    # one torch/BLAS thread throughout (the seed ensembles call the batched engine directly): these are small
    # matrices, and with 2 threads on a 2-core machine whose other core is busy the depth-3 ensemble took 64 s
    # instead of 2.9 s (saxe.train already runs with 1 thread by default)
    with prepared_out(args.out, force=args.force) as out, torch_threads(1):
        return _run(args, specs, out)


def _run(args, specs: list[RunSpec], out: Path) -> int:
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    engine = args.engine if not (args.dtype == "float32" and args.engine == "auto") else "autograd"
    all_checks, runs, figures = [], {}, {}
    t_start = time.perf_counter()
    for spec in items_bar(specs, "verify", args.quiet):
        rec, w0 = train_run(spec, dtype, engine, args.quiet)
        twin_engine = C.TWIN[rec.info["engine"]]
        twin, _ = train_run(spec, dtype, twin_engine, args.quiet, label="twin")
        t0 = time.perf_counter()
        preds = C.predict(spec, w0, _a_priori_a0(spec))
        extra, absent = VC.finite_lr_predictions(spec, w0, _a_priori_a0(spec), preds["exact"]["predictor"])
        if spec.init == "balanced":
            more, why = VC.balanced_predictions(spec, w0)
            extra.update(more)
            absent.update(why)
        preds.update(extra)
        t_theory = time.perf_counter() - t0
        p = preds["exact"]["predictor"]
        depth = len(spec.hidden) + 1
        ref = C.rsm_scale(spec.X, p.s, p.V, depth) if depth > 1 else None
        run_floor = C.floor(rec, twin, p.s, ref, spec.track is not None)
        checks, halves = C.evaluate(spec, rec, preds, run_floor, args.dtype == "float32")
        all_checks += checks
        figures[spec.name] = save_run_figures(out, spec, rec, preds, quick=args.quick, s=p.s,
                                              rsm_scale=float(np.abs(ref).max()) if ref is not None else None)
        runs[spec.name] = {
            "description": spec.description,
            "config": {"items": list(spec.item_names), "n_items": spec.X.shape[0], "n_features": spec.Y.shape[1],
                       "hidden": spec.hidden, "depth": len(spec.hidden) + 1, "lr": spec.lr, "gamma": spec.gamma,
                       "init": spec.init, "a0_decoupled": spec.a0, "lam": spec.lam, "a0_a_priori": _a_priori_a0(spec),
                       "n_epochs": spec.n_epochs, "dtype": args.dtype, "engine": rec.info["engine"],
                       "track": spec.track, "track_label": spec.track_label,
                       "eta": theory.learning_rate_to_eta(spec.lr, *spec.Y.shape),
                       "tau": theory.time_constant(spec.lr, *spec.Y.shape),
                       "checked": list(spec.checked), "twin_engine": twin_engine},
            "seed": spec.seed,
            "s": p.s,
            "floor": run_floor,
            "bottleneck": _bottleneck(spec, p),
            "closed_forms_absent": absent,
            "modified_estimates": {th: {"estimate": preds[th]["estimate"], "exact_steps": preds[th]["exact_steps"]}
                                   for th in ("modified_equation", "balanced_modified") if th in preds},
            "stable_lr": {"learned": p.bounds.learned, "init": p.bounds.init},
            "half_learning_epochs": halves,
            "timings": {"train_s": rec.info["seconds"], "twin_s": twin.info["seconds"], "theory_s": t_theory},
            "final_loss": float(rec.losses[-1]),
            "figures": figures[spec.name],
        }
    ensembles = []
    if not args.data:  # the deep random-init ensembles: a priori half-learning epochs over seeds
        hidden = specs[0].hidden[0]
        for depth in items_bar(VE.DEPTHS, "seed ensembles", args.quiet):
            ensembles.append(VE.ensemble(specs[0].X, specs[0].Y, hidden, depth, args.quick))
        all_checks += VE.ensemble_checks(ensembles)
        figures["ensembles"] = [VE.ensemble_figure(ensembles, out / "deep_random_ensembles.png")]
    failed = [c["name"] for c in all_checks if c["passed"] is False]
    result = {"checks": all_checks, "runs": runs, "ensembles": ensembles, "passed": not failed, "failed": failed,
              "tolerance_model": {
                  "rule": "an exact theory passes on a quantity when its error <= max(safety x floor, absolute); "
                          "the seed ensembles' exact law when max over modes of |z| <= 4 (z: difference of the "
                          "medians over its sampling standard error)",
                  "safety": C.FLOOR_SAFETY, "absolute": C.EXACT_ABS_TOL,
                  "floor": "the same metric between the run's training and a twin training by the other engine",
                  "modes_normalisation": "|a_pred - a_meas| / s_max (rounding is relative to the largest weights)",
                  "rsm_reference": "||X V S^(2/L) V^T X^T||_F, the RSM of the balanced learned state"},
              "versions": package_versions(), "total_seconds": time.perf_counter() - t_start,
              "command": {k: v for k, v in vars(args).items() if not k.startswith("_")}}
    extra = [*VE.ensemble_report(ensembles), f"![a priori vs measured]({figures['ensembles'][0]})", ""] \
        if ensembles else []
    write_text(out / "report.md", render_report(result, out) + "\n".join(["", *extra]))
    write_json(out / "metrics.json", result)  # last: its presence marks a complete run
    if not args.quiet:
        _print_summary(result, out)
    return 1 if failed else 0


def _bottleneck(spec: RunSpec, p) -> dict | None:
    """Modes a narrow hidden layer cannot learn, and the least loss these widths allow (None if no bottleneck)."""
    rank = int(np.sum(p.s > 1e-12 * p.s[0]))
    width = min(spec.hidden, default=rank)
    if width >= rank:
        return None
    best = p.best_loss()
    return {"width": width, "rank": rank, "unlearnable_modes": list(range(width + 1, rank + 1)),
            "unlearnable_s": p.s[width:rank].tolist(), "best_loss": best}


def _print_summary(result: dict, out: Path) -> None:
    width = max(len(c["name"]) for c in result["checks"])
    for c in result["checks"]:
        tol = "reported" if c["tolerance"] is None else f"≤ {c['tolerance']:.0e}"
        mark = {True: "PASS", False: "FAIL", None: "    "}[c["passed"]]
        print(f"{mark}  {c['name']:<{width}}  {c['value']:.3e}  ({tol})")
    n_checked = sum(c["passed"] is not None for c in result["checks"])
    print(f"{n_checked - len(result['failed'])}/{n_checked} checks passed; report: {out / 'report.md'}, "
          f"metrics: {out / 'metrics.json'} ({result['total_seconds']:.1f} s)")
