"""The pieces ``saxe tutorial`` (and the notebooks) run each section with: a training, its theory, the figures' scales.

:class:`Theory` wraps :func:`theory.predictor` so that a theory failure costs an overlay, never the figures.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

__all__ = ["Theory", "gap", "Run", "streams", "train_net", "scales"]


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

    def outputs_of_feature(self, j: int, p: int):
        return self._get("outputs", lambda: self.pred.outputs(self.t, features=j), (self.t.size, p))


def gap(measured, predicted, scale: float = 1.0):
    return None if predicted is None else float(np.max(np.abs(measured - predicted)) / scale)


# ------------------------------------------------------------------------------------------------- runs
class Run:
    """Output folder, figure format and the list of files written (in order)."""

    def __init__(self, out: Path, fmt: str, quiet: bool):
        self.out, self.fmt, self.quiet, self.files = out, fmt, quiet, []

    def figure(self, name: str, fig) -> None:
        from .report import save_figure

        self.files.append(save_figure(fig, self.out / f"{name}.{self.fmt}").name)

    def json(self, name: str, data) -> None:
        from .report import write_json

        self.files.append(write_json(self.out / name, data).name)


def streams(seed: int, names):
    """One independent (numpy Generator, torch Generator) pair per section, from ``seed``."""
    import torch

    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: (np.random.default_rng(c), torch.Generator().manual_seed(int(c.generate_state(1)[0])))
            for n, c in zip(names, children)}


def train_net(model, X, Y, lr, n_epochs, desc, quiet, illusory_i=0):
    from saxe import train, weights

    from .progress import epoch_bar

    init = [w.detach().double().numpy().copy() for w in weights(model)]
    with epoch_bar(n_epochs + 1, desc, quiet) as tick:  # a DivergenceError reaches the CLI: exit code 3
        rec = train(model, X, Y, n_epochs, lr, illusory_i=illusory_i, illusory_j=-1, engine="autograd",
                    progress=tick)
    return rec, init


def scales(X, Y, depth: int) -> tuple[float, float]:
    """What the singular values and the RSM saturate at once every mode is learned: s_max and ‖X V S^{2/L} Vᵀ Xᵀ‖."""
    from theory import io_svd, rsm_from_modes

    X = np.asarray(X, np.float64)
    _, s, V = io_svd(X, np.asarray(Y, np.float64))
    return float(s[0]), float(np.abs(rsm_from_modes(np.diag(s), V, X, depth)).max())


