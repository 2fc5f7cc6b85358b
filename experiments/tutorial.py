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

``--rsm-epochs 10,61`` picks the epochs of the RSM figures (the tutorial's slider).
``--features N`` (default 10000, the tutorial's) samples N features instead, e.g. for quick checks. Both
learning rates are then scaled by √(N/10000): the singular values of Σʸˣ grow like √N and η = 2·lr/(P·N), so
this keeps η·s, hence the stability and the timeline in epochs, as in the tutorial.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from .cli import UsageError
from .outdir import prepared_out

TUTORIAL_FEATURES = 10000
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
                        help="features sampled from the tree (default: 10000, the tutorial's); learning rates "
                             "are scaled by sqrt(N/10000) to keep the tutorial's dynamics in epochs")


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
    return Path(args.out).expanduser(), picks


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


# ------------------------------------------------------------------------------------------------- theory
class Theory:
    """Predictions of :func:`theory.predictor` for one run, or ``None`` for each quantity it cannot give.

    Any failure (the theory package missing or raising) is recorded in ``notes`` and warned about once; the
    figures are then drawn without the overlay instead of the whole command failing.
    """

    def __init__(self, name: str, X, Y, lr: float, init_weights: list[np.ndarray], n_epochs: int, notes: dict):
        self.name, self.notes = name, notes
        self.t = np.arange(n_epochs + 1)
        self.pred = None
        try:
            from theory import predictor
        except ImportError as exc:
            self._fail("predictor", f"theory.predictor is not available ({exc})")
            return
        try:
            self.pred = predictor(np.asarray(X, np.float64), np.asarray(Y, np.float64), lr,
                                  depth=len(init_weights), reduction="mean", weights=init_weights,
                                  theory="exact", method="discrete")
        except Exception as exc:  # noqa: BLE001 - a theory bug must not sink the figures
            self._fail("predictor", f"{type(exc).__name__}: {exc}")

    def _fail(self, what: str, why: str) -> None:
        key = f"{self.name}.{what}"
        self.notes[key] = why
        print(f"saxe tutorial: warning: no theory overlay for {key}: {why}", file=sys.stderr)

    def _get(self, what: str, fn, shape):
        if self.pred is None:
            return None
        try:
            value = np.asarray(fn(), dtype=np.float64)
            if value.size != int(np.prod(shape)):
                raise ValueError(f"expected shape {shape}, got {value.shape}")
            return value.reshape(shape)
        except Exception as exc:  # noqa: BLE001
            self._fail(what, f"{type(exc).__name__}: {exc}")
            return None

    def loss(self):
        return self._get("loss", lambda: self.pred.loss(self.t), (self.t.size,))

    def modes(self, r: int):
        return self._get("modes", lambda: np.asarray(self.pred.modes(self.t))[:, :r], (self.t.size, r))

    def rsm(self, p: int):
        return self._get("rsm", lambda: self.pred.rsm(self.t), (self.t.size, p, p))

    def output(self, i: int, j: int):
        return self._get("outputs", lambda: self.pred.outputs(self.t, items=[i], features=[j]), (self.t.size,))


def _gap(measured, predicted, scale: float = 1.0):
    return None if predicted is None else float(np.max(np.abs(measured - predicted)) / scale)


# ------------------------------------------------------------------------------------------------- runs
class _Run:
    """Output folder, figure format and the list of files written (in order)."""

    def __init__(self, out: Path, fmt: str, quiet: bool):
        self.out, self.fmt, self.quiet, self.files = out, fmt, quiet, []

    def figure(self, name: str, fig) -> None:
        from .report import save_figure

        self.files.append(save_figure(fig, self.out / f"{name}.{self.fmt}").name)

    def json(self, name: str, data) -> None:
        from .report import write_json

        self.files.append(write_json(self.out / name, data).name)


def _streams(seed: int, names):
    """One independent (numpy Generator, torch Generator) pair per section, from ``seed``."""
    import torch

    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: (np.random.default_rng(c), torch.Generator().manual_seed(int(c.generate_state(1)[0])))
            for n, c in zip(names, children)}


