"""Items × features tables from CSV files, for training on your own data.

Format: a header row whose first cell labels the item column and whose other cells are distinct, non-empty
feature names; then one row per item: the item's name, then one numeric value per feature (0/1, ±1 or real,
written as plain decimal or scientific numbers: ``1``, ``-0.5``, ``2e-3``; not ``1_000``, ``0x1f`` or ``inf``).
Values must lie within ±:data:`MAX_ABS_VALUE`. Blank lines are skipped; a line of empty cells (``,,``) is not
blank. Every problem is reported as a :class:`DataFileError` naming the file, line and column (1-based), before
anything is trained.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DataFileError", "ItemsTable", "load_items_csv", "MAX_ABS_VALUE", "MIN_LARGEST_ABS_VALUE"]

#: Largest |value| accepted. Training squares and sums the values over P·N_out entries and the stable lr scales
#: like 1/s²: at 1e300 the default lr underflows to 1e-300 and the loss overflows to NaN. 1e100 keeps every
#: square and sum far inside float64 (1.8e308) for any table that fits in memory; rescale larger data.
MAX_ABS_VALUE = 1e100
#: ... and, for the same reason from below, the largest |value| of a table that is not all zeros must reach this
#: (a table whose only nonzero value was 1e-320 trained with an lr near 1e300: errors of inf and 3e298).
MIN_LARGEST_ABS_VALUE = 1e-100
# A number as people write them in tables: optional sign, digits with an optional decimal point, optional exponent.
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


class DataFileError(ValueError):
    """A malformed data file; ``str()`` reads ``FILE:LINE:COL: what is wrong``."""

    def __init__(self, path, line: int | None, col: int | None, message: str):
        self.path, self.line, self.col = str(path), line, col
        where = str(path) + (f":{line}" if line is not None else "") + (f":{col}" if col is not None else "")
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class ItemsTable:
    """``features`` (P, N) float64 with ``item_names`` (P) and ``feature_names`` (N); ``inputs`` = one-hot."""

    path: str
    item_names: tuple[str, ...]
    feature_names: tuple[str, ...]
    features: np.ndarray

    @property
    def inputs(self) -> np.ndarray:
        return np.eye(len(self.item_names))

    @property
    def name(self) -> str:
        return Path(self.path).stem


def load_items_csv(path: str | Path) -> ItemsTable:
    """Read and validate an items × features CSV file (see module docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataFileError(path, None, None, "file not found") from None
    except IsADirectoryError:
        raise DataFileError(path, None, None, "is a directory, expected a CSV file") from None
    except UnicodeDecodeError as exc:
        raise DataFileError(path, None, None, f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise DataFileError(path, None, None, f"cannot be read: {exc.strerror}") from None
    lines = text.splitlines()
    rows = [(i + 1, row) for i, row in enumerate(csv.reader(lines))]
    rows = [(n, [c.strip() for c in row]) for n, row in rows if lines[n - 1].strip()]
    if not rows:
        raise DataFileError(path, None, None, "empty file: expected a header row and at least two item rows")
    header_line, header = rows[0]
    if len(header) < 2:
        raise DataFileError(path, header_line, None,
                            "header must have an item column and at least one feature name")
    first_seen: dict[str, int] = {}
    for j, name in enumerate(header[1:], start=2):
        if not name:
            raise DataFileError(path, header_line, j, "empty feature name in the header")
        if name in first_seen:
            raise DataFileError(path, header_line, j, f"duplicate feature name {name!r} (first in column "
                                                       f"{first_seen[name]})")
        first_seen[name] = j
    body = rows[1:]
    if len(body) < 2:
        raise DataFileError(path, None, None, f"need at least two items (rows after the header), got {len(body)}")
    names: list[str] = []
    values: list[list[float]] = []
    seen: dict[str, int] = {}
    for line, row in body:
        if len(row) != len(header):
            raise DataFileError(path, line, min(len(row), len(header)) + 1,
                                f"ragged row: expected {len(header)} cells like the header, got {len(row)}")
        name = row[0]
        if not name:
            raise DataFileError(path, line, 1, "empty item name")
        if name in seen:
            raise DataFileError(path, line, 1, f"duplicate item name {name!r} (first on line {seen[name]})")
        seen[name] = line
        vals = []
        for j, cell in enumerate(row[1:], start=2):
            low = cell.lower().lstrip("+-")
            if low in ("nan", "inf", "infinity"):
                raise DataFileError(path, line, j, f"value {cell!r} is not finite (NaN/inf are not allowed)")
            if not _NUMBER.fullmatch(cell):
                raise DataFileError(path, line, j, f"non-numeric value {cell!r} for feature {header[j - 1]!r} "
                                                   "(expected a plain number such as 1, -0.5 or 2e-3)")
            v = float(cell)
            if not (math.isfinite(v) and abs(v) <= MAX_ABS_VALUE):
                raise DataFileError(path, line, j, f"value {cell!r} is beyond ±{MAX_ABS_VALUE:g}: its squares would "
                                                   "overflow training in float64; rescale the table (e.g. divide "
                                                   "every value by the largest)")
            vals.append(v)
        names.append(name)
        values.append(vals)
    arr = np.asarray(values, dtype=np.float64)
    top = float(np.abs(arr).max(initial=0.0))
    if 0.0 < top < MIN_LARGEST_ABS_VALUE:
        at = np.unravel_index(int(np.argmax(np.abs(arr))), arr.shape)
        raise DataFileError(path, seen[names[int(at[0])]], int(at[1]) + 2,
                            f"the largest value in the table is {top:.3g}, below {MIN_LARGEST_ABS_VALUE:g}: learning "
                            "rates would scale like 1/value² and overflow; rescale the table (e.g. divide every value "
                            "by the largest)")
    return ItemsTable(str(path), tuple(names), tuple(header[1:]), arr)
