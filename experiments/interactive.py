"""What the notebooks' widgets redraw: train with the fast exact engine, predict with the exact theory, draw.

Each widget callback of ``notebooks/tutorial.ipynb`` is one call of :func:`train_with_theory` and one figure of
:mod:`experiments.plots` / :mod:`experiments.plots_rsm`, theory dashed over measured. At the tutorial's size
(8-30-10000, 250 epochs) a redraw takes well under half a second (``python bench/bench_redraw.py``). Where the
theory cannot be exact (an lr above the stable bound) the figure says so instead of drawing a curve; where the
training diverges the figure says at which epoch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

import saxe
import theory

from . import plots, plots_rsm

__all__ = ["Run", "tutorial_data", "train_with_theory", "loss_figure", "rsa_figure", "feature_figure",
           "feature_vector"]


@dataclass
class Run:
    """One trained network and its prediction: ``rec`` (or ``None`` if it diverged), ``pred`` (or ``None``)."""

    X: np.ndarray
    Y: np.ndarray
    lr: float
    gamma: float
    depth: int
    rec: saxe.TrainRecord | None
    pred: theory.Prediction | None
    s: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def t(self) -> np.ndarray:
        return np.arange(self.rec.losses.shape[0]) if self.rec is not None else np.arange(1)

    def theory_of(self, what: str, *args, **kwargs):
        if self.pred is None:
            return None
        return np.asarray(getattr(self.pred, what)(self.t, *args, **kwargs), dtype=np.float64)

    def rsm_scale(self) -> float:
        V = theory.io_svd(self.X, self.Y)[2]
        return float(np.abs(theory.rsm_from_modes(np.diag(self.s), V, self.X, self.depth)).max())


def tutorial_data(n_features: int = 10000, seed: int = 2021, extra: Sequence[float] | None = None):
    """The tutorial's tree data (float64), with an extra ±1 feature appended as the last column if given."""
    X, Y = saxe.generate_hsd(n_features=n_features, rng=seed)
    if extra is not None:
        Y = saxe.add_feature(Y, list(extra))
    return X, Y


def train_with_theory(X, Y, lr: float, gamma: float, depth: int = 2, hidden: int = 30, n_epochs: int = 250,
                      seed: int = 0, track: Sequence[int] | int = 0) -> Run:
    """Train a bias-free net (float64, the fast exact engine) and predict it with the exact theory state."""
    net = saxe.make_net(X.shape[1], [hidden] * (depth - 1), Y.shape[1]).double()
    saxe.initializer_(net, gamma, generator=torch.Generator().manual_seed(seed))
    w0 = [w.detach().numpy().copy() for w in saxe.weights(net)]
    s = theory.io_svd(X, Y)[1]
    notes = []
    try:
        rec = saxe.train(net, X, Y, n_epochs, lr, illusory_i=track, illusory_j=-1)
    except saxe.DivergenceError as exc:
        rec = None
        notes.append(f"training diverged at epoch {exc.epoch}")
    pred = None
    try:
        pred = theory.predictor(X, Y, lr, weights=w0)
    except ValueError as exc:
        notes.append("no exact theory: " + str(exc).split(":")[0])
    return Run(X, Y, lr, gamma, depth, rec, pred, s, notes)


def _message(run: Run) -> Figure:
    fig = plots.new_figure((10, 5))
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, "\n".join(run.notes) or "nothing to draw", ha="center", va="center", fontsize=13)
    return fig


def loss_figure(run: Run) -> Figure:
    """Demo 1: the loss and the singular values (normalised by s_max), theory dashed."""
    if run.rec is None:
        return _message(run)
    rec = run.rec
    modes = run.theory_of("modes")
    fig = plots.plot_loss_sv_twin(rec.losses, rec.modes, run.theory_of("loss"),
                                  None if modes is None else modes[:, : rec.modes.shape[1]], s_max=float(run.s[0]))
    if run.notes:
        fig.axes[0].set_title("; ".join(run.notes), fontsize=9, loc="left")
    return fig


def rsa_figure(run: Run, epoch: int, item_names: Sequence[str] = saxe.ITEM_NAMES) -> Figure:
    """The RSA demo: learning dynamics with ``epoch`` marked and the first hidden layer's RSM there."""
    if run.rec is None or run.rec.rsms is None:
        return _message(run)
    rec = run.rec
    epoch = int(min(max(epoch, 0), rec.losses.shape[0] - 1))
    modes = run.theory_of("modes")
    return plots_rsm.plot_rsm_dynamics(rec.losses, rec.modes, rec.rsms, epoch, list(item_names),
                                       run.theory_of("loss"), None if modes is None else modes[:, : rec.modes.shape[1]],
                                       run.theory_of("rsm"), s_max=float(run.s[0]), rsm_scale=run.rsm_scale())


def feature_vector(spec: dict[str, float], item_names: Sequence[str] = saxe.ITEM_NAMES) -> list[float]:
    """A ±1 feature from {item: value}: the items listed get their values, every other item −1."""
    lookup = {n.lower(): i for i, n in enumerate(item_names)}
    values = [-1.0] * len(item_names)
    for item, v in spec.items():
        if item.lower() not in lookup:
            raise ValueError(f"unknown item {item!r}; the items are {', '.join(item_names)}")
        values[lookup[item.lower()]] = float(v)
    return values


def feature_figure(run: Run, name: str, values: Sequence[float],
                   item_names: Sequence[str] = saxe.ITEM_NAMES) -> Figure:
    """Exercise 4: the output for the appended (last) feature on every item, measured and predicted."""
    if run.rec is None:
        return _message(run)
    theory_out = None if run.pred is None else np.asarray(run.pred.outputs(run.t, features=run.Y.shape[1] - 1))
    return plots.plot_feature_outputs(run.rec.illusions, list(item_names), name, values, theory_out)


def png(fig: Figure, dpi: int = 80) -> bytes:
    """The figure as PNG bytes (what the widgets show)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def widget_demo(draw, **controls):
    """A widget box: the ``controls`` (ipywidgets sliders…) and an image of ``draw(**values)`` kept up to date.

    Every change of a control calls ``draw`` with the current values and replaces the image. The figure goes into
    an ``ipywidgets.Image`` rather than an ``Output`` capture: a headless run (CI, the docs build) then exchanges
    no output-capture messages with a frontend that is not there, which made executions stall. The box's
    ``redraw()`` and ``image`` attributes are there for tests.
    """
    import ipywidgets as widgets

    image = widgets.Image(format="png")

    def redraw(_=None):
        image.value = png(draw(**{name: w.value for name, w in controls.items()}))

    for w in controls.values():
        w.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([*controls.values(), image])
    box.redraw, box.image, box.controls = redraw, image, controls
    return box
