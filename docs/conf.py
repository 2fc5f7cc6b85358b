"""Sphinx configuration of the saxe-dln documentation (build: see README.md, "Documentation").

Sphinx + MyST-NB rather than mkdocs: one build executes and renders the notebooks (myst-nb), reads the API
reference from the docstrings the code already carries (autodoc + napoleon), and typesets the equations
(MathJax); ``-W`` turns every warning — a broken reference, a malformed docstring, a failing notebook cell —
into a failed build, which the test suite runs. There the notebooks are executed once by the suite itself
(``tests/notebook_run.py``, which fails on an error output) and handed to the build in ``SAXE_DOCS_NOTEBOOKS``,
which renders them without executing them again.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

project = "saxe-dln"
author = "saxe-dln developers"
copyright = "2026, saxe-dln developers"  # noqa: A001 - Sphinx's name

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax",
              "sphinx.ext.viewcode"]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
html_theme = "furo"
html_title = "saxe-dln"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# The notebooks are committed without outputs; the build runs them. The test suite executes them once for its own
# checks and hands the executed copies over in SAXE_DOCS_NOTEBOOKS, which the build then renders as they are.
_EXECUTED = os.environ.get("SAXE_DOCS_NOTEBOOKS")
nb_execution_mode = "off" if _EXECUTED else "force"
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
suppress_warnings = ["mystnb.unknown_mime_type"]  # widget views have no static rendering; their text is shown

# The notebooks live in notebooks/ (where they run); the build renders copies, and writes the CLI's help text.
_generated = HERE / "_generated"
shutil.rmtree(_generated, ignore_errors=True)
(_generated / "notebooks").mkdir(parents=True)
for nb in sorted((Path(_EXECUTED) if _EXECUTED else ROOT / "notebooks").glob("*.ipynb")):
    shutil.copy(nb, _generated / "notebooks" / nb.name)
(_generated / "examples").mkdir()
shutil.copy(ROOT / "examples" / "animals.csv", _generated / "examples" / "animals.csv")


def _cli_help() -> None:
    from experiments.cli import SUBCOMMANDS, build_parser

    parser = build_parser()
    (_generated / "saxe.txt").write_text(parser.format_help())
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in SUBCOMMANDS:
        (_generated / f"saxe_{name}.txt").write_text(sub.choices[name].format_help())


_cli_help()
