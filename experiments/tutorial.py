"""``saxe tutorial``: every figure of the Neuromatch tutorial "Deep linear neural networks" as files.

Sections (as the tutorial): the data (``tree_data``, ``hier_data_all``, ``hier_data_one``); training the
8-30-N LNNet at lr=100, γ=1e-12 (``loss``, ``loss_sv``, ``loss_sv_twin``); representational similarity
(``rsm_epoch_XXX`` at epochs 10, 61, 100, 120, 150, 241 of the tutorial's epoch slider, and
``rsm_evolution.gif`` in place of the slider); illusory correlations (``shark_*``, ``parrot_*``); the bonus
zero-depth LRNet at lr=1000 (``zero_depth_loss``) and the linear-regression comparison
(``linear_regression_comparison.json``).
Every measured curve has the exact prediction of :func:`theory.predictor` (exact theory state, SGD map, from the
actual initial weights) drawn dashed on top; ``summary.json`` lists every file and the configuration.

Faithful to the tutorial: float32 networks trained by torch autograd + ``optim.SGD`` on ``nn.MSELoss``.
Fixed: no global random state (``--seed`` feeds ``np.random.default_rng`` and ``torch.Generator``, one
independent stream per section); the records are consistent (row k = after k updates); the zero-depth net
is initialised with γ (the tutorial defined γ but left torch's default init).

Knobs (the tutorial's widgets and Exercise 4): ``--lr``, ``--gamma``, ``--hidden``, ``--depth`` (the deep networks),
``--epochs``, ``--seed``, and ``--feature NAME=ITEM:VALUE,...`` (your own feature, repeatable: the listed items get
those values, the others −1; figure ``feature_NAME``: the network's output for it on every item over training,
measured and predicted, where an exception to its branch shows its illusory correlation).
``--rsm-epochs 10,61`` picks the epochs of the RSM figures (the tutorial's slider).
``--features N`` (default 10000, the tutorial's) samples N features instead, e.g. for quick checks. Both
learning rates are then scaled by √(N/10000): the singular values of Σʸˣ grow like √N and η = 2·lr/(P·N), so
this keeps η·s, hence the stability and the timeline in epochs, as in the tutorial.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from saxe.train import torch_threads

from .cli import UsageError
from .outdir import prepared_out
from .tutorial_runs import Run, Theory, gap, scales, streams, train_net

TUTORIAL_FEATURES = 10000
#: An illusion is reported where the output went the wrong way by at least this (less prints as ±0.00; a short run
#: printed "illusion peaks at -0.00 (epoch 0)" where nothing had been learned).
ILLUSION_SHOWN = 0.005
#: --feature values are kept within ±this: the tree's features are ±1 (see parse_feature's error).
MAX_FEATURE_VALUE = 1e3
LR, LR_ZERO_DEPTH, GAMMA, HIDDEN = 100.0, 1000.0, 1e-12, 30
RSM_EPOCHS = (10, 61, 100, 120, 150, 241)  # the tutorial's slider: 10..241, default 61; + 100, 150: one per stage
FORMATS = ("png", "svg", "pdf")
ILLUSIONS = {  # name: (item names, tracked item, new feature, feature name)
    "shark": (("Shark", "Tuna", "Robin", "Canary", "Rose", "Daisy", "Pine", "Oak"), 0,
              [-1, 1, 1, 1, -1, -1, -1, -1], "has_bones"),
    "parrot": (("Goldfish", "Tuna", "Robin", "Parrot", "Rose", "Daisy", "Pine", "Oak"), 3,
               [1, 1, 1, -1, 1, 1, 1, 1], "cannot_speak"),
}


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="tutorial_out",
                        help="output folder (default: tutorial_out); must be new or empty")
    parser.add_argument("--force", action="store_true",
                        help="replace the results of a previous run in --out (its summary and figures)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars and no stdout (errors still shown)")
    parser.add_argument("--seed", type=int, default=2021, help="random seed (default: 2021, the tutorial's)")
    parser.add_argument("--epochs", type=int, default=250, help="SGD updates per network (default: 250)")
    parser.add_argument("--format", default="png", help=f"figure format, one of {', '.join(FORMATS)} "
                        "(default: png; the animation is always a GIF)")
    parser.add_argument("--rsm-epochs", default=None, metavar="LIST",
                        help="comma-separated epochs of the RSM figures (default: 10,61,100,120,150,241, "
                             "scaled down for runs shorter than 241 epochs)")
    parser.add_argument("--features", type=int, default=TUTORIAL_FEATURES,
                        help="features sampled from the tree (default: 10000, the tutorial's); the default learning "
                             "rates are scaled by sqrt(N/10000) to keep the tutorial's dynamics in epochs")
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate of the deep networks (default: 100, the tutorial's, scaled as above); "
                             "above the stable bound at --depth it is refused")
    parser.add_argument("--gamma", type=float, default=GAMMA, help="init scale γ (default: 1e-12, the tutorial's)")
    parser.add_argument("--hidden", type=int, default=HIDDEN, help="width of every hidden layer (default: 30)")
    parser.add_argument("--depth", type=int, default=2,
                        help="number of weight matrices of the deep networks (default: 2, the tutorial's LNNet)")
    parser.add_argument("--feature", action="append", default=[], metavar="NAME=ITEM:VALUE,...",
                        help="add your own feature (Exercise 4), e.g. 'has_fins=Goldfish:1,Tuna:1': the listed items "
                             "get those values, the others -1; writes the network's output for it on every item "
                             "over training, measured and predicted (repeatable)")


# ------------------------------------------------------------------------------------------------- checks
def _check_args(args) -> tuple[Path, list[int]]:
    """Validate everything before anything is written: the output folder (not yet created), the RSM epochs."""
    for name, value, lo in (("--epochs", args.epochs, 1), ("--features", args.features, 1),
                            ("--seed", args.seed, 0)):
        if value < lo:
            raise UsageError(f"{name} must be >= {lo}, got {value}")
    picks = rsm_epochs(args.epochs)
    if args.rsm_epochs is not None:
        try:
            picks = sorted({int(e) for e in args.rsm_epochs.split(",") if e.strip()})
        except ValueError:
            raise UsageError(f"--rsm-epochs must be comma-separated integers, got {args.rsm_epochs!r}") from None
        if not picks or picks[0] < 0 or picks[-1] > args.epochs:
            raise UsageError(f"--rsm-epochs must list epochs in 0..{args.epochs} (--epochs), "
                             f"got {args.rsm_epochs!r}")
    if args.format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {args.format!r}")
    if args.lr is not None and not (np.isfinite(args.lr) and args.lr > 0):
        raise UsageError(f"--lr must be > 0 and finite, got {args.lr}")
    if not (np.isfinite(args.gamma) and args.gamma > 0):
        raise UsageError(f"--gamma must be > 0 and finite (a zero init sits on the saddle W = 0 for ever), "
                         f"got {args.gamma}")
    if args.hidden < 1:
        raise UsageError(f"--hidden must be >= 1, got {args.hidden}")
    if args.depth < 2:
        raise UsageError(f"--depth must be >= 2: the tutorial's RSM and illusion sections need a hidden layer, "
                         f"got {args.depth}")
    args.feature = [parse_feature(spec) for spec in args.feature]
    names = [name for name, _ in args.feature]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:  # the later one replaced the earlier one's figure and summary entry without a word
        raise UsageError(f"--feature names must differ, {dup[0]!r} is given {names.count(dup[0])} times")
    return Path(args.out).expanduser(), picks


def parse_feature(spec: str) -> tuple[str, list[float]]:
    """``'NAME=ITEM:VALUE,...'`` → (name, one value per tutorial item); items not listed get −1 (as ±1 features)."""
    from saxe import ITEM_NAMES

    name, sep, body = spec.partition("=")
    name = name.strip()
    if not sep or not name or not body.strip():
        raise UsageError(f"--feature must look like NAME=ITEM:VALUE,... (e.g. has_fins=Goldfish:1,Tuna:1), "
                         f"got {spec!r}")
    lookup = {n.lower(): i for i, n in enumerate(ITEM_NAMES)}
    values = [-1.0] * len(ITEM_NAMES)
    for part in body.split(","):
        item, sep, value = part.partition(":")
        if item.strip().lower() not in lookup:
            raise UsageError(f"--feature {name}: unknown item {item.strip()!r}; the items are {', '.join(ITEM_NAMES)}")
        try:
            v = float(value) if sep else float("nan")
        except ValueError:
            v = float("nan")
        if not np.isfinite(v):
            raise UsageError(f"--feature {name}: {part.strip()!r} must be ITEM:VALUE with a finite number")
        if abs(v) > MAX_FEATURE_VALUE:
            raise UsageError(f"--feature {name}: {part.strip()!r}: values must lie within ±{MAX_FEATURE_VALUE:g}, the "
                             "scale of the tree's ±1 features (a larger one becomes the top mode of Σʸˣ and puts the "
                             "tutorial's lr above the stable bound; 1e300 overflowed float32)")
        values[lookup[item.strip().lower()]] = v
    return name, values


def rsm_epochs(n_epochs: int) -> list[int]:
    """Epochs of the RSM figures: :data:`RSM_EPOCHS`, scaled into 0..n_epochs for shorter runs."""
    if n_epochs >= max(RSM_EPOCHS):
        return list(RSM_EPOCHS)
    return sorted({min(n_epochs, round(e * n_epochs / 250)) for e in RSM_EPOCHS})


def gif_frames(n_epochs: int, target: int = 50) -> list[int]:
    """Every ~5th epoch for 250 epochs (about ``target`` frames), always including the last."""
    step = max(1, round(n_epochs / target))
    frames = list(range(0, n_epochs + 1, step))
    return frames if frames[-1] == n_epochs else frames + [n_epochs]


def _stream_names(features: dict) -> list[str]:
    """The sections' random streams (:func:`experiments.tutorial_runs.streams`), in a fixed order."""
    return ["main", *ILLUSIONS, "zero_depth", *(f"feature:{k}" for k in features)]


