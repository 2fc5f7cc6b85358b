"""Output folders of the ``saxe`` commands: checked before any work, never stale, never left half-made.

* A non-empty folder is refused unless ``--force``; with it, the previous run's ``metrics.json`` (whose presence
  marks a complete run) is deleted *first*, then its other result files, so an interrupted or failed run can
  never leave a folder that looks complete.
* Writability is probed before training (a read-only or immutable folder fails in a second, not after minutes
  of work), as :class:`OutputError` (exit code 4: an environment problem, not bad input).
* A folder the command created is removed again if the command fails before writing anything into it.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .cli import OutputError, UsageError

__all__ = ["prepared_out", "RESULT_PATTERNS"]

#: The files a previous run of verify/tutorial may have written at the top of its folder (removed by --force).
RESULT_PATTERNS = ("metrics.json", "summary.json", "report.md", "*.png", "*.gif", "*.pdf", "*.svg", "*.json",
                   ".*.tmp")


def _probe(out: Path) -> None:
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
        _probe(out)
        if force and not created:
            try:
                (out / "metrics.json").unlink(missing_ok=True)  # first: the folder must stop looking complete
                for pattern in RESULT_PATTERNS:
                    for p in out.glob(pattern):
                        if p.is_file():
                            p.unlink()
            except OSError as exc:
                raise OutputError(f"--out {out}: cannot remove the previous results ({exc.strerror or exc})") \
                    from None
        yield out
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            shutil.rmtree(out, ignore_errors=True)
        raise
