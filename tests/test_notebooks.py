"""The notebooks execute headless on the installed package, and the tutorial's widget callbacks work for every
slider value tried (so a broken demo fails CI, not a student's session). They are executed once per session
(:mod:`notebook_run`, the ``executed_notebooks`` fixture), and the docs build renders the same executions."""
from __future__ import annotations

import pytest
from notebook_run import FIGURES, _outputs


@pytest.mark.parametrize("name", list(FIGURES))
def test_notebook_executes_headless(name, executed_notebooks):
    nb = executed_notebooks[0][name]
    assert not _outputs(nb, "error")
    images = [o for o in _outputs(nb, "display_data") if "image/png" in o.data]
    assert len(images) >= FIGURES[name], f"{name} drew {len(images)} figures outside its widgets"
    if name == "tutorial.ipynb":
        last = nb.cells[-1]
        text = "".join(o.get("text", "") for o in last.outputs if o.output_type == "stream")
        assert "CALLBACKS-OK 15" in text
