"""Result files, written atomically: a crashed run never leaves a half-written file that looks whole.

Every writer goes through :func:`atomic_write`: the content goes to a temporary file in the target's folder,
is flushed and fsync'ed, given the permissions a plain ``open()`` would give (0666 minus the umask: ``mkstemp``
creates 0600 files, which collaborators could not read), then renamed over the target (``os.replace`` is atomic
on POSIX and Windows).

In an output folder a command has claimed (:func:`experiments.outdir.prepared_out`), each file's name is first
appended to the folder's manifest :data:`MANIFEST` (before the file exists, so even a killed run's files are
listed): ``--force`` later removes exactly those files and never a file the user put there.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

__all__ = ["MANIFEST", "manifest_names", "claimed_folders", "atomic_write", "write_text", "write_json", "save_figure",
           "to_jsonable", "package_versions"]


#: The list of files the saxe commands wrote into a folder, one name per line (hidden; see the module docstring).
MANIFEST = ".saxe-outputs"
#: Output folders claimed by the running command (resolved paths): their writes are listed in the manifest.
claimed_folders: set[Path] = set()


def manifest_names(folder) -> set[str]:
    """The names listed in ``folder``'s manifest (empty if there is none; a torn last line names no file)."""
    try:
        text = (Path(folder) / MANIFEST).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return set()
    return {n for n in text.splitlines() if n and "/" not in n and n not in (".", "..", MANIFEST)}


def _claim(path: Path) -> None:
    """List ``path`` in its folder's manifest before it is written, when the folder is a claimed output folder."""
    folder = path.parent.resolve()
    if folder in claimed_folders and path.name not in manifest_names(folder):
        with open(folder / MANIFEST, "a", encoding="utf-8") as fh:
            fh.write(path.name + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Open a temp file beside ``path``; on success rename it over ``path``, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _claim(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
            fh.flush()
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_text(path, text: str) -> Path:
    with atomic_write(path) as fh:
        fh.write(text)
    return Path(path)


def to_jsonable(obj):
    """numpy scalars/arrays → Python; non-finite floats → ``None`` (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path, data) -> Path:
    with atomic_write(path) as fh:
        json.dump(to_jsonable(data), fh, indent=2, allow_nan=False)
        fh.write("\n")
    return Path(path)


def save_figure(fig, path, **kwargs) -> Path:
    """Save a matplotlib figure atomically (format from the suffix) and close it.

    No ``bbox_inches='tight'`` by default: it draws the figure twice; lay figures out with
    ``layout='constrained'`` instead.
    """
    import matplotlib.pyplot as plt

    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format=fmt, **{"dpi": 100, **kwargs})
    plt.close(fig)
    return path


def package_versions() -> dict[str, str]:
    """Versions of the packages behind a result, read from their installed metadata (importing scipy or matplotlib
    just for their version would cost a sweep ~30 MB of memory)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import torch

    from saxe import __version__

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return {"saxe-dln": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "scipy": installed("scipy"), "torch": torch.__version__, "matplotlib": installed("matplotlib")}
