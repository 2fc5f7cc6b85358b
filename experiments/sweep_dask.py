r"""``saxe sweep --dask``: the sweep's chunks as Dask tasks, on a local cluster or an existing scheduler.

``--dask local`` starts a :class:`distributed.LocalCluster` with one single-threaded worker process per CPU core,
``--dask local:N`` with N workers; ``--dask tcp://HOST:PORT`` (or ``tls://…``) connects to a scheduler that is
already running — e.g. one started by dask-jobqueue on a SLURM cluster (README). Needs the optional extra:
``pip install 'saxe-dln[distributed]'``.

**Tasks.** One task per chunk of the grid: the same batches, in the same composition, as a single-process sweep
(runs of one (depth, hidden), ``--batch`` at a time), computed by :func:`run_chunk`, which is what the
single-process loop calls too. A run's init comes from its own seed and per-run arithmetic does not depend on the
batch, so the rows are identical to a single-process sweep's (tested on a 2-worker LocalCluster). The data are
sent once (``client.scatter``); each worker process builds the data's SVD and the per-seed bases once per sweep.

**Failures.** A task whose worker dies (killed, out of memory, node lost) is rescheduled by the scheduler on
another worker (``distributed.scheduler.allowed-failures``, default 3); a task that raises is retried
:data:`TASK_RETRIES` times; only then does the sweep stop, with the rows finished so far written and ``--resume``
able to go on. Rows are written after every finished chunk, as in a single-process sweep.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .cli import UsageError

#: Extra attempts of a chunk that raised on a worker (a lost worker is rescheduled by the scheduler anyway).
TASK_RETRIES = 2
#: How long to try reaching a ``--dask tcp://…`` scheduler before giving up (a cluster's scheduler is up in seconds).
SCHEDULER_TIMEOUT = "20s"
_LOCAL = re.compile(r"local(?::(\d+))?")
_REMOTE = re.compile(r"(tcp|tls|ucx|inproc)://\S+")

_WORKER_CACHE: dict[tuple, Any] = {}


def parse_dask(text: str) -> tuple[str, int | str]:
    """``local`` → ("local", cores), ``local:N`` → ("local", N), ``tcp://HOST:PORT`` → ("remote", address)."""
    m = _LOCAL.fullmatch(text.strip())
    if m:
        n = int(m.group(1)) if m.group(1) else (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                                else (os.cpu_count() or 1))
        if n < 1:
            raise UsageError(f"--dask local:N needs N >= 1 workers, got {text!r}")
        return "local", n
    if _REMOTE.fullmatch(text.strip()):
        return "remote", text.strip()
    raise UsageError(f"--dask must be 'local', 'local:N' (N workers) or a scheduler address such as "
                     f"tcp://HOST:PORT, got {text!r}")


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise UsageError("--dask needs Dask's distributed scheduler: pip install 'saxe-dln[distributed]'") from None
    return distributed


@contextmanager
def client_for(text: str, threads: int) -> Iterator[Any]:
    """A ``distributed.Client`` for ``--dask`` (a LocalCluster is closed again on exit)."""
    kind, where = parse_dask(text)
    distributed = _import_distributed()
    if kind == "local":
        with distributed.LocalCluster(n_workers=int(where), threads_per_worker=1, processes=True,
                                      dashboard_address=None, silence_logs=40) as cluster, \
                distributed.Client(cluster) as client:
            yield client
    else:
        try:
            client = distributed.Client(str(where), timeout=SCHEDULER_TIMEOUT)
        except OSError as exc:
            raise UsageError(f"--dask {where}: cannot reach the scheduler ({exc})") from None
        with client:
            yield client


def run_chunk(payload: dict, runs: list, n_epochs: int, engine: str, dtype_name: str, device_name: str,
              threads: int) -> tuple[list[dict], dict]:
    """One chunk on a worker: its rows and timings. ``payload`` holds the data (X, Y, name); the data's SVD and the
    per-seed bases are built once per worker process and sweep (cached under the data's name and dtype)."""
    import torch

    from saxe.train import torch_threads

    from .sweep import compute_chunk
    from .sweep_engine import InitCache, Problem

    dtype = torch.float64 if dtype_name == "float64" else torch.float32
    key = (payload["name"], dtype_name)
    if key not in _WORKER_CACHE:
        _WORKER_CACHE.clear()  # one sweep's data at a time per worker
        problem = Problem(payload["X"], payload["Y"], payload["name"])
        _WORKER_CACHE[key] = (problem, InitCache(problem, dtype))
    problem, cache = _WORKER_CACHE[key]
    with torch_threads(threads):
        return compute_chunk(problem, cache, runs, n_epochs, engine, dtype, torch.device(device_name))


def map_chunks(client, problem, batches: list[list], n_epochs: int, engine: str, dtype_name: str, device_name: str,
               threads: int) -> Iterator[tuple[list[dict], dict]]:
    """Submit every chunk and yield (rows, timings) as chunks finish (completion order)."""
    distributed = _import_distributed()
    payload = client.scatter({"X": problem.X, "Y": problem.Y, "name": problem.name}, broadcast=True)
    futures = [client.submit(run_chunk, payload, runs, n_epochs, engine, dtype_name, device_name, threads,
                             retries=TASK_RETRIES, pure=False) for runs in batches]
    try:
        for fut in distributed.as_completed(futures):
            yield fut.result()
    finally:
        for fut in futures:
            fut.cancel()
