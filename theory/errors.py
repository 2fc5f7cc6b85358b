"""The one error :mod:`theory` raises besides ``ValueError`` for bad input.

An orbit that diverges is not bad input: the learning rate is beyond what the map survives. It is a
``ValueError`` subclass (the argument η is out of the map's range, and existing ``except ValueError`` code keeps
working), but callers that report outcomes — the ``saxe`` command line maps it to its "diverged" exit code, not to
"bad input" — can tell it apart.
"""
from __future__ import annotations

__all__ = ["OrbitDivergenceError"]


class OrbitDivergenceError(ValueError):
    """A theory's map (scalar, coupled or exact) left the finite numbers at this η: it diverges, as SGD does."""
