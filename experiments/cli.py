"""The saxe command line: saxe tutorial | verify | sweep.

Exit codes, the same for every command:

* 0 — done (``verify``: every check with a tolerance passed);
* 1 — a verification check failed (``verify``), or a shard is missing or incomplete (``sweep --merge``);
* 2 — bad input: arguments, data files, or a setting no theory can check (an lr above the stable bound);
* 3 — training or a theory's map diverged (``saxe.DivergenceError``, ``theory.OrbitDivergenceError``);
* 4 — environment: the results cannot be written (read-only or immutable folder, full disk);
* 130 — interrupted (Ctrl-C), 143 — terminated (SIGTERM, e.g. ``kill`` or a batch scheduler's time limit): both
  unwind like an error, so no temp file is left and no result looks complete.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``; they are
imported lazily so that ``saxe --help`` is quick.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from contextlib import contextmanager

SUBCOMMANDS = {
    "tutorial": ("experiments.tutorial", "reproduce every figure of the Neuromatch tutorial, theory dashed on top"),
    "verify": ("experiments.verify", "train real networks and measure the gap to each theory (the main job)"),
    "sweep": ("experiments.sweep", "map where the theory holds over lr × init scale × depth × width × seeds"),
}
EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_ENVIRONMENT, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, the shell's convention


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that the command unwinds as on Ctrl-C (exit code 143)."""


@contextmanager
def _sigterm_unwinds():
    """While a command runs, SIGTERM raises :class:`Terminated` instead of killing the process on the spot (which
    left atomic writers' temp files behind and no message)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum, frame):
        raise Terminated()

    old = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


#: The largest seed: torch.Generator.manual_seed takes a signed 64-bit integer (larger ones failed with "Overflow
#: when unpacking long long", naming no option).
MAX_SEED = 2**63 - 1


class UsageError(ValueError):
    """Bad input found after argument parsing (exit code 2, message without a traceback)."""


class OutputError(OSError):
    """The results cannot be written (exit code 4, message without a traceback)."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("saxe-dln")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
        return "unknown (not installed)"


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with ``only``, just that subcommand's module is imported (start-up is then the cost
    of that command alone, not of all of them)."""
    parser = argparse.ArgumentParser(
        prog="saxe", description="The saxe command line: " + ", ".join(SUBCOMMANDS) + ".",
        epilog="exit codes: 0 done, 1 a check failed or a merge is incomplete, 2 bad input, 3 training diverged, "
               "4 cannot write results, "
               "130 interrupted")
    parser.add_argument("--version", action="version", version=f"saxe-dln {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, (module, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if only is None or name == only:
            importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def _diverged(exc: BaseException) -> bool:
    """saxe.DivergenceError or theory.OrbitDivergenceError (looked up without importing torch)."""
    from theory.errors import OrbitDivergenceError

    if isinstance(exc, OrbitDivergenceError):
        return True
    errors = sys.modules.get("saxe.errors")
    return errors is not None and isinstance(exc, errors.DivergenceError)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(first if first in SUBCOMMANDS else "")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        with _sigterm_unwinds():
            return int(importlib.import_module(args._module).run(args))
    except Terminated:
        print(f"saxe {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(f"saxe {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - classified below; anything else is a bug and keeps its traceback
        if _diverged(exc):
            print(f"saxe {args.command}: diverged: {exc}", file=sys.stderr)
            return EXIT_DIVERGED
        if isinstance(exc, ValueError):
            print(f"saxe {args.command}: error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if isinstance(exc, OSError):
            print(f"saxe {args.command}: error: {exc}", file=sys.stderr)
            return EXIT_ENVIRONMENT
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
