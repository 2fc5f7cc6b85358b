"""``python -m saxe …`` runs the ``saxe`` command line (:mod:`experiments.cli`).

This entry point is the only place under ``saxe/`` that reaches into ``experiments``; it is never imported by
``import saxe``, so the library itself keeps its one-way dependency (saxe ↛ experiments).

``python -m`` puts the current folder first on ``sys.path``; a research folder with its own ``experiments/`` or
``theory/`` package would then shadow ours. The folder this package is installed in (site-packages, or the
source tree of an editable install), which also holds ``theory`` and ``experiments``, goes first instead.
"""
import os
import sys

_installed = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if sys.path[:1] != [_installed]:
    sys.path.insert(0, _installed)

from experiments.cli import main  # noqa: E402

sys.exit(main())
