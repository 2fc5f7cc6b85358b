"""Items × features tables from CSV files, for training on your own data.

Format: a header row whose first cell labels the item column and whose other cells are feature names; then
one row per item: the item's name, then one numeric value per feature (0/1, ±1 or real). Every problem is
reported as a :class:`DataFileError` naming the file, line and column (1-based), before anything is trained.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DataFileError", "ItemsTable", "load_items_csv"]


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


def load_items_csv(path) -> ItemsTable:
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
    rows = [(i + 1, row) for i, row in enumerate(csv.reader(text.splitlines()))]
    rows = [(n, [c.strip() for c in row]) for n, row in rows if any(c.strip() for c in row)]
    if not rows:
        raise DataFileError(path, None, None, "empty file: expected a header row and at least two item rows")
    header_line, header = rows[0]
    if len(header) < 2:
        raise DataFileError(path, header_line, None,
                            "header must have an item column and at least one feature name")
    for j, name in enumerate(header[1:], start=2):
        if not name:
            raise DataFileError(path, header_line, j, "empty feature name in the header")
    body = rows[1:]
    if len(body) < 2:
        raise DataFileError(path, None, None, f"need at least two items (rows after the header), got {len(body)}")
    names, values, seen = [], [], {}
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
            try:
                v = float(cell)
            except ValueError:
                raise DataFileError(path, line, j, f"non-numeric value {cell!r} for feature {header[j - 1]!r}") \
                    from None
            if not math.isfinite(v):
                raise DataFileError(path, line, j, f"value {cell!r} is not finite (NaN/inf are not allowed)")
            vals.append(v)
        names.append(name)
        values.append(vals)
    return ItemsTable(str(path), tuple(names), tuple(header[1:]), np.asarray(values, dtype=np.float64))