def _dataset(rng, n_features: int, feature=None):
    """The tutorial's tree data from ``rng`` (float32, as the tutorial's ``.float()``), a feature appended if given."""
    from saxe import add_feature, generate_hsd

    X, Y = generate_hsd(n_features=n_features, rng=rng)
    if feature is not None:
        Y = add_feature(Y, feature)
    return X.astype(np.float32), Y.astype(np.float32)


def lr_scale(n_features: int) -> float:
    """√(N/10000): the tutorial's learning rates are scaled by it to keep their η·s (s grows like √N, η like 1/N)."""
    return float(np.sqrt(n_features / TUTORIAL_FEATURES))


def default_lr(n_features: int) -> float:
    """The tutorial's lr = 100 at 10000 features, scaled to N features (:func:`lr_scale`)."""
    return LR * lr_scale(n_features)


def _check_lr(args) -> None:
    """Refuse, before anything is trained or written, an lr above the stable bound of a network the command trains
    (as ``saxe verify`` does): there SGD cannot settle once a mode is learned, and no theory is exact. The deep nets
    are checked on every dataset they train on (the tree, the illusions, each ``--feature``), drawn from fresh
    copies of the run's own streams, so the check sees exactly the data the run will train on; the zero-depth net
    (its lr the tutorial's 1000, scaled to --features, not a knob) on the tree."""
    from theory import stable_lr

    lr = default_lr(args.features) if args.lr is None else args.lr
    features = dict(args.feature)
    rngs = streams(args.seed, _stream_names(features))
    sets = {"the tree": (rngs["main"][0], None)}
    sets.update({f"{key} ({spec[3]})": (rngs[key][0], spec[2]) for key, spec in ILLUSIONS.items()})
    sets.update({f"--feature {k}": (rngs[f"feature:{k}"][0], v) for k, v in features.items()})
    hidden = [args.hidden] * (args.depth - 1)
    bounds = {}
    for what, (rng, feature) in sets.items():
        X, Y = (a.astype(np.float64) for a in _dataset(rng, args.features, feature))
        bounds[what] = float(stable_lr(X, Y, depth=args.depth, hidden=hidden).learned)
        if what == "the tree":
            lr0, bound0 = LR_ZERO_DEPTH * lr_scale(args.features), stable_lr(X, Y, depth=1).learned
            if lr0 > bound0:
                raise UsageError(f"--features {args.features}: the zero-depth net's lr {lr0:g} (the tutorial's 1000, "
                                 f"scaled to --features) is above its stable bound {bound0:.4g}: use more --features")
    what = min(bounds, key=bounds.__getitem__)
    bound = bounds[what]
    if lr > bound:
        which = (f"--lr {lr:g}" if args.lr is not None else
                 f"the default lr {lr:g} (the tutorial's, scaled to --features)")
        raise UsageError(f"{which} is above the stable bound {bound:.4g} of the depth-{args.depth} network on "
                         f"{what}: SGD cannot settle there once a mode is learned and no theory is exact; pass "
                         f"--lr below it (e.g. --lr {0.9 * bound:.3g}, 0.9 × the least bound of the networks trained)")


