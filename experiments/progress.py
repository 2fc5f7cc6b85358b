"""Progress for the ``saxe`` commands: a live bar on a terminal, plain lines in a log, nothing with ``--quiet``.

On a terminal (stderr is a TTY) tqdm draws bars that clear themselves when done (``leave=False``), so results
printed afterwards start on a clean line. Redirected to a file, tqdm's carriage returns and cursor-up codes
(``ESC[A``) would garble the log, so one plain line per finished task is written instead.
"""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator


def _live() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


@contextmanager
def epoch_bar(total: int, desc: str, quiet: bool) -> Iterator[Callable[[int], None]]:
    """Yields an ``on_epoch(k)`` callback for :func:`saxe.train` that advances a bar of ``total`` epochs."""
    if quiet:
        yield lambda k: None
        return
    if not _live():
        t0 = time.perf_counter()
        yield lambda k: None
        print(f"{desc}: {total} epochs in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="ep", leave=False, mininterval=0.2)
    try:
        yield lambda k: bar.update(1)
    finally:
        bar.close()


def items_bar(iterable: Iterable, desc: str, quiet: bool, total: int | None = None) -> Iterable:
    if quiet or not _live():  # in a log the per-task lines of epoch_bar (or the final summary) report progress
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, mininterval=0.2)
