"""Figures: the Neuromatch tutorial's plotting functions, reusable, with theory drawn dashed on top.

Every function takes arrays (and optional theory arrays of the same shape) and **returns** a
``matplotlib.figure.Figure``; nothing is shown (no ``plt.show``) and pyplot's global state is not touched:
figures are created with ``Figure()`` on an Agg canvas, so this works headless and in any backend. Save them
with :func:`experiments.report.save_figure`.

Conventions: row k of every record is the state after k updates (``saxe.train``), so the x axis of every
learning curve is ``0 … n_epochs``. Measured curves are solid; theory is drawn on top as thin black dashes
and labelled :data:`THEORY_LABEL`. Singular values are divided by ``s_max`` — pass the largest singular value of
Σʸˣ, what the top mode saturates at, so that a run that learns nothing stays near 0 instead of being blown up to
1 — or, without it, by the largest *measured* one (as the tutorial); the theory by the same factor. Loss axes
never use an offset (no "1e-7+1" labels). RSM figures: :mod:`experiments.plots_rsm`.

Fixed tutorial bugs: ``plt.cm.get_cmap`` (removed from matplotlib) → ``matplotlib.colormaps[..].resampled``;
``plot_loss_sv_rsm`` read a global ``item_names`` and sized its ticks by the number of singular values
(→ explicit ``item_names``, ticks per item); ``plot_tree_data`` titled the appended-feature figure
"10 random Features" (→ "last 10 of N features").
"""
from __future__ import annotations

from typing import Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from mpl_toolkits.axes_grid1 import make_axes_locatable

__all__ = [
    "THEORY_LABEL", "MEASURED_LABEL", "TREE_FEATURES", "new_figure", "plot_tree_data", "plot_hier_data",
    "plot_loss", "plot_loss_sv", "plot_loss_sv_twin", "plot_ills_sv_twin", "plot_feature_outputs",
]

THEORY_LABEL = "theory (exact SGD map)"
MEASURED_LABEL = "measured"
_THEORY_STYLE = {"color": "k", "linestyle": (0, (4, 3)), "linewidth": 1.2, "zorder": 5}

#: The tutorial's ten illustrative features (rows: items, columns: ``saxe.FEATURE_NAMES``), ±1.
TREE_FEATURES = np.array([[int(c) for c in row] for row in (
    "11111111", "00000000", "00001111", "11110000", "00000011",
    "00110000", "11000000", "00001100", "01110000", "00001101")]).T * 2.0 - 1.0


