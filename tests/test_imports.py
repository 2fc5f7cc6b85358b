"""Import hygiene: ``theory`` stays torch-free, and neither library imports the ``experiments`` layer.

The check runs in a fresh interpreter (``sys.executable -c``), since this test process has long imported
everything: it imports ``theory`` (every submodule), notes the loaded top-level packages, then does the same
for ``saxe``.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Import each package and every submodule under it (except ``__main__``: ``python -m saxe`` is by design the
# command-line entry point into ``experiments``); after each, print the top-level packages in ``sys.modules``.
_SCRIPT = """
import importlib, json, pkgutil, sys
snapshots = {}
for name in ("theory", "saxe"):
    pkg = importlib.import_module(name)
    for info in pkgutil.walk_packages(pkg.__path__, name + "."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    snapshots[name] = sorted({m.split(".")[0] for m in sys.modules})
print(json.dumps(snapshots))
"""


@pytest.fixture(scope="module")
def loaded() -> dict[str, set[str]]:
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return {k: set(v) for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}


def test_theory_does_not_import_torch_or_experiments(loaded):
    mods = loaded["theory"]
    assert "theory" in mods and "numpy" in mods  # the imports did happen
    assert "torch" not in mods
    assert "saxe" not in mods
    assert "experiments" not in mods


def test_saxe_and_theory_do_not_import_experiments(loaded):
    mods = loaded["saxe"]
    assert "saxe" in mods and "theory" in mods and "torch" in mods  # the imports did happen
    assert "experiments" not in mods
