"""Output folders of the ``saxe`` commands: checked before any work, never stale, never left half-made.

* A non-empty folder is refused unless ``--force``; with it, the previous run's ``metrics.json`` (whose presence
  marks a complete run) is deleted *first*, then its other result files, so an interrupted or failed run can
  never leave a folder that looks complete. "Its result files" are those listed in the folder's manifest
  (:data:`experiments.report.MANIFEST`, where every write is listed before it happens, even a killed run's) plus
  the fixed names of :data:`RESULT_NAMES`, and the temp files of those names' interrupted writes: a file the user
  put in the folder is never removed (it may be overwritten only by a result of the same name).
* Writability is probed before training (a read-only or immutable folder fails in a second, not after minutes
  of work), as :class:`OutputError` (exit code 4: an environment problem, not bad input).
* A folder the command created is removed again if the command fails before writing anything into it.
"""
from __future__ import annotations

import glob
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .cli import OutputError, UsageError
from .report import MANIFEST, claimed_folders, manifest_names

__all__ = ["prepared_out", "probe_writable", "RESULT_NAMES"]

#: Names removed by --force even where no manifest lists them (a folder written before manifests existed): the
#: files that mark or summarise a run. Figures are removed only where the manifest lists them.
RESULT_NAMES = ("metrics.json", "summary.json", "report.md")


def probe_writable(out: Path) -> None:
    """Raise :class:`OutputError` (exit 4) naming --out unless a file can be created in ``out``."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".write-probe.", dir=out)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot write there ({exc.strerror or exc}); choose another folder") from None


@contextmanager
def prepared_out(path, *, force: bool) -> Iterator[Path]:
    """Check, clear (with ``force``) and probe the output folder; remove it on failure if this call made it."""
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"--out {out} cannot be created: {probe} is not a folder")
    created = not out.exists()
    if not created:
        entries = [p for p in out.iterdir()]
        if entries and not force:
            raise UsageError(f"--out {out} is not empty ({len(entries)} entries, e.g. {entries[0].name}); pass "
                             "--force to replace the results of a previous run, or choose a new folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from None
    try:
        probe_writable(out)
        if force and not created:
            _remove_previous(out)
        claimed_folders.add(out.resolve())
        yield out
    except BaseException:
        if created and out.is_dir() and not [p for p in out.iterdir() if p.name != MANIFEST]:
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        claimed_folders.discard(out.resolve())


def _remove_previous(out: Path) -> None:
    """--force: remove the previous run's files (module docstring), ``metrics.json`` first (the folder must stop
    looking complete), the manifest last."""
    names = sorted(manifest_names(out) | set(RESULT_NAMES))
    try:
        (out / "metrics.json").unlink(missing_ok=True)  # first: the folder must stop looking complete
        temps = [t for n in names for t in out.glob(f".{glob.escape(n)}.*.tmp")]  # their killed writes' temp files
        for p in [out / n for n in names] + temps:
            if p.is_file() and not p.is_symlink():  # a link the user made is not ours to follow or remove
                p.unlink()
        (out / MANIFEST).unlink(missing_ok=True)
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot remove the previous results ({exc.strerror or exc})") from None
