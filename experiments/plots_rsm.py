"""RSM figures: the tutorial's ``plot_loss_sv_rsm`` (learning dynamics beside the RSM at one epoch) and the RSM's
evolution as an animated GIF, in place of the tutorial's epoch slider; measured and predicted side by side.

RSMs are divided by ``rsm_scale``: by default the largest measured entry over all epochs (as the tutorial); pass
the RSM the network has once every mode is learned (``X V S^{2/L} Vᵀ Xᵀ``, data only) so that a run that learns
nothing shows an empty RSM, not one blown up to full scale. Every panel carries its colour bar.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib
import numpy as np
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.figure import Figure
from mpl_toolkits.axes_grid1 import make_axes_locatable

from .plots import MEASURED_LABEL, THEORY_LABEL, _arr, _sv_scale, _theory, _twin, new_figure

__all__ = ["plot_rsm_dynamics", "RsmAnimation", "animate_rsm", "save_gif", "RSM_CMAP"]

RSM_CMAP = "Purples"


def _rsm_panel(fig, ax, rsm, item_names, title: str, colorbar: bool, vmin: float, fontsize=None):
    n = len(item_names)
    im = ax.imshow(rsm, cmap=RSM_CMAP, vmin=vmin, vmax=1.0)
    ax.set_title(title, fontsize=fontsize)
    ax.set_yticks(np.arange(n), labels=item_names, fontsize=fontsize and fontsize * 0.8)
    ax.set_xticks(np.arange(n), labels=item_names, rotation="vertical", fontsize=fontsize and fontsize * 0.8)
    if colorbar:
        cax = make_axes_locatable(ax).append_axes("right", size="5%", pad=0.1)
        cbar = fig.colorbar(im, cax=cax, ticks=[vmin, 1.0])
        cbar.ax.set_ylabel("Similarity (normalised)", fontsize=fontsize or 10)
    return im


def _rsm_args(rsms, item_names, theory_rsms, rsm_scale):
    rsms = _arr("rsms", rsms, 3)
    if rsms.shape[1] != rsms.shape[2] or rsms.shape[1] != len(item_names):
        raise ValueError(f"rsms must be (n_epochs+1, P, P) with P = len(item_names) = {len(item_names)}, got "
                         f"{rsms.shape}")
    theory_rsms = _theory("theory_rsms", theory_rsms, rsms.shape)
    scale = _sv_scale(rsms, rsm_scale)
    return rsms / scale, None if theory_rsms is None else theory_rsms / scale


def plot_rsm_dynamics(losses, modes, rsms, epoch: int, item_names: Sequence[str], theory_loss=None,
                      theory_modes=None, theory_rsms=None, *, vmin: float = 0.0, s_max: float | None = None,
                      rsm_scale: float | None = None, layer: str = "first hidden layer") -> Figure:
    """The tutorial's ``plot_loss_sv_rsm``: learning dynamics with ``epoch`` highlighted, and the RSM at it.

    With ``theory_rsms`` the predicted RSM is drawn beside the measured one. RSMs are divided by ``rsm_scale``
    (module docstring); entries below ``vmin`` (0, as the tutorial) show as white. ``s_max`` normalises the
    singular values (:func:`experiments.plots.plot_loss_sv`). ``layer`` names the layer the RSM is of.
    """
    losses, modes = _arr("losses", losses, 1), _arr("modes", modes, 2)
    item_names = list(item_names)
    rsms, theory_rsms = _rsm_args(rsms, item_names, theory_rsms, rsm_scale)
    theory_loss = _theory("theory_loss", theory_loss, losses.shape)
    theory_modes = _theory("theory_modes", theory_modes, modes.shape)
    n_ep = losses.shape[0]
    if not (isinstance(epoch, (int, np.integer)) and 0 <= epoch < n_ep):
        raise ValueError(f"epoch must be an integer in [0, {n_ep - 1}], got {epoch!r}")
    x = np.arange(n_ep)
    with_theory = theory_rsms is not None
    fig = new_figure((19, 5.5) if with_theory else (14, 5.5))
    gs = fig.add_gridspec(1, 3 if with_theory else 2, width_ratios=[5, 3, 3] if with_theory else [5, 3])
    ax1 = fig.add_subplot(gs[0])
    ax1.set_title("Learning Dynamics", fontsize=16, loc="left")  # the legend sits top right
    ax2 = _twin(ax1, x, losses, theory_loss, modes, theory_modes, "Mean Squared Error", s_max=s_max)
    ax1.axvspan(epoch - 2, epoch + 2, alpha=0.2, color="m")
    ax1.set_xlim(-1, n_ep)
    ax2.set_xlim(-1, n_ep)
    ax0 = fig.add_subplot(gs[1])
    panels = [(ax0, rsms[epoch], MEASURED_LABEL)]
    if with_theory:
        panels.append((fig.add_subplot(gs[2]), theory_rsms[epoch], THEORY_LABEL))
    for ax, rsm, label in panels:
        _rsm_panel(fig, ax, rsm, item_names, f"{layer} RSM, epoch {epoch}\n({label})", True, vmin, fontsize=13)
        peak = float(np.abs(rsm).max())
        if peak < 0.01:  # say so, rather than leave a blank-looking panel
            ax.text(0.5, 0.5, f"all entries ≈ 0\n(max |RSM| = {peak:.1e}\nof the reference scale)",
                    transform=ax.transAxes, ha="center", va="center", fontsize=11, color="0.35")
    # a fixed layout: tight_layout would draw the whole figure once more (a third of an interactive redraw)
    fig.subplots_adjust(left=0.045, right=0.975, bottom=0.2, top=0.86, wspace=0.42)
    return fig


class RsmAnimation:
    """The RSM's evolution over epochs (the tutorial's epoch slider), ready to save with :func:`save_gif`.

    ``fig`` is the figure, ``frames`` the epochs shown, ``update(epoch)`` redraws the data for one epoch and
    returns the artists it changed. :meth:`funcanimation` gives a ``FuncAnimation`` for interactive use.
    """

    def __init__(self, fig: Figure, frames: list[int], update, artists: list, interval_ms: int):
        self.fig, self.frames, self.update, self.artists, self.interval_ms = fig, frames, update, artists, interval_ms

    def funcanimation(self) -> FuncAnimation:
        return FuncAnimation(self.fig, self.update, frames=self.frames, interval=self.interval_ms, blit=False,
                             repeat=False)


def animate_rsm(rsms, item_names: Sequence[str], frames: Sequence[int] | None = None, theory_rsms=None, *,
                vmin: float = 0.0, figsize=(7.2, 3.4), dpi: int = 80, interval_ms: int = 120,
                rsm_scale: float | None = None) -> RsmAnimation:
    """The RSM over epochs (measured, and the prediction beside it), in place of the tutorial's slider.

    ``frames`` are the epochs (record rows) to show, e.g. ``range(0, n + 1, 5)``. Write it with
    :func:`save_gif`. One colour bar (right) for all panels; ``rsm_scale`` as in the module docstring.
    """
    item_names = list(item_names)
    rsms, theory_rsms = _rsm_args(rsms, item_names, theory_rsms, rsm_scale)
    frames = [int(f) for f in (range(rsms.shape[0]) if frames is None else frames)]
    if not frames or any(not (0 <= f < rsms.shape[0]) for f in frames):
        raise ValueError(f"frames must be a non-empty list of epochs in [0, {rsms.shape[0] - 1}]")
    panels = [(MEASURED_LABEL, rsms)] + ([(THEORY_LABEL, theory_rsms)] if theory_rsms is not None else [])
    fig = new_figure(figsize if theory_rsms is not None else (figsize[0] * 0.6, figsize[1]), dpi=dpi)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    images = [_rsm_panel(fig, ax, data[frames[0]], item_names, name, i == len(panels) - 1, vmin, fontsize=9)
              for i, (ax, (name, data)) in enumerate(zip(axes, panels))]
    suptitle = fig.suptitle(f"RSM at epoch {frames[0]}", fontsize=11)
    fig.tight_layout(rect=(0, 0.02, 1, 1))  # equal-aspect images: tight_layout alone clips the tick labels

    def update(k):
        for im, (_, data) in zip(images, panels):
            im.set_data(data[k])
        suptitle.set_text(f"RSM at epoch {k}")
        return [*images, suptitle]

    return RsmAnimation(fig, frames, update, [*images, suptitle], interval_ms)


class _AtomicPillowWriter(PillowWriter):
    """``PillowWriter`` fed pre-rendered RGBA buffers, whose GIF goes through ``report.atomic_write``."""

    cmap_name = RSM_CMAP

    def grab_rgba(self, rgba: np.ndarray) -> None:
        from PIL import Image

        self._frames.append(Image.fromarray(np.ascontiguousarray(rgba[..., :3])))

    def finish(self):
        from PIL import Image

        from .report import atomic_write

        # One fixed palette for all frames (the colormap's colours + greys for text), no dithering: flat colours
        # stay flat, so the GIF compresses well and does not flicker.
        colours = np.vstack([matplotlib.colormaps[self.cmap_name](np.linspace(0, 1, 160))[:, :3],
                             np.repeat(np.linspace(0, 1, 96)[:, None], 3, axis=1)])
        palette = Image.new("P", (1, 1))
        palette.putpalette((colours * 255).round().astype(np.uint8).ravel().tolist())
        frames = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in self._frames]
        with atomic_write(self.outfile, "wb") as fh:
            frames[0].save(fh, format="GIF", save_all=True, append_images=frames[1:],
                           duration=int(1000 / self.fps), loop=0)


def save_gif(animation: RsmAnimation, path, *, fps: float = 8, progress=None):
    """Write ``animation`` as an animated GIF with matplotlib's PillowWriter, atomically (temp file + rename).

    The static parts are drawn once and each frame only redraws the changed artists (blitting), so a frame
    costs milliseconds instead of a full render. ``progress(i, n)`` is called after each frame.
    """
    from pathlib import Path

    path = Path(path)
    fig, canvas = animation.fig, animation.fig.canvas
    for a in animation.artists:
        a.set_animated(True)
    canvas.draw()  # everything but the animated artists
    background = canvas.copy_from_bbox(fig.bbox)
    writer = _AtomicPillowWriter(fps=fps)
    writer.setup(fig, str(path), fig.dpi)  # not ``writer.saving``: it would write a partial GIF on an error
    try:
        for i, k in enumerate(animation.frames):
            canvas.restore_region(background)
            for a in animation.update(k):
                fig.draw_artist(a)
            for ax in fig.axes:  # the images cover the frames of their axes: redraw them
                for spine in ax.spines.values():
                    ax.draw_artist(spine)
            writer.grab_rgba(np.asarray(canvas.buffer_rgba()))
            if progress is not None:
                progress(i, len(animation.frames))
    finally:
        for a in animation.artists:
            a.set_animated(False)
    writer.finish()
    return path
