"""Figures and ``report.md`` for ``saxe verify`` (theory dashed over measured; one paragraph per run)."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .report import save_figure  # noqa: E402

THEORY_STYLE = {"continuous": ("tab:orange", "continuous (closed form)"),
                "discrete": ("tab:green", "discrete (scalar map)"),
                "coupled": ("tab:blue", "coupled (from init weights)")}


def _mode_colors(n: int):
    return matplotlib.colormaps["viridis"].resampled(max(n, 2))


def save_run_figures(out: Path, spec, rec, preds: dict, quick: bool = False) -> list[str]:
    """Write ``{run}_modes.png``, ``{run}_loss.png``, ``{run}_rsm.png`` and ``{run}_illusion.png``."""
    t = np.arange(rec.losses.shape[0])
    files = []
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True, layout="constrained")
    cmap = _mode_colors(rec.modes.shape[1])
    for ax, (th, (color, label)) in zip(axes, THEORY_STYLE.items()):
        for a in range(rec.modes.shape[1]):
            ax.plot(t, rec.modes[:, a], color=cmap(a), lw=2.2, alpha=0.55)
            ax.plot(t, preds[th]["modes"][:, a], color="k", ls="--", lw=0.9)
        ax.set_title(f"{spec.name}: singular values vs {label}", fontsize=10)
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("singular value of W_tot")
    axes[0].plot([], [], color=cmap(0), lw=2.2, alpha=0.55, label="measured")
    axes[0].plot([], [], color="k", ls="--", lw=0.9, label="theory")
    axes[0].legend(loc="lower right")
    files.append(save_figure(fig, out / f"{spec.name}_modes.png").name)

    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    ax.plot(t, rec.losses, color="r", lw=2.5, alpha=0.5, label="measured")
    for th, (color, label) in THEORY_STYLE.items():
        ax.plot(t, preds[th]["loss"], color=color, ls="--", lw=1.2, label=label)
    ax.set(xlabel="epoch", ylabel="MSE loss", title=f"{spec.name}: training loss")
    ax.legend()
    files.append(save_figure(fig, out / f"{spec.name}_loss.png").name)

    if rec.rsms is not None and "rsm" in preds["coupled"] and not quick:
        # plateaus of the staircase: where the measured loss has fallen to 3/4, 1/2, 1/4 of its start, and the end
        frac = rec.losses / rec.losses[0]
        epochs = [int(np.argmax(frac <= q)) for q in (0.75, 0.5, 0.25) if (frac <= q).any()]
        epochs = sorted(set(epochs + [int(t[-1])]))
        fig, axes = plt.subplots(2, len(epochs), figsize=(3.2 * len(epochs), 6.6), squeeze=False,
                                 layout="constrained")
        vmax = max(np.abs(rec.rsms).max(), 1e-300)
        for c, k in enumerate(epochs):
            for r, (mat, who) in enumerate(((rec.rsms[k], "measured"), (preds["coupled"]["rsm"][k], "coupled"))):
                ax = axes[r, c]
                ax.imshow(mat / vmax, cmap="Purples", vmin=0, vmax=1)
                ax.set_title(f"{who}, epoch {k}", fontsize=9)
                ax.set_xticks(range(len(spec.item_names)), spec.item_names, rotation=90, fontsize=7)
                ax.set_yticks(range(len(spec.item_names)), spec.item_names, fontsize=7)
        fig.suptitle(f"{spec.name}: hidden-layer RSM, measured (top) and coupled theory (bottom)")
        files.append(save_figure(fig, out / f"{spec.name}_rsm.png").name)

    if spec.track is not None:
        fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
        ax.plot(t, rec.illusions, color="r", lw=3, alpha=0.5, label="measured")
        for th, (color, label) in THEORY_STYLE.items():
            ax.plot(t, preds[th]["illusion"], color=color, ls="--", lw=1.2, label=label)
        ax.set(xlabel="epoch", ylabel=f"prediction: {spec.track_label}", ylim=(-1.1, 1.1),
               title=f"{spec.name}: illusory correlation")
        ax.legend()
        files.append(save_figure(fig, out / f"{spec.name}_illusion.png").name)
    return files


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and not math.isfinite(v):
        return "never" if v > 0 else "n/a"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _value(result: dict, name: str):
    for c in result["checks"]:
        if c["name"] == name:
            return c["value"]
    return None


def _paragraph(name: str, run: dict, result: dict) -> str:
    cfg = run["config"]
    h = run["half_learning_epochs"]
    meas, cont, disc = (np.asarray(h[k], dtype=float) for k in ("measured", "continuous", "discrete"))
    ok = np.isfinite(meas) & np.isfinite(cont) & np.isfinite(disc)
    v = {th: _value(result, f"{name}.modes.{th}") for th in ("continuous", "discrete", "coupled")}
    s = np.asarray(run["s"], dtype=float)
    eta_s = cfg["eta"] * s.max()
    parts = []
    tol = cfg["tolerances"]
    if cfg["dtype"] == "float32":
        parts.append(f"Trained in float32, as the tutorial: the coupled theory (float64, from the same initial weights) "
                     f"is off by {v['coupled']:.2g} of s. That deviation is float32 rounding of the training, which "
                     f"the sigmoidal transients amplify in the weakest modes; in float64 (the default) the same "
                     f"comparison agrees to ~1e-11, so here every number is reported only.")
    elif "coupled" in tol:
        why = ("the exact SGD map of the growing part of the init, up to terms of relative size γ², and float64 "
               "rounding" if cfg["depth"] == 2 else
               "exact SGD of the weights projected on the data's modes plus the invariant outside directions, for "
               "any init size; only float64 rounding remains")
        parts.append(f"The coupled theory, iterated from the actual initial weights, matches the trained network to "
                     f"{v['coupled']:.2g} of s on the modes (tolerance {tol['coupled']:.0e}): it is {why}.")
    else:
        parts.append(f"The coupled theory from the actual initial weights is off by {v['coupled']:.2g} of s "
                     f"(reported only: at γ = {cfg['gamma']:.3g} the O(γ²) part of the init it neglects is no longer "
                     f"negligible).")
    if ok.any():
        lead = float(np.mean(disc[ok] - cont[ok]))
        lag = float(np.mean(meas[ok] - cont[ok]))
        parts.append(f"The continuous closed form (a priori a₀ = {cfg['a0_a_priori']:.3g}) is off by "
                     f"{v['continuous']:.2g} of s: with η·s_max = {eta_s:.3f} per epoch it assumes infinitesimal "
                     f"steps and reaches half-learning on average {lead:.1f} epochs before the exact discrete map "
                     f"with the same a₀ ({abs(lag):.1f} epochs {'before' if lag >= 0 else 'after'} the measured "
                     f"network). For small init that lead is ≈ ln(s/2a₀)/4 − ln 2/2 epochs whatever the lr (each step "
                     f"grows a mode by 1 + ηs instead of e^{{ηs}}), so the error relative to the learning time shrinks "
                     f"in proportion to lr.")
    if cfg["init"] == "decoupled":
        parts.append(f"From the decoupled balanced init every mode starts at exactly a₀ = {cfg['a0_decoupled']:.3g} "
                     f"and the scalar discrete map is exact: it agrees to {v['discrete']:.2g} of s.")
    else:
        dev = float(np.nanmax(np.abs(meas[ok] - disc[ok]))) if ok.any() else float("nan")
        parts.append(f"The discrete scalar map with the same a priori a₀ is off by {v['discrete']:.2g} of s "
                     f"(half-learning epochs off by up to {dev:.1f}): a random init gives each mode its own initial "
                     f"strength and mixes modes whose singular values are close, which only the coupled theory "
                     f"follows.")
    return " ".join(parts)


def render_report(result: dict, out: Path) -> str:
    lines = ["# saxe verify: theory against real training", ""]
    n_checked = sum(c["passed"] is not None for c in result["checks"])
    status = "PASSED" if result["passed"] else "FAILED: " + ", ".join(result["failed"])
    lines += [f"**{status}** — {n_checked - len(result['failed'])}/{n_checked} checks with a tolerance pass; "
              f"{len(result['checks']) - n_checked} numbers are reported only. Total {result['total_seconds']:.1f} s.",
              "", "Metrics (see `experiments/metrics.py`): `modes` = max over epochs and modes of |a_pred − a_meas|/s_α; "
              "`loss` = max |L_pred − L_meas| / L_meas(0); `rsm` = max ‖RSM_pred − RSM_meas‖_F / ‖RSM(∞)‖_F; "
              "`illusion` = max absolute error of the tracked output.", "",
              "| check | value | tolerance | result |", "|---|---|---|---|"]
    for c in result["checks"]:
        res = {True: "pass", False: "**FAIL**", None: "reported"}[c["passed"]]
        tol = "—" if c["tolerance"] is None else f"{c['tolerance']:.0e}"
        lines.append(f"| `{c['name']}` | {c['value']:.3e} | {tol} | {res} |")
    for name, run in result["runs"].items():
        cfg = run["config"]
        lines += ["", f"## {name}", "", f"{run['description']}. η = {cfg['eta']:.4g} per epoch (τ = {cfg['tau']:.4g} "
                  f"epochs), {cfg['n_epochs']} epochs, {cfg['dtype']}, engine `{cfg['engine']}`, seed {run['seed']}; "
                  f"training {run['timings']['train_s']:.2f} s, theory {run['timings']['theory_s']:.2f} s.", "",
                  _paragraph(name, run, result), "",
                  "Half-learning epochs (first epoch at which singular value α reaches s_α/2):", "",
                  "| mode | s | measured | coupled | discrete | continuous | continuous (exact t) |",
                  "|---|---|---|---|---|---|---|"]
        h = run["half_learning_epochs"]
        for a, s in enumerate(run["s"]):
            row = [_fmt(float(h[k][a])) for k in ("measured", "coupled", "discrete", "continuous")]
            exact = h["continuous_exact"]
            row.append(_fmt(float(exact[a])) if a < len(exact) else "—")
            lines.append(f"| {a + 1} | {s:.4g} | " + " | ".join(row) + " |")
        lines.append("")
        lines += [f"![{f}]({f})" for f in run["figures"]]
    return "\n".join(lines) + "\n"
