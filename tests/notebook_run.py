"""Executing the notebooks once per test session, shared by tests/test_notebooks.py (their outputs and the tutorial's
widget callbacks) and tests/test_docs.py (the docs site renders those executed copies instead of running the
notebooks a second time)."""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

# Callbacks of tutorial.ipynb at the edges and inside of the tutorial's slider ranges (lr 1–200, γ 1e-15–10,
# epoch 10–241) and of the added depth slider; an lr above a deep net's stable bound and a diverging run included.
WIDGET_CHECKS = '''
import numpy as np
from matplotlib.figure import Figure
checks = 0
for lr, g, d in [(1.0, 1e-15, 2), (200.0, 10.0, 2), (150.0, 1e-6, 3), (37.0, 1e-3, 4), (100.0, 1e-12, 2)]:
    run = demo.train_with_theory(X, Y, lr, g, d)
    assert (run.rec is None) == any("diverged" in n for n in run.notes), run.notes
    if run.rec is not None and run.pred is not None:
        assert np.abs(run.pred.modes(run.t) - run.rec.modes).max() < 1e-6 * run.s[0]
    assert isinstance(loss_lr_init(lr, g, d), Figure)
    checks += 1
for lr, g, ep, d in [(20.0, 1e-15, 10, 2), (200.0, 1.0, 241, 2), (100.0, 1e-12, 120, 3)]:
    assert isinstance(loss_svd_rsm_lr_gamma(lr, g, ep, d), Figure)
    checks += 1
for spec in ["has_fins=Goldfish:1,Tuna:1", "can_fly=Robin:1,Canary:1", "is_tall=Pine:1,Oak:1"]:
    assert isinstance(own_feature(spec), Figure)
    checks += 1
# moving a slider redraws the widget's image; each control is put back afterwards, so the widget state the docs
# page embeds (the notebook's metadata) shows the notebook's own defaults
moved = [(demo1, "lr", 150.0), (demo1, "depth", 3), (rsa_demo, "i_ep", 241),
         (feature_demo, "spec", "has_fins=Goldfish:1,Tuna:1")]
defaults = [box.controls[name].value for box, name, _ in moved]
for box, name, value in moved:
    before = box.image.value
    box.controls[name].value = value
    assert box.image.value != before and box.image.value[:4] == bytes([0x89, 0x50, 0x4E, 0x47])
    checks += 1
for (box, name, _), value in zip(moved, defaults):
    box.controls[name].value = value
assert [box.controls[name].value for box, name, _ in moved] == defaults
s = sliders
assert (s["lr"].min, s["lr"].max, s["i_ep"].min, s["i_ep"].max) == (20.0, 200.0, 10, 241)
assert (s["gamma"].min, s["gamma"].max, s["gamma"].base) == (-15, 1, 10)
lr1 = demo1.controls["lr"]
assert (lr1.min, lr1.max, demo1.controls["gamma"].min, demo1.controls["gamma"].max) == (1.0, 200.0, -15, 1)
print("CALLBACKS-OK", checks)
'''


def _execute(name: str, extra: str | None = None) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    for cell in nb.cells:  # committed with outputs stripped
        assert cell.cell_type != "code" or (not cell.outputs and cell.execution_count is None), name
    if extra is not None:
        nb.cells.append(nbformat.v4.new_code_cell(extra))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def _outputs(nb, kind: str):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == kind]


#: The notebooks and how many figures each draws outside its widgets.
FIGURES = {"tutorial.ipynb": 5, "theory_vs_training.ipynb": 1, "your_data.ipynb": 1}


def execute_all(folder: Path) -> dict[str, nbformat.NotebookNode]:
    """Every notebook executed headless (the tutorial with :data:`WIDGET_CHECKS` appended), and a copy of each without
    the appended cell written to ``folder`` for the docs build."""
    done = {}
    for name in FIGURES:
        extra = WIDGET_CHECKS if name == "tutorial.ipynb" else None
        nb = _execute(name, extra)
        done[name] = nb
        copy = nbformat.from_dict(nb)
        if extra is not None:
            copy.cells = copy.cells[:-1]
        nbformat.write(copy, folder / name)
    return done
