r"""``saxe sweep --merge``: join the shard files of one sweep, and never let a partial merge look complete.

**Completion markers.** A shard (or an unsharded sweep) writes its ``.json`` twice: when it starts, with
``"complete": false`` and ``n_expected`` (its number of grid points), and when it has written its last row, with
``"complete": true`` and ``n_rows``. A shard that was killed therefore leaves ``complete: false`` (or, killed
before its first write, no files at all).

**Merge.** ``--merge`` reads ``sweep.shard-i-of-n.csv`` for i = 0 … n−1 and checks every shard: present, marked
complete, and holding the rows its marker promises. If any shard is missing or incomplete it writes nothing and
exits 1, naming each such shard and why — unless ``--partial`` asks for the merge anyway; then ``sweep.json``
says ``"partial": true`` with the missing and incomplete shards and the rows expected, and a line on stderr says
the result is partial (also with ``--quiet``). No run may appear twice, and every shard must come from the same
sweep: the rows' data, epochs and dtype, and the markers' grid (the ``--depth/--hidden/--lr/--gamma/--seeds/
--seed-start`` of each shard's command, :data:`GRID_KEYS`). Where the markers give the grid, every row must be one
of its runs and ``n_expected`` is the whole grid's size, also when a shard is missing.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from .cli import UsageError
from .report import package_versions, write_json
from .sweep_grid import build_grid, output_names, read_rows, sweep_identity, write_rows

_SHARD_FILE = re.compile(r"sweep\.shard-(\d+)-of-(\d+)\.(csv|json)")  # a shard's rows or its completion marker
EXIT_INCOMPLETE = 1
#: The options of a shard's command that define the sweep's grid and data: shards must agree on all of them.
GRID_KEYS = ("depth", "hidden", "lr", "gamma", "seeds", "seed_start", "epochs", "data", "features", "data_seed",
             "dtype")


def _grid_ids(markers: dict[int, dict]) -> tuple[set[str] | None, int | None]:
    """The run ids of the grid the shards' markers describe (None where no marker has a command); refuse shards
    whose commands describe different grids."""
    commands = {i: m["command"] for i, m in markers.items() if isinstance(m.get("command"), dict)}
    if not commands:
        return None, None
    first, ref = next(iter(commands.items()))
    for i, cmd in commands.items():
        diff = [k for k in GRID_KEYS if cmd.get(k) != ref.get(k)]
        if diff:
            raise UsageError(f"--merge: shard {i} was run with another grid than shard {first} (they differ in "
                             + ", ".join(f"--{k.replace('_', '-')}: {cmd.get(k)!r} vs {ref.get(k)!r}" for k in diff)
                             + "); merge only the shards of one sweep")
    try:
        grid = build_grid(ref["depth"], ref["hidden"], ref["lr"], ref["gamma"],
                          range(int(ref["seed_start"]), int(ref["seed_start"]) + int(ref["seeds"])))
    except (KeyError, TypeError, ValueError):
        return None, None
    return {r.run_id for r in grid}, len(grid)


def _read_marker(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def shard_state(csv_path: Path, json_path: Path) -> tuple[str | None, list[dict[str, str]], list[str], dict]:
    """(problem or None, rows, header, marker) of one shard file pair; the problem says why it is incomplete."""
    if not csv_path.exists():
        return "missing (no file)", [], [], {}
    header, rows = read_rows(csv_path)
    marker = _read_marker(json_path)
    if marker is None:
        return "incomplete (no completion marker: the shard never finished)", rows, header, {}
    if marker.get("complete") is not True:
        n_exp = marker.get("n_expected")
        return (f"incomplete (stopped after {len(rows)} of {n_exp} runs)" if n_exp is not None
                else "incomplete (marked not complete)"), rows, header, marker
    if marker.get("n_rows") != len(rows) or marker.get("n_expected", len(rows)) != len(rows):
        return (f"incomplete ({len(rows)} rows in the file, {marker.get('n_expected')} expected)", rows, header,
                marker)
    return None, rows, header, marker


def merge(args) -> int:
    """Merge the shards in --out into ``sweep.csv`` (exit 1 if one is missing or incomplete, unless --partial)."""
    out = Path(args.out)
    counts = {int(m.group(2)) for p in out.glob("sweep.shard-*-of-*") if (m := _SHARD_FILE.fullmatch(p.name))}
    if not counts:
        raise UsageError(f"--merge: no shard files (sweep.shard-i-of-n.csv) in {out}")
    if len(counts) != 1:
        raise UsageError(f"--merge: shard files of different splits in {out}: n = {sorted(counts)}")
    n = counts.pop()
    target, info = out / "sweep.csv", out / "sweep.json"
    if target.exists():
        previous = _read_marker(info) or {}
        if "merged_from" not in previous:
            raise UsageError(f"--merge: {target} exists and is not a previous merge; move it away first")
    header: list[str] | None = None
    rows: list[dict[str, str]] = []
    seen: dict[str, str] = {}
    problems: dict[int, str] = {}
    n_expected, merged = 0, []
    shard_names = [output_names((i, n)) for i in range(n)]
    states = [shard_state(out / names["csv"], out / names["json"]) for names in shard_names]
    grid_ids, n_grid = _grid_ids({i: st[3] for i, st in enumerate(states) if st[3]})
    for i, (names, (problem, shard_rows, h, marker)) in enumerate(zip(shard_names, states)):
        n_expected += int(marker.get("n_expected", len(shard_rows))) if marker else len(shard_rows)
        if problem is not None:
            problems[i] = problem
        if not shard_rows and problem is not None:
            continue
        if header is None:
            header = h
        elif h != header:
            raise UsageError(f"--merge: {names['csv']} has other columns than the other shards")
        for row in shard_rows:
            if rows and sweep_identity(row) != sweep_identity(rows[0]):
                raise UsageError(f"--merge: {names['csv']} holds runs of another sweep (data, epochs or dtype "
                                 "differ)")
            if grid_ids is not None and row["run_id"] not in grid_ids:
                raise UsageError(f"--merge: {names['csv']} holds run {row['run_id']}, which is not in the grid of the "
                                 "shards' commands; merge only the shards of one sweep")
            if row["run_id"] in seen:
                raise UsageError(f"--merge: run {row['run_id']} is in both {seen[row['run_id']]} and {names['csv']}")
            seen[row["run_id"]] = names["csv"]
            rows.append(row)
        merged.append(names["csv"])
    listing = "; ".join(f"shard {i}/{n}: {why}" for i, why in problems.items())
    if problems and not args.partial:
        print(f"saxe sweep --merge: not merged, {len(problems)} of {n} shards are missing or incomplete: {listing}. "
              "Rerun them (--shard i/n --resume), or pass --partial to merge what is there (marked partial).",
              file=sys.stderr)
        return EXIT_INCOMPLETE
    if n_grid is not None:  # the whole grid, also where a missing shard left no marker to count
        n_expected = n_grid
    missing = [i for i, why in problems.items() if why.startswith("missing")]
    incomplete = [i for i in problems if i not in missing]
    write_rows(target, header or [], rows)
    from .sweep_figures import phase_diagram

    phase_diagram(rows, out / "phase_diagram.png")
    write_json(info, {"merged_from": merged, "n_shards": n, "n_rows": len(rows), "n_expected": n_expected,
                      "complete": not problems, "partial": bool(problems), "missing_shards": missing,
                      "incomplete_shards": incomplete, "problems": {str(i): w for i, w in problems.items()},
                      "versions": package_versions()})
    if problems:  # never hidden, not even by --quiet
        of = f"{n_expected}" if n_grid else f"at least {n_expected}"
        print(f"saxe sweep --merge: PARTIAL merge (--partial): {len(rows)} runs of {of} expected, "
              f"from {n - len(problems)} complete of {n} shards; {listing} → {target} (sweep.json: partial)",
              file=sys.stderr)
    elif not args.quiet:
        print(f"saxe sweep --merge: {len(rows)} runs from all {n} shards → {target}")
    return 0
