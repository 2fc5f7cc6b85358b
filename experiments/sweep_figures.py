"""The phase diagram of ``saxe sweep``: γ × lr heatmaps of each theory's error, divergence marked.

One row of panels per (depth, hidden) in the rows, one column per theory (continuous, discrete, exact). A cell
is the median over the seeds of ``err_<theory>`` (the ``modes`` error of :mod:`experiments.metrics`) on a
logarithmic colour scale of its own per theory (column), with its own colour bar: one scale shared by an exact
theory (1e-14) and a closed form (1) would spend its colours on the gap between them and paint each panel a single
colour. Values below :data:`FLOOR` (float64 rounding of s_max) take the lowest colour. Seeds without a value
(diverged run, or a theory that diverges at that lr) are left out of the median, and a cell with no value at
all (or a median of exactly 0) is grey. A cell where at least one seed diverged is hatched and labelled
``div k/n`` (k of its n seeds diverged). Works from the CSV rows (strings), so it draws a resumed or merged sweep
as well; written atomically with :func:`experiments.report.save_figure`. Drawn on a fixed layout (no
constrained/tight layout: it would double the drawing time).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["phase_diagram", "cell_table"]

THEORIES = ("continuous", "discrete", "exact")
#: Grids up to this many cells per side get their median printed in each cell.
ANNOTATE_MAX = 10
#: Errors below this (relative to s_max) are float64 rounding: the colour scales start here at the lowest.
FLOOR = 1e-16


def _float(text: str) -> float:
    try:
        return float(text) if text not in ("", None) else math.nan
    except ValueError:
        return math.nan


def cell_table(rows: list[dict[str, str]]) -> dict:
    """{(depth, hidden): {"gammas", "lrs", "median": {theory: (n_lr, n_gamma)}, "diverged", "count"}}."""
    panels: dict = {}
    for row in rows:
        key = (int(row["depth"]), int(row["hidden"]))
        cell = (_float(row["lr"]), _float(row["gamma"]))
        p = panels.setdefault(key, {})
        c = p.setdefault(cell, {"n": 0, "div": 0, **{th: [] for th in THEORIES}})
        c["n"] += 1
        c["div"] += row.get("diverged") == "True"
        for th in THEORIES:
            v = _float(row.get(f"err_{th}", ""))
            if math.isfinite(v):
                c[th].append(v)
    out = {}
    for key, cells in sorted(panels.items()):
        lrs = sorted({lr for lr, _ in cells})
        gammas = sorted({g for _, g in cells})
        med = {th: np.full((len(lrs), len(gammas)), np.nan) for th in THEORIES}
        div = np.zeros((len(lrs), len(gammas)), dtype=int)
        count = np.zeros_like(div)
        for (lr, g), c in cells.items():
            i, j = lrs.index(lr), gammas.index(g)
            div[i, j], count[i, j] = c["div"], c["n"]
            for th in THEORIES:
                if c[th]:
                    med[th][i, j] = float(np.median(c[th]))
        out[key] = {"lrs": lrs, "gammas": gammas, "median": med, "diverged": div, "count": count}
    return out


def phase_diagram(rows: list[dict[str, str]], path) -> Path:
    """Draw the phase diagram of sweep CSV ``rows`` to ``path`` (PNG); returns the path."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import NullFormatter

    from .report import save_figure

    table = cell_table(rows)
    n_rows = max(1, len(table))
    # a fixed layout in inches (constrained/tight layout would double the drawing time of this small figure)
    width, height = 5.0 * len(THEORIES) + 1.2, 3.4 * n_rows + 0.9
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.95 / width, bottom=0.75 / height, top=1 - 0.6 / height,
                        wspace=0.45, hspace=0.4)
    axes = fig.subplots(n_rows, len(THEORIES), squeeze=False)
    if not table:
        for ax in axes.flat:
            ax.set_axis_off()
        axes[0, 0].text(0.5, 0.5, "no runs", ha="center", va="center", transform=axes[0, 0].transAxes)
        return save_figure(fig, path, bbox_inches=None)
    norms = {}
    for th in THEORIES:  # one colour scale per theory (column)
        values = np.concatenate([p["median"][th].ravel() for p in table.values()])
        values = np.maximum(values[np.isfinite(values) & (values > 0)], FLOOR)
        norms[th] = (LogNorm(vmin=values.min(), vmax=max(values.max(), values.min() * 10), clip=True)
                     if values.size else None)
    cmap = colormaps["viridis"].with_extremes(bad="0.85")
    for row_axes, ((depth, hidden), p) in zip(axes, table.items()):
        lrs, gammas = p["lrs"], p["gammas"]
        annotate = len(lrs) <= ANNOTATE_MAX and len(gammas) <= ANNOTATE_MAX
        for ax, th in zip(row_axes, THEORIES):
            data = np.ma.masked_invalid(np.where(p["median"][th] > 0, p["median"][th], np.nan))
            image = ax.imshow(data, origin="lower", aspect="auto", cmap=cmap, norm=norms[th], interpolation="nearest")
            if norms[th] is not None:
                bar = fig.colorbar(image, ax=ax, fraction=0.07, pad=0.02, label=f"{th} error (median)")
                bar.ax.yaxis.set_minor_formatter(NullFormatter())  # decade labels only: minor ones collide
            ax.set_xticks(range(len(gammas)), [f"{g:g}" for g in gammas], rotation=45 if len(gammas) > 4 else 0)
            ax.set_yticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
            ax.set_xlabel("init scale γ")
            ax.set_ylabel("learning rate")
            shape = f"depth {depth}" + (f", hidden {hidden}" if depth > 1 else "")
            ax.set_title(f"{th} — {shape}", fontsize=10)
            for i in range(len(lrs)):
                for j in range(len(gammas)):
                    k, n = p["diverged"][i, j], p["count"][i, j]
                    if k:
                        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="xxx", edgecolor="red",
                                               linewidth=0.0))
                    if annotate:
                        v = p["median"][th][i, j]
                        label = f"{v:.1e}" if math.isfinite(v) else ""
                        if k:
                            label = (label + "\n" if label else "") + f"div {k}/{n}"
                        if label:
                            ax.text(j, i, label, ha="center", va="center", fontsize=7, color="k",
                                    bbox={"facecolor": "white", "alpha": 0.6, "linewidth": 0, "pad": 1})
    fig.suptitle("Theory error over init scale × learning rate (hatched: a seed diverged; grey: no value or 0)",
                 fontsize=11)
    return save_figure(fig, path, bbox_inches=None)