def _train_net(model, X, Y, lr, n_epochs, desc, quiet, illusory_i=0):
    from saxe import DivergenceError, train, weights

    from .progress import epoch_bar

    init = [w.detach().double().numpy().copy() for w in weights(model)]
    try:
        with epoch_bar(n_epochs + 1, desc, quiet) as tick:
            rec = train(model, X, Y, n_epochs, lr, illusory_i=illusory_i, illusory_j=-1, engine="autograd",
                        progress=tick)
    except DivergenceError as exc:
        raise UsageError(f"{desc}: {exc}") from None
    return rec, init


def run(args) -> int:
    t_start = time.perf_counter()
    out, picks = _check_args(args)
    with prepared_out(out, force=args.force) as out:
        return _run(args, out, picks, t_start)


def _run(args, out: Path, picks: list[int], t_start: float) -> int:
    quiet, n, F = args.quiet, args.epochs, args.features

    import torch

    from saxe import (
        ITEM_NAMES,
        LNNet,
        LRNet,
        add_feature,
        generate_hsd,
        initializer_,
        linear_regression,
        w_tot,
        weights,
    )

    from . import plots
    from .progress import epoch_bar, items_bar
    from .report import package_versions

    scale = float(np.sqrt(F / TUTORIAL_FEATURES))
    lr, lr0 = LR * scale, LR_ZERO_DEPTH * scale
    streams = _streams(args.seed, ["main", *ILLUSIONS, "zero_depth"])
    R, notes, gaps, timings, training = _Run(out, args.format, quiet), {}, {}, {}, {}
    names = list(ITEM_NAMES)
    t = time.perf_counter()

    # 1. the data
    rng, gen = streams["main"]
    X, Y = generate_hsd(n_features=F, rng=rng)
    X, Y = X.astype(np.float32), Y.astype(np.float32)  # the tutorial's .float()
    R.figure("tree_data", plots.plot_tree_data())
    R.figure("hier_data_all", plots.plot_hier_data(X, Y, "all samples"))
    R.figure("hier_data_one", plots.plot_hier_data(X[:1], Y[:1], "a single sample"))
    timings["data"] = time.perf_counter() - t

    # 2. the deep linear network, its loss and singular values
    t = time.perf_counter()
    deep = initializer_(LNNet(X.shape[1], HIDDEN, F), GAMMA, generator=gen)
    rec, init = _train_net(deep, X, Y, lr, n, "LNNet 8-30-N", quiet)
    training["deep"] = rec.info
    th = Theory("deep", X, Y, lr, init, n, notes)
    th_loss, th_modes, th_rsm = th.loss(), th.modes(rec.modes.shape[1]), th.rsm(X.shape[0])
    s_max = float(rec.modes.max()) or 1.0
    gaps["deep"] = {"loss_max_abs": _gap(rec.losses, th_loss),
                    "modes_max_abs_over_s_max": _gap(rec.modes, th_modes, s_max),
                    "rsm_max_abs_over_max": _gap(rec.rsms, th_rsm, float(np.abs(rec.rsms).max()) or 1.0)}
    R.figure("loss", plots.plot_loss(rec.losses, th_loss))
    R.figure("loss_sv", plots.plot_loss_sv(rec.losses, rec.modes, th_loss, th_modes))
    R.figure("loss_sv_twin", plots.plot_loss_sv_twin(rec.losses, rec.modes, th_loss, th_modes))
    timings["deep"] = time.perf_counter() - t

    # 3. representational similarity: the slider's epochs, and an animation in place of the slider
    t = time.perf_counter()
    for e in items_bar(picks, "RSM figures", quiet):
        R.figure(f"rsm_epoch_{e:03d}", plots.plot_rsm_dynamics(rec.losses, rec.modes, rec.rsms, e, names,
                                                               th_loss, th_modes, th_rsm))
    frames = gif_frames(n)
    anim = plots.animate_rsm(rec.rsms, names, frames, th_rsm)
    with epoch_bar(len(frames), "rsm_evolution.gif", quiet) as tick:
        plots.save_gif(anim, out / "rsm_evolution.gif", progress=lambda i, k: tick(i))
    R.files.append("rsm_evolution.gif")
    timings["rsm"] = time.perf_counter() - t

    # 4. illusory correlations: fresh data with one feature appended, the tracked item's prediction
    illusions = {}
    for key, (items, idx, feature, label) in ILLUSIONS.items():
        t = time.perf_counter()
        rng_i, gen_i = streams[key]
        Xi, Yi = generate_hsd(n_features=F, rng=rng_i)
        Yi = add_feature(Yi, feature)
        Xi, Yi = Xi.astype(np.float32), Yi.astype(np.float32)
        R.figure(f"{key}_tree_data", plots.plot_tree_data(items, Yi, label))
        net = initializer_(LNNet(Xi.shape[1], HIDDEN, Yi.shape[1]), GAMMA, generator=gen_i)
        rec_i, init_i = _train_net(net, Xi, Yi, lr, n, f"{key}: {label}", quiet, illusory_i=idx)
        training[key] = rec_i.info
        th_i = Theory(key, Xi, Yi, lr, init_i, n, notes)
        th_ill, th_mi = th_i.output(idx, Yi.shape[1] - 1), th_i.modes(rec_i.modes.shape[1])
        ill = rec_i.illusions
        peak = int(np.argmin(feature[idx] * ill))  # the prediction furthest on the wrong side of the target
        illusions[key] = {"item": items[idx], "feature": label, "target": feature[idx], "illusion_epoch": peak,
                          "illusion_prediction": float(ill[peak]), "final_prediction": float(ill[-1])}
        gaps[key] = {"prediction_max_abs": _gap(ill, th_ill),
                     "modes_max_abs_over_s_max": _gap(rec_i.modes, th_mi, float(rec_i.modes.max()) or 1.0)}
        R.figure(f"{key}_{label}", plots.plot_ills_sv_twin(ill, rec_i.modes, f"Prediction for {items[idx]} {label}",
                                                           th_ill, th_mi))
        timings[key] = time.perf_counter() - t

    # 5. bonus: zero-depth net vs analytical linear regression vs the deep net's W_tot
    t = time.perf_counter()
    _, gen0 = streams["zero_depth"]
    zero = initializer_(LRNet(X.shape[1], F), GAMMA, generator=gen0)
    rec0, init0 = _train_net(zero, X, Y, lr0, n, "LRNet 8-N", quiet)
    training["zero_depth"] = rec0.info
    th0_loss = Theory("zero_depth", X, Y, lr0, init0, n, notes).loss()
    gaps["zero_depth"] = {"loss_max_abs": _gap(rec0.losses, th0_loss)}
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
    cmp["config"] = {"lr_zero_depth": lr0, "lr_deep": lr, "epochs": n, "gamma": GAMMA}
    R.json("linear_regression_comparison.json", cmp)
    timings["zero_depth"] = time.perf_counter() - t

    # 6. summary
    R.files.append("summary.json")
    summary = {
        "command": "saxe tutorial",
        "config": {"seed": args.seed, "epochs": n, "features": F, "lr": lr, "lr_zero_depth": lr0, "gamma": GAMMA,
                   "hidden": HIDDEN, "lr_scale": scale, "engine": "autograd", "dtype": "float32",
                   "reduction": "mean", "format": args.format, "rsm_epochs": picks, "gif_frames": frames,
                   "theory": "theory.predictor(theory='exact', method='discrete', weights=initial weights)"},
        "versions": package_versions(),
        "files": list(R.files),
        "training": training,
        "theory": {"overlay": not notes, "problems": notes, "max_gaps": gaps},
        "illusions": illusions,
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
        print(f"  {ill['item']} {ill['feature']}: illusion peaks at {ill['illusion_prediction']:+.2f} "
              f"(epoch {ill['illusion_epoch']}), ends at {ill['final_prediction']:+.2f} (target {ill['target']:+d})")
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
