"""``python -m saxe …`` runs the ``saxe`` command line (:mod:`experiments.cli`).

This entry point is the only place under ``saxe/`` that reaches into ``experiments``; it is never imported by
``import saxe``, so the library itself keeps its one-way dependency (saxe ↛ experiments).
"""
import sys

from experiments.cli import main

sys.exit(main())