def new_figure(figsize=(10, 5), **kwargs) -> Figure:
    """A ``Figure`` on its own Agg canvas (no pyplot, no global figure registry)."""
    fig = Figure(figsize=figsize, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def _cmap(name: str, n: int):
    return matplotlib.colormaps[name].resampled(max(int(n), 1))


def _arr(name: str, value, ndim: int) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    return a


def _epochs(n_rows: int, epochs) -> np.ndarray:
    x = np.arange(n_rows) if epochs is None else np.asarray(epochs, dtype=np.float64)
    if x.shape != (n_rows,):
        raise ValueError(f"epochs must have one entry per record row ({n_rows}), got shape {x.shape}")
    return x


def _theory(name: str, value, shape: tuple[int, ...]) -> np.ndarray | None:
    if value is None:
        return None
    a = np.asarray(value, dtype=np.float64)
    if a.shape != shape:
        raise ValueError(f"{name} must have the measured shape {shape}, got {a.shape}")
    return a


def _sv_scale(modes: np.ndarray, scale: float | None = None) -> float:
    """``scale`` if given (and > 0), else the largest entry of ``modes`` (1 when there is none)."""
    if scale is not None and np.isfinite(scale) and scale > 0:
        return float(scale)
    m = float(np.max(modes)) if modes.size else 0.0
    return m if m > 0 and np.isfinite(m) else 1.0


def _legend(ax, measured_color: str, theory: bool, loc="best", **kwargs):
    handles = [Line2D([], [], color=measured_color, lw=2, label=MEASURED_LABEL)]
    if theory:
        handles.append(Line2D([], [], label=THEORY_LABEL, **_THEORY_STYLE))
    ax.legend(handles=handles, loc=loc, fontsize=9, framealpha=0.85, **kwargs)


def _plot_svs(ax, x, modes, theory_modes, cmap_name: str, s_max: float | None = None):
    """Normalised singular values (solid, one colour each) and the theory (black dashes) on ``ax``."""
    scale = _sv_scale(modes, s_max)
    cmap = _cmap(cmap_name, modes.shape[1])
    for i in range(modes.shape[1]):
        ax.plot(x, modes[:, i] / scale, c=cmap(i), lw=2)
    if theory_modes is not None:
        for i in range(theory_modes.shape[1]):
            ax.plot(x, theory_modes[:, i] / scale, **_THEORY_STYLE)


# ------------------------------------------------------------------------------------------------ data
def plot_tree_data(item_names: Sequence[str] | None = None, features=None, new_feature: str | None = None,
                   feature_names: Sequence[str] | None = None, n_show: int = 10) -> Figure:
    """Labels (one-hot items) beside features, cyan = no (−1), magenta = yes (+1).

    Without ``features``: the tutorial's ten named illustrative features (:data:`TREE_FEATURES`). With
    ``features`` (P, N): its last ``n_show`` columns, the last one ticked ``new_feature`` (the appended feature).
    """
    from saxe import FEATURE_NAMES, ITEM_NAMES

    item_names = list(ITEM_NAMES if item_names is None else item_names)
    if features is None:
        im2, xnames, title = TREE_FEATURES, list(feature_names or FEATURE_NAMES), "10 illustrative features"
        xticks = np.arange(im2.shape[1])
    else:
        f = _arr("features", features, 2)
        n = min(n_show, f.shape[1])
        im2, title = f[:, -n:], f"Last {n} of {f.shape[1]} features"
        xticks, xnames = [n - 1], [new_feature or f"feature {f.shape[1] - 1}"]
    n_items = len(item_names)
    if im2.shape[0] != n_items:
        raise ValueError(f"features must have one row per item ({n_items}), got {im2.shape[0]}")
    cmap = ListedColormap(["cyan", "magenta"])
    fig = new_figure((12, 7))
    gs = fig.add_gridspec(1, 2, width_ratios=[1, 1.35])
    ax1, ax2 = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    ax1.imshow(np.eye(n_items), cmap=cmap)
    implt = ax2.imshow(im2, cmap=cmap, vmin=-1.0, vmax=1.0)
    cax = make_axes_locatable(ax2).append_axes("right", size="5%", pad=0.1)
    cbar = fig.colorbar(implt, cax=cax, ticks=[-0.5, 0.5])
    cbar.ax.set_yticklabels(["no", "yes"])
    ax1.set_title("Labels")
    for ax in (ax1, ax2):
        ax.set_yticks(np.arange(n_items), labels=item_names)
    ax1.set_xticks(np.arange(n_items), labels=item_names, rotation="vertical")
    ax2.set_title(title)
    ax2.set_xticks(xticks, labels=xnames, rotation="vertical")
    fig.tight_layout()
    return fig


def plot_hier_data(labels, features, which: str = "all samples", subplot_ratio=(1, 2)) -> Figure:
    """The tutorial's ``plot_x_y_hier_data`` / ``plot_x_y_hier_one``: labels and features as images.

    ``labels`` (P, N_in), ``features`` (P, N_out); pass one row of each (e.g. ``labels[:1]``) and
    ``which="a single sample"`` for the one-sample figure. Wide feature arrays are drawn with auto aspect.
    """
    im1, im2 = _arr("labels", labels, 2), _arr("features", features, 2)
    fig = new_figure((12, 5) if im1.shape[0] > 1 else (12, 1.6))
    gs = fig.add_gridspec(1, 2, width_ratios=list(subplot_ratio))
    ax0, ax1 = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    ax0.imshow(im1, cmap="cool", aspect="auto" if im1.shape[0] == 1 else "equal")
    ax1.imshow(im2, cmap="cool", aspect="auto", interpolation="nearest")
    ax0.set_title(f"Labels of {which}")
    ax1.set_title(f"Features of {which} ({im2.shape[1]} features)")
    ax0.set_axis_off()
    ax1.set_axis_off()
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------- learning curves
def plot_loss(losses, theory=None, *, title="Training loss (Mean Squared Error)", color="r",
              epochs=None) -> Figure:
    """Loss per epoch (row k = after k updates), theory dashed on top."""
    losses = _arr("losses", losses, 1)
    theory = _theory("theory", theory, losses.shape)
    x = _epochs(losses.shape[0], epochs)
    fig = new_figure((10, 5))
    ax = fig.add_subplot()
    ax.plot(x, losses, color=color, lw=2)
    if theory is not None:
        ax.plot(x, theory, **_THEORY_STYLE)
    ax.set_xlabel("Epoch")
    ax.set_ylabel("MSE")
    ax.set_title(title)
    ax.ticklabel_format(axis="y", useOffset=False)
    _legend(ax, color, theory is not None, loc="upper right")
    fig.tight_layout()
    return fig


def plot_loss_sv(losses, modes, theory_loss=None, theory_modes=None, *, epochs=None,
                 s_max: float | None = None) -> Figure:
    """Two panels: the loss, and the singular values of W_tot normalised by ``s_max`` (Set1 colours)."""
    losses, modes = _arr("losses", losses, 1), _arr("modes", modes, 2)
    theory_loss = _theory("theory_loss", theory_loss, losses.shape)
    theory_modes = _theory("theory_modes", theory_modes, modes.shape)
    x = _epochs(losses.shape[0], epochs)
    fig = new_figure((10, 10))
    plot1, plot2 = fig.subplots(2, 1, sharex=True)
    plot1.set_title("Training loss (Mean Squared Error)")
    plot1.plot(x, losses, color="r", lw=2)
    if theory_loss is not None:
        plot1.plot(x, theory_loss, **_THEORY_STYLE)
    plot1.ticklabel_format(axis="y", useOffset=False)
    _legend(plot1, "r", theory_loss is not None, loc="upper right")
    plot2.set_title("Evolution of singular values (modes), normalised")
    _plot_svs(plot2, x, modes, theory_modes, "Set1", s_max)
    _legend(plot2, "grey", theory_modes is not None, loc="lower right")
    plot2.set_xlabel("Epoch")
    fig.tight_layout()
    return fig


def _twin(ax1, x, curve, theory_curve, modes, theory_modes, ylabel: str, lw=1.5, s_max: float | None = None):
    ax1.set_xlabel("Epoch")
    ax1.set_ylabel(ylabel, c="r")
    ax1.tick_params(axis="y", labelcolor="r")
    ax1.ticklabel_format(axis="y", useOffset=False)
    ax1.plot(x, curve, color="r", lw=lw)
    if theory_curve is not None:
        ax1.plot(x, theory_curve, **_THEORY_STYLE)
    ax2 = ax1.twinx()
    ax2.set_ylabel("Singular values (modes), normalised", c="b")
    ax2.tick_params(axis="y", labelcolor="b")
    _plot_svs(ax2, x, modes, theory_modes, "winter", s_max)
    ax1.set_zorder(ax2.get_zorder() + 1)  # the red curve on top of the singular values
    ax1.patch.set_visible(False)
    _legend(ax1, "grey", theory_curve is not None or theory_modes is not None, loc="lower right",
            bbox_to_anchor=(1.0, 1.0), borderaxespad=0.2)  # above the axes: never over a curve
    return ax2


def plot_loss_sv_twin(losses, modes, theory_loss=None, theory_modes=None, *, epochs=None,
                      s_max: float | None = None) -> Figure:
    """The tutorial's twin-axis "Learning Dynamics": loss (red, left) and singular values (winter, right)."""
    losses, modes = _arr("losses", losses, 1), _arr("modes", modes, 2)
    theory_loss = _theory("theory_loss", theory_loss, losses.shape)
    theory_modes = _theory("theory_modes", theory_modes, modes.shape)
    x = _epochs(losses.shape[0], epochs)
    fig = new_figure((10, 5))
    ax1 = fig.add_subplot()
    ax1.set_title("Learning Dynamics")
    _twin(ax1, x, losses, theory_loss, modes, theory_modes, "Mean Squared Error", s_max=s_max)
    fig.tight_layout()
    return fig


def plot_ills_sv_twin(illusions, modes, ill_label: str, theory_illusions=None, theory_modes=None, *,
                      epochs=None, s_max: float | None = None) -> Figure:
    """Network prediction for one item/feature (red, left, in [−1, 1]) beside the singular values."""
    ill, modes = _arr("illusions", illusions, 1), _arr("modes", modes, 2)
    theory_illusions = _theory("theory_illusions", theory_illusions, ill.shape)
    theory_modes = _theory("theory_modes", theory_modes, modes.shape)
    x = _epochs(ill.shape[0], epochs)
    fig = new_figure((10, 5))
    ax1 = fig.add_subplot()
    ax1.set_title("Network training and the Illusory Correlations")
    ax1.axhline(0.0, color="0.7", lw=0.8, zorder=0)
    _twin(ax1, x, ill, theory_illusions, modes, theory_modes, ill_label, lw=3, s_max=s_max)
    ax1.set_ylim(-1.05, 1.05)
    fig.tight_layout()
    return fig


def plot_feature_outputs(outputs, item_names: Sequence[str], feature: str, targets, theory_outputs=None, *,
                         epochs=None) -> Figure:
    """The network's output for one feature on every item over training (one colour per item), theory dashed.

    Items whose target the tree already implies rise straight to it; an item that is the exception to its
    branch (``targets`` against the grain of its siblings) first follows its siblings — the illusory
    correlation — and only turns when the finer mode that separates it is learned.
    """
    outputs = _arr("outputs", outputs, 2)
    item_names = [str(n) for n in item_names]
    if outputs.shape[1] != len(item_names):
        raise ValueError(f"outputs must be (n_epochs+1, P) with P = len(item_names) = {len(item_names)}, got "
                         f"{outputs.shape}")
    targets = np.asarray(targets, dtype=float)
    theory_outputs = _theory("theory_outputs", theory_outputs, outputs.shape)
    x = _epochs(outputs.shape[0], epochs)
    fig = new_figure((10, 5))
    ax = fig.add_subplot()
    cmap = _cmap("tab10", len(item_names))
    for i, name in enumerate(item_names):
        ax.plot(x, outputs[:, i], color=cmap(i), lw=2.2, alpha=0.8, label=f"{name} (target {targets[i]:+g})")
        if theory_outputs is not None:
            ax.plot(x, theory_outputs[:, i], **_THEORY_STYLE)
    if theory_outputs is not None:
        ax.plot([], [], label=THEORY_LABEL, **_THEORY_STYLE)
    ax.axhline(0.0, color="0.7", lw=0.8, zorder=0)
    ax.set(xlabel="Epoch", ylabel=f"output for {feature}", title=f"The network's '{feature}' for every item")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9)
    fig.tight_layout()
    return fig



