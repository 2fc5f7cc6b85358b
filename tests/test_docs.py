"""The documentation site builds with warnings as errors (the notebooks are executed by the build)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_with_warnings_as_errors(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q",
                           str(ROOT / "docs"), str(tmp_path / "html")], capture_output=True, text=True)
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
