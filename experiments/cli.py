"""The ``saxe`` command line: ``saxe tutorial | verify | sweep``.

Exit codes: 0 success, 1 a verification check failed (``verify``), 2 bad input (arguments or data files).
Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``; they are
imported lazily so that ``saxe --help`` is quick.
"""
from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "tutorial": ("experiments.tutorial", "reproduce every figure of the Neuromatch tutorial, theory dashed on top"),
    "verify": ("experiments.verify", "train real networks and measure the gap to each theory (the main job)"),
    "sweep": ("experiments.sweep", "map where the theory holds over lr × init scale × depth × width × seeds"),
}


class UsageError(ValueError):
    """Bad input found after argument parsing (exit code 2, message without a traceback)."""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with ``only``, just that subcommand's module is imported (start-up is then the cost
    of that command alone, not of all of them)."""
    parser = argparse.ArgumentParser(prog="saxe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, (module, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if only is None or name == only:
            importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(first if first in SUBCOMMANDS else "")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(importlib.import_module(args._module).run(args))
    except (UsageError, ValueError) as exc:
        print(f"saxe {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"saxe {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