def run(args) -> int:
    t_start = time.perf_counter()
    out, picks = _check_args(args)
    _check_lr(args)
    with prepared_out(out, force=args.force) as out, torch_threads(1):  # small matrices: see saxe.torch_threads
        return _run(args, out, picks, t_start)


def _run(args, out: Path, picks: list[int], t_start: float) -> int:
    quiet, n, F = args.quiet, args.epochs, args.features
    hidden_sizes = [args.hidden] * (args.depth - 1)

    import torch

    from saxe import (
        ITEM_NAMES,
        LRNet,
        initializer_,
        linear_regression,
        make_net,
        w_tot,
        weights,
    )

    from . import plots, plots_rsm
    from .progress import epoch_bar, items_bar
    from .report import package_versions

    scale = lr_scale(F)
    lr = default_lr(F) if args.lr is None else args.lr
    lr0 = LR_ZERO_DEPTH * scale
    gamma = args.gamma
    features = {name: values for name, values in args.feature}
    rngs = streams(args.seed, _stream_names(features))
    R, notes, gaps, timings, training = Run(out, args.format, quiet), {}, {}, {}, {}
    names = list(ITEM_NAMES)
    shape = "-".join(str(v) for v in [8, *hidden_sizes, F])
    t = time.perf_counter()

    # 1. the data
    rng, gen = rngs["main"]
    X, Y = _dataset(rng, F)
    R.figure("tree_data", plots.plot_tree_data())
    R.figure("hier_data_all", plots.plot_hier_data(X, Y, "all samples"))
    R.figure("hier_data_one", plots.plot_hier_data(X[:1], Y[:1], "a single sample"))
    timings["data"] = time.perf_counter() - t

    # 2. the deep linear network, its loss and singular values (normalised by what they saturate at)
    t = time.perf_counter()
    s_max, rsm_scale = scales(X, Y, args.depth)
    deep = initializer_(make_net(X.shape[1], hidden_sizes, F), gamma, generator=gen)
    rec, init = train_net(deep, X, Y, lr, n, f"net {shape}", quiet)
    training["deep"] = rec.info
    th = Theory("deep", X, Y, lr, init, n, notes)
    th_loss, th_modes, th_rsm = th.loss(), th.modes(rec.modes.shape[1]), th.rsm(X.shape[0])
    gaps["deep"] = {"loss_max_abs": gap(rec.losses, th_loss),
                    "modes_max_abs_over_s_max": gap(rec.modes, th_modes, s_max),
                    "rsm_max_abs_over_learned_rsm": gap(rec.rsms, th_rsm, rsm_scale)}
    R.figure("loss", plots.plot_loss(rec.losses, th_loss))
    R.figure("loss_sv", plots.plot_loss_sv(rec.losses, rec.modes, th_loss, th_modes, s_max=s_max))
    R.figure("loss_sv_twin", plots.plot_loss_sv_twin(rec.losses, rec.modes, th_loss, th_modes, s_max=s_max))
    timings["deep"] = time.perf_counter() - t

    # 3. representational similarity (first hidden layer): the slider's epochs, and an animation in its place
    t = time.perf_counter()
    for e in items_bar(picks, "RSM figures", quiet):
        R.figure(f"rsm_epoch_{e:03d}", plots_rsm.plot_rsm_dynamics(rec.losses, rec.modes, rec.rsms, e, names,
                                                                   th_loss, th_modes, th_rsm, s_max=s_max,
                                                                   rsm_scale=rsm_scale))
    frames = gif_frames(n)
    anim = plots_rsm.animate_rsm(rec.rsms, names, frames, th_rsm, rsm_scale=rsm_scale)
    with epoch_bar(len(frames), "rsm_evolution.gif", quiet) as tick:
        plots_rsm.save_gif(anim, out / "rsm_evolution.gif", progress=lambda i, k: tick(i))
    R.files.append("rsm_evolution.gif")
    timings["rsm"] = time.perf_counter() - t

    # 4. illusory correlations: fresh data with one feature appended, the tracked item's prediction
    illusions = {}
    for key, (items, idx, feature, label) in ILLUSIONS.items():
        t = time.perf_counter()
        rng_i, gen_i = rngs[key]
        Xi, Yi = _dataset(rng_i, F, feature)
        R.figure(f"{key}_tree_data", plots.plot_tree_data(items, Yi, label))
        net = initializer_(make_net(Xi.shape[1], hidden_sizes, Yi.shape[1]), gamma, generator=gen_i)
        rec_i, init_i = train_net(net, Xi, Yi, lr, n, f"{key}: {label}", quiet, illusory_i=idx)
        training[key] = rec_i.info
        th_i = Theory(key, Xi, Yi, lr, init_i, n, notes)
        th_ill, th_mi = th_i.output(idx, Yi.shape[1] - 1), th_i.modes(rec_i.modes.shape[1])
        ill = rec_i.illusions
        peak = int(np.argmin(feature[idx] * ill))  # the prediction furthest on the wrong side of the target
        illusions[key] = {"item": items[idx], "feature": label, "target": feature[idx], "illusion_epoch": peak,
                          "illusion_prediction": float(ill[peak]), "final_prediction": float(ill[-1])}
        s_i = scales(Xi, Yi, args.depth)[0]
        gaps[key] = {"prediction_max_abs": gap(ill, th_ill), "modes_max_abs_over_s_max": gap(rec_i.modes, th_mi, s_i)}
        R.figure(f"{key}_{label}", plots.plot_ills_sv_twin(ill, rec_i.modes, f"Prediction for {items[idx]} {label}",
                                                           th_ill, th_mi, s_max=s_i))
        timings[key] = time.perf_counter() - t

    # 4b. your own features (Exercise 4): the output for that feature on every item, measured and predicted
    own = {}
    for name, values in features.items():
        t = time.perf_counter()
        rng_f, gen_f = rngs[f"feature:{name}"]
        Xf, Yf = _dataset(rng_f, F, values)
        net = initializer_(make_net(Xf.shape[1], hidden_sizes, Yf.shape[1]), gamma, generator=gen_f)
        rec_f, init_f = train_net(net, Xf, Yf, lr, n, f"feature {name}", quiet, illusory_i=list(range(8)))
        training[f"feature:{name}"] = rec_f.info
        th_f = Theory(f"feature:{name}", Xf, Yf, lr, init_f, n, notes).outputs_of_feature(Yf.shape[1] - 1, 8)
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        R.figure(f"feature_{safe}", plots.plot_feature_outputs(rec_f.illusions, names, name, values, th_f))
        wrong = [(names[i], int(np.argmax(np.sign(values[i]) * rec_f.illusions[:, i] < -0.05)))
                 for i in range(8) if np.any(np.sign(values[i]) * rec_f.illusions[:, i] < -0.05)]
        own[name] = {"values": dict(zip(names, values)), "final": dict(zip(names, rec_f.illusions[-1].tolist())),
                     "illusory_items": [w[0] for w in wrong], "prediction_max_abs": gap(rec_f.illusions, th_f)}
        timings[f"feature:{name}"] = time.perf_counter() - t

    # 5. bonus: zero-depth net vs analytical linear regression vs the deep net's W_tot
    t = time.perf_counter()
    _, gen0 = rngs["zero_depth"]
    zero = initializer_(LRNet(X.shape[1], F), gamma, generator=gen0)
    rec0, init0 = train_net(zero, X, Y, lr0, n, "LRNet 8-N", quiet)
    training["zero_depth"] = rec0.info
    th0_loss = Theory("zero_depth", X, Y, lr0, init0, n, notes).loss()
    gaps["zero_depth"] = {"loss_max_abs": gap(rec0.losses, th0_loss)}
    R.figure("zero_depth_loss", plots.plot_loss(rec0.losses, th0_loss, title="Training loss for zero depth LNN"))
    analytical = linear_regression(X.astype(np.float64), Y.astype(np.float64))
    w_zero = weights(zero)[0].detach().double().numpy()
    w_deep = w_tot(deep, dtype=torch.float64).numpy()
    cmp = {"atol": 1e-2,
           "zero_depth_vs_analytical": {"max_abs_diff": float(np.abs(w_zero - analytical).max()),
                                        "allclose": bool(np.allclose(analytical, w_zero, atol=1e-2))},
           "deep_w_tot_vs_analytical": {"max_abs_diff": float(np.abs(w_deep - analytical).max()),
                                        "allclose": bool(np.allclose(analytical, w_deep, atol=1e-2))},
           "zero_depth_vs_deep_w_tot": {"max_abs_diff": float(np.abs(w_zero - w_deep).max()),
                                        "allclose": bool(np.allclose(w_deep, w_zero, atol=1e-2))}}
    cmp["all_approximately_equal"] = (cmp["zero_depth_vs_analytical"]["allclose"]
                                      and cmp["deep_w_tot_vs_analytical"]["allclose"])
    cmp["config"] = {"lr_zero_depth": lr0, "lr_deep": lr, "epochs": n, "gamma": gamma}
    R.json("linear_regression_comparison.json", cmp)
    timings["zero_depth"] = time.perf_counter() - t

    # 6. summary
    R.files.append("summary.json")
    summary = {
        "command": "saxe tutorial",
        "config": {"seed": args.seed, "epochs": n, "features": F, "lr": lr, "lr_zero_depth": lr0, "gamma": gamma,
                   "hidden": args.hidden, "depth": args.depth, "lr_scale": scale if args.lr is None else None,
                   "engine": "autograd", "dtype": "float32", "reduction": "mean", "format": args.format,
                   "rsm_epochs": picks, "gif_frames": frames, "own_features": list(features),
                   "theory": "theory.predictor(theory='exact', method='discrete', weights=initial weights)"},
        "versions": package_versions(),
        "files": list(R.files),
        "training": training,
        "theory": {"overlay": not notes, "problems": notes, "max_gaps": gaps},
        "illusions": illusions,
        "own_features": own,
        "linear_regression": {k: cmp[k] for k in ("zero_depth_vs_analytical", "deep_w_tot_vs_analytical",
                                                  "all_approximately_equal")},
        "seconds": {**{k: round(v, 3) for k, v in timings.items()},
                    "total": round(time.perf_counter() - t_start, 3)},
    }
    from .report import write_json

    write_json(out / "summary.json", summary)
    if not quiet:
        _print_summary(out, summary, cmp)
    return 0


