"""The documentation site builds with warnings as errors. The build renders the notebooks as the test session
executed them (the ``executed_notebooks`` fixture, ``SAXE_DOCS_NOTEBOOKS``), instead of executing them a second time
(its own default, ``nb_execution_mode = "force"``, for a build outside the tests)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_with_warnings_as_errors(tmp_path, executed_notebooks):
    env = {**os.environ, "SAXE_DOCS_NOTEBOOKS": str(executed_notebooks[1])}
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q",
                           str(ROOT / "docs"), str(tmp_path / "html")], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    html = tmp_path / "html"
    for page in ("index", "conventions", "theory", "api", "cli", "gallery", "cite", "notebooks"):
        assert (html / f"{page}.html").exists(), page
    notebook = (html / "_generated" / "notebooks" / "tutorial.html").read_text()
    assert notebook.count("<img") >= 5  # rendered with the outputs the build's execution produced
    api = (html / "api.html").read_text()
    for name in ("theory.predictor", "theory.stable_lr", "theory.divergence_lr", "saxe.train", "saxe.rsa.to_rdms"):
        assert f'id="{name}"' in api, name
    assert "saxe verify" in (html / "cli.html").read_text()
