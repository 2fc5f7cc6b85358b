"""Progress bars (tqdm) that stay silent with ``--quiet`` and when stderr is not a terminal-friendly sink."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator


@contextmanager
def epoch_bar(total: int, desc: str, quiet: bool) -> Iterator[Callable[[int], None]]:
    """Yields an ``on_epoch(k)`` callback for :func:`saxe.train` that advances a bar of ``total`` epochs."""
    if quiet:
        yield lambda k: None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="ep", leave=False, mininterval=0.2)
    try:
        yield lambda k: bar.update(1)
    finally:
        bar.close()


def items_bar(iterable, desc: str, quiet: bool, total: int | None = None):
    if quiet:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, mininterval=0.2)
