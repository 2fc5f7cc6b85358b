"""``train``: full-batch SGD on ``nn.MSELoss`` with a complete, consistent record of every epoch.

**Record convention.** Row k of every record refers to the same weights: those after k updates. Row 0 is
the initial state, so each record has ``n_epochs + 1`` rows. (The tutorial recorded the loss, RSM and
prediction before each update but the SVD after it, an off-by-one that spoils any comparison with theory.)
"""
from __future__ import annotations

import functools
import time
from contextlib import contextmanager
from typing import Any, Callable, NamedTuple

import numpy as np
import torch
from torch import nn

from .engines import EngineResult, _forward_parts, autograd_sgd, reduced_sgd
from .errors import DivergenceError, check_lr, check_n_epochs
from .models import weights

__all__ = ["train", "TrainRecord", "ENGINES"]

ENGINES = ("auto", "autograd", "reduced")


class _Record(NamedTuple):
    losses: np.ndarray
    modes: np.ndarray
    rsms: np.ndarray | None
    illusions: np.ndarray


class TrainRecord(_Record):
    """What :func:`train` returns; unpacks like the tutorial: ``losses, modes, rsms, illusions = train(...)``.

    Fields (row k = after k updates, n_epochs + 1 rows, float64 numpy arrays):

    * ``losses`` (n+1,): the loss torch reports (``nn.MSELoss(reduction)``);
    * ``modes`` (n+1, min(N_in, N_out)): singular values of W_tot, descending;
    * ``rsms`` (n+1, P, P): RSM ``h hᵀ`` of the first hidden layer (``None`` for a net without one);
    * ``illusions`` (n+1,): the network's output for item ``illusory_i``, feature ``illusory_j`` ((n+1, m) when
      ``illusory_i`` is a sequence of m items).

    ``record.info`` (a dict) holds the engine, dtype, lr, reduction, n_epochs, threads and wall ``seconds``.
    """

    # no __slots__: instances carry an ``info`` dict beside the four tuple fields
    info: dict[str, Any]


_LIMIT: list[int | None] = [None]  # the thread limit in force inside torch_threads (None outside)


