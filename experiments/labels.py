"""Text for figures: names from a user's table may hold characters the figure font cannot draw.

Matplotlib draws such a character as an empty box and warns "Glyph … missing from font(s)" once per glyph and
figure. :func:`drawable` replaces each character the current default font lacks by ``?`` instead, so a figure
never shows boxes and a run never floods stderr; the names themselves stay untouched in reports and JSON.
"""
from __future__ import annotations

from functools import lru_cache

__all__ = ["drawable"]


@lru_cache(maxsize=1)
def _charmap() -> frozenset[int]:
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    path = font_manager.findfont(font_manager.FontProperties())
    return frozenset(FT2Font(path).get_charmap())


def drawable(text: str) -> str:
    """``text`` with every character the default figure font cannot draw replaced by ``?``."""
    chars = _charmap()
    return "".join(c if ord(c) in chars or c.isspace() else "?" for c in str(text))