def _print_summary(out: Path, summary: dict, cmp: dict) -> None:
    c = summary["config"]
    print(f"saxe tutorial: seed {c['seed']}, {c['epochs']} epochs, {c['features']} features, "
          f"lr {c['lr']:g} (zero-depth {c['lr_zero_depth']:g}), gamma {c['gamma']:g}")
    z, d = cmp["zero_depth_vs_analytical"], cmp["deep_w_tot_vs_analytical"]
    print(f"  linear regression vs zero-depth W: max |diff| {z['max_abs_diff']:.3g} (allclose {z['allclose']})")
    print(f"  linear regression vs deep W_tot:   max |diff| {d['max_abs_diff']:.3g} (allclose {d['allclose']})")
    print(f"  The final weights from all methods are approximately equal?! {cmp['all_approximately_equal']}!")
    for ill in summary["illusions"].values():
        peak, target = ill["illusion_prediction"], ill["target"]
        if peak * target < 0 and abs(peak) >= ILLUSION_SHOWN:  # the output went the wrong way, visibly
            said = f"illusion peaks at {peak:+.2f} (epoch {ill['illusion_epoch']})"
        else:
            said = f"no illusion in these epochs (the output never went past ±{ILLUSION_SHOWN:g} the wrong way)"
        print(f"  {ill['item']} {ill['feature']}: {said}, ends at {ill['final_prediction']:+.2f} (target {target:+d})")
    for name, f in summary["own_features"].items():
        wrong = ", ".join(f["illusory_items"]) or "none"
        print(f"  feature {name}: items that first went the wrong way (illusory correlation): {wrong}")
    th = summary["theory"]
    if th["overlay"]:
        print("  theory (exact SGD map from the initial weights) drawn dashed on every measured curve")
    else:
        print(f"  theory overlay missing for: {', '.join(th['problems'])}")
    files = summary["files"]
    print(f"wrote {len(files)} files to {out}/ in {summary['seconds']['total']:.1f} s:")
    width = max(len(f) for f in files)
    for i in range(0, len(files), 3):
        print("  " + "  ".join(f.ljust(width) for f in files[i:i + 3]).rstrip())