@functools.lru_cache(maxsize=1)
def _threadpools():
    """One threadpoolctl controller per process (finding the loaded BLAS libraries costs milliseconds)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextmanager
def torch_threads(n: int | None):
    """Run with ``n`` threads in torch (``torch.set_num_threads``) and in the BLAS/OpenMP pools numpy and scipy
    use (threadpoolctl), restoring both afterwards (``None``: untouched). Small matrices gain nothing from more
    threads, and on a machine whose cores are busy a multi-threaded BLAS stalls: a 10000 × 30 QR took 0.2–0.5 s
    with 2 OpenBLAS threads on a loaded 2-core machine and 9–30 ms with one."""
    if n is None or _LIMIT[0] == n:  # untouched, or already inside a limit of n (nested calls cost nothing)
        yield
        return
    old, outer = torch.get_num_threads(), _LIMIT[0]
    torch.set_num_threads(n)
    _LIMIT[0] = n
    try:
        with _threadpools().limit(limits=n):
            yield
    finally:
        torch.set_num_threads(old)
        _LIMIT[0] = outer


def _tensor(name: str, value, dtype: torch.dtype, device) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        try:
            # a copy: torch warns on (and must never write into) read-only arrays such as a frozen data set
            value = torch.as_tensor(np.array(value, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a numeric 2-D array or tensor, got {type(value).__name__}: {exc}") \
                from None
    if value.dim() != 2:
        raise ValueError(f"{name} must be 2-dimensional (samples × features), got shape {tuple(value.shape)}")
    value = value.detach().to(dtype=dtype, device=device)
    if not torch.isfinite(value).all():
        raise ValueError(f"{name} must contain only finite values")
    return value


def stable_bounds(x: torch.Tensor, y: torch.Tensor, widths: list[int], reduction: str,
                  weights0: list[np.ndarray] | None = None):
    """Theory's stable learning rates (:func:`theory.stable_lr`) for this data and these hidden ``widths`` — and,
    given ``weights0``, also at those initial weights (their curvature: an exact-state computation, so ``train``
    asks for it only once a run has diverged) — or ``None`` where they cannot be computed (theory not importable,
    or a degenerate problem)."""
    try:
        from theory import stable_lr
        return stable_lr(x.double().cpu().numpy(), y.double().cpu().numpy(), depth=len(widths) + 1,
                         hidden=list(widths) or None, weights=weights0, reduction=reduction)
    except (ImportError, ValueError, np.linalg.LinAlgError):
        return None


def train(model: nn.Module, inputs, targets, n_epochs, lr, illusory_i=0, *, illusory_j=-1,
          engine: str = "auto", reduction: str = "mean", threads: int | None = 1, record_rsm: bool = True,
          progress: bool | Callable[[int], None] | None = None) -> TrainRecord:
    """Train a bias-free linear net by full-batch SGD on ``nn.MSELoss(reduction)`` and record every epoch.

    Args:
      model: ``LNNet``, ``DeepLNNet``, ``LRNet`` or any ``nn.Module`` whose parameters are a chain of 2-D
        weights applied in order; trained in place, in the dtype of its parameters (float32 as the tutorial,
        or float64 after ``model.double()``); ``inputs``/``targets`` are cast to it.
      inputs: (P, N_in); targets: (P, N_out).
      n_epochs: number of updates (integer ≥ 0). lr: learning rate > 0 (torch's SGD lr).
      illusory_i, illusory_j: the item (or a sequence of items) and the feature whose output is recorded in
        ``illusions`` (the tutorial tracks the last feature).
      engine: ``'autograd'`` (torch autograd + ``optim.SGD``, the tutorial's arithmetic), ``'reduced'`` (the
        exact reduced-coordinate engine of :mod:`saxe.engines`: same iterates, ~N_out/(N_in+N_h) fewer FLOPs)
        or ``'auto'``: reduced where it saves work (N_out > N_in + N_{L−1}) and the lr is below the learned
        state's stable bound (:func:`theory.stable_lr`), else autograd. Above that bound SGD never settles and
        whether a run diverges is decided by float64 rounding (the dynamics are chaotic there): the reduced
        engine, whose rounding differs, diverges on the same fraction of seeds but not on the same seeds, so
        ``auto`` runs the network's own arithmetic, as a plain torch loop does.
      threads: torch threads for the run (restored afterwards). Default 1: these are small matrices, and
        torch with 2 threads stalls badly when another process holds a core. ``None`` leaves torch's setting.
      record_rsm: record the (n+1, P, P) RSMs (skip to save memory on big P).
      progress: ``True`` draws a progress bar (tqdm, on stderr) for long runs; a callable is called with the
        epoch index after each recorded epoch (e.g. a progress bar's update); ``None``/``False``: silent.

    Raises:
      ValueError: bad arguments (named in the message).
      DivergenceError: the loss became non-finite or exploded; says at which epoch, the lr and the stable
        learning rates from theory (at the learned state and at the initial weights).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    params = weights(model)
    n_epochs = check_n_epochs(n_epochs)
    lr = check_lr(lr)
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine=!r}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction=!r}")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ValueError(f"threads must be a positive int or None, got {threads=!r}")
    with torch_threads(threads):  # one thread limit for the whole call: data checks, bounds and engine
        return _train(model, params, inputs, targets, n_epochs, lr, illusory_i, illusory_j, engine, reduction, threads,
                      record_rsm, progress)


# model(x) must equal x W_totᵀ (W_tot = W_L⋯W_1 of its parameters): the engines and every theory use the chain of
# weights only. A nonlinearity (ReLU zeroes about half the hidden units) changes the output by O(its size); the
# rounding of the layer-by-layer product against the chained product is ~1e-6 relative in float32.
LINEARITY_RTOL = 1e-3


def _check_linear_chain(model, params, x) -> None:
    """Refuse a model whose forward pass is not the product of its weights (e.g. an nn.Sequential with a ReLU)."""
    probe = x[: min(x.shape[0], 64)]
    with torch.no_grad():
        out = _forward_parts(model, probe)[0]
        lin = probe @ params[0].T
        for w in params[1:]:
            lin = lin @ w.T
    if not isinstance(out, torch.Tensor) or out.shape != lin.shape:
        raise ValueError(f"model(inputs) must return the (P, N_out) outputs x W_totᵀ (or a tuple starting with "
                         f"them), got {type(out).__name__} {tuple(getattr(out, 'shape', ()))}")
    err = float((out - lin).abs().max())
    scale = max(float(out.abs().max()), float(lin.abs().max()))
    if not (np.isfinite(scale) and np.isfinite(err)):  # weights that overflow: the divergence checks report them
        return
    if not err <= LINEARITY_RTOL * scale:
        raise ValueError(f"model must be a bias-free linear chain: its output differs from x·W_totᵀ of its weights "
                         f"by {err:.3g} (relative {err / scale if scale > 0 else float('inf'):.3g} > LINEARITY_RTOL = "
                         f"{LINEARITY_RTOL:g}); saxe.train and the theories cover deep *linear* networks only "
                         "(no nonlinearity, no bias, weights applied in parameter order)")


