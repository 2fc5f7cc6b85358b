"""The phase diagram of ``saxe sweep``: γ × lr heatmaps of each theory's error where something was learned, and
each cell's run statuses (:mod:`experiments.sweep_status`) drawn so that failure never looks like agreement.

One row of panels per (depth, hidden) in the rows, one column per theory (continuous, discrete, exact). A cell's
colour is the median over its seeds of ``err_<theory>`` (the ``modes`` error of :mod:`experiments.metrics`),
taken **only over the seeds whose status counts as agreement** (``converged`` or ``learning``,
:func:`experiments.sweep_status.agreement`), on a logarithmic colour scale of its own per theory (column), with its
own colour bar: one scale shared by an exact theory (1e-14) and a closed form (1) would spend its colours on the
gap between them and paint each panel a single colour. Values below :data:`FLOOR` (float64 rounding of s_max) take
the lowest colour. A cell without such a seed is grey. Statuses on top:

* ``not_learned`` (the run stayed at its saddle; its error is tiny and meaningless): grey ``///`` hatching and
  the text ``not learned`` (``not learned k/n`` when k of the n seeds);
* ``diverged``: red ``xxx`` hatching and ``diverged`` (``div k/n``);
* ``learning`` (something learned, not settled): a white triangle in the cell's corner and ``learning k/n``;
* rows without a ``status`` (a CSV from before statuses): ``no status k/n``, never coloured.

A legend under the panels names them. Works from the CSV rows (strings), so it draws a resumed or merged sweep as
well; written atomically with :func:`experiments.report.save_figure`. Drawn on a fixed layout (no
constrained/tight layout: it would double the drawing time) with one collection per status and panel.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .sweep_status import STATUSES, agreement

__all__ = ["phase_diagram", "draw_phase_diagram", "cell_table", "STATUS_STYLE", "CELL_TEXT"]

THEORIES = ("continuous", "discrete", "exact")
#: Grids up to this many cells per side get their median and status counts printed in each cell.
ANNOTATE_MAX = 10
#: Errors below this (relative to s_max) are float64 rounding: the colour scales start here at the lowest.
FLOOR = 1e-16
#: The hatched statuses: hatch, edge colour, legend text.
STATUS_STYLE = {
    "not_learned": ("///", "0.3", "not learned: still at the saddle (its error is no agreement)"),
    "diverged": ("xxx", "red", "diverged"),
}
#: Counted per cell besides the statuses of :data:`experiments.sweep_status.STATUSES`: rows without a status.
UNKNOWN = "unknown"
#: Cell text per counted status: (when all n seeds have it, when k of the n seeds have it).
CELL_TEXT = {"not_learned": ("not learned", "not learned {k}/{n}"), "diverged": ("diverged", "div {k}/{n}"),
             "learning": ("learning {k}/{n}", "learning {k}/{n}"), UNKNOWN: ("no status {k}/{n}", "no status {k}/{n}")}


def _float(text: str | None) -> float:
    try:
        return float(text) if text not in ("", None) else math.nan
    except ValueError:
        return math.nan


def _status(row: dict[str, str]) -> str:
    status = row.get("status", "")
    if row.get("diverged") == "True":
        return "diverged"
    return status if status in STATUSES else UNKNOWN


def cell_table(rows: list[dict[str, str]]) -> dict:
    """{(depth, hidden): {"lrs", "gammas", "median": {theory: (n_lr, n_gamma)}, "count", "converged", "learning",
    "not_learned", "diverged", "unknown"}}: medians over the seeds that count as agreement only; counts per status."""
    kinds = ("converged", "learning", "not_learned", "diverged", UNKNOWN)
    panels: dict = {}
    for row in rows:
        key = (int(row["depth"]), int(row["hidden"]))
        cell = (_float(row["lr"]), _float(row["gamma"]))
        c = panels.setdefault(key, {}).setdefault(cell, {"n": 0, **dict.fromkeys(kinds, 0),
                                                         **{th: [] for th in THEORIES}})
        c["n"] += 1
        c[_status(row)] += 1
        if agreement(row):
            for th in THEORIES:
                v = _float(row.get(f"err_{th}", ""))
                if math.isfinite(v):
                    c[th].append(v)
    out = {}
    for key, cells in sorted(panels.items()):
        lrs = sorted({lr for lr, _ in cells})
        gammas = sorted({g for _, g in cells})
        shape = (len(lrs), len(gammas))
        med = {th: np.full(shape, np.nan) for th in THEORIES}
        counts = {k: np.zeros(shape, dtype=int) for k in ("count", *kinds)}
        for (lr, g), c in cells.items():
            i, j = lrs.index(lr), gammas.index(g)
            counts["count"][i, j] = c["n"]
            for k in kinds:
                counts[k][i, j] = c[k]
            for th in THEORIES:
                if c[th]:
                    med[th][i, j] = float(np.median(c[th]))
        out[key] = {"lrs": lrs, "gammas": gammas, "median": med, **counts}
    return out


def _cell_label(p: dict, th: str, i: int, j: int) -> str:
    v, n = p["median"][th][i, j], p["count"][i, j]
    lines = [f"{v:.1e}"] if math.isfinite(v) else []
    for kind, (every, some) in CELL_TEXT.items():
        k = p[kind][i, j]
        if k:
            lines.append((every if k == n else some).format(k=k, n=n))
    return "\n".join(lines)


def draw_phase_diagram(rows: list[dict[str, str]]):
    """The phase diagram of sweep CSV ``rows`` as a matplotlib Figure (Agg canvas), statuses drawn (module
    docstring): per panel one ``PatchCollection`` per hatched status (gid = the status) and one scatter (gid
    ``learning``); one figure legend."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PatchCollection
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle
    from matplotlib.ticker import NullLocator

    table = cell_table(rows)
    n_rows = max(1, len(table))
    # a fixed layout in inches (constrained/tight layout would double the drawing time of this small figure)
    width, height = 5.0 * len(THEORIES) + 1.2, 3.4 * n_rows + 1.3
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.95 / width, bottom=1.15 / height, top=1 - 0.6 / height,
                        wspace=0.45, hspace=0.4)
    axes = fig.subplots(n_rows, len(THEORIES), squeeze=False)
    if not table:
        for ax in axes.flat:
            ax.set_axis_off()
        axes[0, 0].text(0.5, 0.5, "no runs", ha="center", va="center", transform=axes[0, 0].transAxes)
        return fig
    norms = {}
    for th in THEORIES:  # one colour scale per theory (column), from the runs that learned something
        values = np.concatenate([p["median"][th].ravel() for p in table.values()])
        values = np.maximum(values[np.isfinite(values) & (values > 0)], FLOOR)
        norms[th] = (LogNorm(vmin=values.min(), vmax=max(values.max(), values.min() * 10), clip=True)
                     if values.size else None)
    cmap = colormaps["viridis"].with_extremes(bad="0.85")
    for row_axes, ((depth, hidden), p) in zip(axes, table.items()):
        lrs, gammas = p["lrs"], p["gammas"]
        annotate = len(lrs) <= ANNOTATE_MAX and len(gammas) <= ANNOTATE_MAX
        learning = np.argwhere(p["learning"] > 0)
        for ax, th in zip(row_axes, THEORIES):
            data = np.ma.masked_invalid(np.where(p["median"][th] > 0, p["median"][th], np.nan))
            image = ax.imshow(data, origin="lower", aspect="auto", cmap=cmap, norm=norms[th], interpolation="nearest")
            if norms[th] is not None:
                bar = fig.colorbar(image, ax=ax, fraction=0.07, pad=0.02, label=f"{th} error (median, learned)")
                bar.ax.yaxis.set_minor_locator(NullLocator())  # decade ticks only: minor labels collide, and cost time
            ax.set_xticks(range(len(gammas)), [f"{g:g}" for g in gammas], rotation=45 if len(gammas) > 4 else 0)
            ax.set_yticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
            ax.set_xlabel("init scale γ")
            ax.set_ylabel("learning rate")
            shape = f"depth {depth}" + (f", hidden {hidden}" if depth > 1 else "")
            ax.set_title(f"{th} — {shape}", fontsize=10)
            for kind, (hatch, colour, _) in STATUS_STYLE.items():
                cells = np.argwhere(p[kind] > 0)
                if cells.size:
                    patches = [Rectangle((j - 0.5, i - 0.5), 1, 1) for i, j in cells]
                    ax.add_collection(PatchCollection(patches, facecolor="none", edgecolor=colour, hatch=hatch,
                                                      linewidth=0.0, gid=kind))
            if learning.size:
                ax.scatter(learning[:, 1] + 0.38, learning[:, 0] + 0.34, marker="^", s=22, c="white",
                           edgecolors="k", linewidths=0.6, zorder=3, gid="learning")
            if annotate:
                for i in range(len(lrs)):
                    for j in range(len(gammas)):
                        label = _cell_label(p, th, i, j)
                        if label:
                            ax.text(j, i, label, ha="center", va="center", fontsize=7, color="k",
                                    bbox={"facecolor": "white", "alpha": 0.6, "linewidth": 0, "pad": 1})
    handles = [Patch(facecolor=cmap(0.55), label="colour: median error of the runs that learned something"),
               *(Patch(facecolor="0.85", edgecolor=colour, hatch=hatch, linewidth=0.0, label=legend)
                 for hatch, colour, legend in STATUS_STYLE.values()),
               Line2D([], [], marker="^", linestyle="none", markerfacecolor="white", markeredgecolor="k",
                      label="learning: not settled (still descending or oscillating)"),
               Patch(facecolor="0.85", label="grey: no run learned anything")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle("Theory error over init scale × learning rate, where something was learned", fontsize=11)
    return fig


def phase_diagram(rows: list[dict[str, str]], path) -> Path:
    """Draw the phase diagram of sweep CSV ``rows`` (:func:`draw_phase_diagram`) to ``path`` (PNG); returns the
    path."""
    from .report import save_figure

    return save_figure(draw_phase_diagram(rows), path, bbox_inches=None)