def _train(model, params, inputs, targets, n_epochs, lr, illusory_i, illusory_j, engine, reduction, threads,
           record_rsm, progress) -> TrainRecord:
    dt, dev = params[0].dtype, params[0].device
    if dt not in (torch.float32, torch.float64):
        raise ValueError(f"model parameters must be float32 or float64, got {dt}")
    x = _tensor("inputs", inputs, dt, dev)
    y = _tensor("targets", targets, dt, dev)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"inputs and targets must have the same number of rows (samples), got "
                         f"inputs {tuple(x.shape)} and targets {tuple(y.shape)}")
    if x.shape[1] != params[0].shape[1]:
        raise ValueError(f"inputs must have {params[0].shape[1]} columns (the model's input width), got "
                         f"{x.shape[1]}")
    if y.shape[1] != params[-1].shape[0]:
        raise ValueError(f"targets must have {params[-1].shape[0]} columns (the model's output width), got "
                         f"{y.shape[1]}")
    _check_linear_chain(model, params, x)
    P, n_out = y.shape
    many = not isinstance(illusory_i, (int, np.integer)) and hasattr(illusory_i, "__len__")
    rows = list(illusory_i) if many else [illusory_i]
    if many and not rows:
        raise ValueError("illusory_i must be an item index or a non-empty sequence of them, got []")
    for name, vals, size in (("illusory_i", rows, P), ("illusory_j", [illusory_j], n_out)):
        for val in vals:
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or not -size <= val < size:
                raise ValueError(f"{name} must be an integer index in [-{size}, {size}) (illusory_i: or a sequence "
                                 f"of them), got {name}={val!r}")
    items = tuple(int(i) % P for i in rows) if many else int(illusory_i) % P
    track = (items, int(illusory_j) % n_out)
    initial = [p.detach().clone() for p in params]  # training writes into params; numpy copies only if needed
    widths = [int(p.shape[0]) for p in params[:-1]]
    bounds = stable_bounds(x, y, widths, reduction)
    if engine == "auto":
        settles = bounds is None or lr <= bounds.learned
        engine = "reduced" if n_out > params[0].shape[1] + params[-1].shape[1] and settles else "autograd"

    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_epochs + 1, desc=f"saxe.train ({engine})", unit="ep", mininterval=0.5)
        progress = lambda k: bar.update(1)  # noqa: E731
    elif progress is False:
        progress = None
    elif progress is not None and not callable(progress):
        raise ValueError(f"progress must be True, False, None or a callable(epoch), got {progress!r}")
    t0 = time.perf_counter()
    try:
        res = _run_engine(engine, model, params, x, y, n_epochs, lr, reduction, track, record_rsm, progress)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    if int(res.diverged_at[0]) >= 0:  # the initial weights' curvature, for the message
        bounds = stable_bounds(x, y, widths, reduction, [w.double().cpu().numpy() for w in initial]) or bounds
    _raise_if_diverged(res, lr, bounds)
    rec = TrainRecord(
        losses=res.losses[0].double().cpu().numpy(),
        modes=res.modes[0].double().cpu().numpy(),
        rsms=None if res.rsms is None else res.rsms[0].double().cpu().numpy(),
        illusions=res.illusions[0].double().cpu().numpy(),
    )
    rec.info = {"engine": engine, "dtype": str(dt).replace("torch.", ""), "lr": lr, "reduction": reduction,
                "n_epochs": n_epochs, "threads": threads, "seconds": seconds, "device": str(dev),
                "stable_lr": None if bounds is None else {"learned": bounds.learned, "init": bounds.init}}
    return rec


def _run_engine(engine, model, params, x, y, n_epochs, lr, reduction, track, record_rsm, progress):
    if engine == "reduced":
        with torch.no_grad():
            res = reduced_sgd(x, y, [p.detach().unsqueeze(0) for p in params], torch.tensor([lr], dtype=torch.float64),
                              n_epochs, reduction=reduction, track=track, record_rsm=record_rsm, on_epoch=progress)
            for p, w in zip(params, res.weights):
                p.copy_(w[0])
        return res
    return autograd_sgd(model, params, x, y, lr, n_epochs, reduction=reduction, track=track, record_rsm=record_rsm,
                        on_epoch=progress)


def _raise_if_diverged(res: EngineResult, lr: float, bounds) -> None:
    epoch = int(res.diverged_at[0])
    if epoch < 0:
        return
    row = res.losses[0]
    loss = float(row[epoch]) if epoch < row.shape[0] else float("nan")
    raise DivergenceError(epoch, lr, loss, bounds, res.reason[0])
