"""`saxe tutorial`: every figure and result file is written, atomically, with no `plt.show`; bad input → exit 2.

One small run is shared by the module (``--features 200 --epochs 30 --rsm-epochs 12,30``: the learning rates
scale with √N, so the zero-depth net still converges; the deep net does not need to for these checks).
"""
from __future__ import annotations

import contextlib
import io
import json

import matplotlib.pyplot as plt
import pytest

from experiments import cli, tutorial

EPOCHS, FEATURES, RSM = 30, 200, (12, 30)
FIGURES = ["tree_data", "hier_data_all", "hier_data_one", "loss", "loss_sv", "loss_sv_twin", "shark_tree_data",
           "shark_has_bones", "parrot_tree_data", "parrot_cannot_speak", "zero_depth_loss"]


def _no_show(*args, **kwargs):
    raise AssertionError("plt.show() must never be called")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """Run the tutorial once, quietly, with ``plt.show`` patched to raise."""
    out = tmp_path_factory.mktemp("tutorial") / "out"
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout):
        mp.setattr(plt, "show", _no_show)
        mp.setattr("matplotlib.figure.Figure.show", _no_show)
        rc = cli.main(["tutorial", "--out", str(out), "--quiet", "--epochs", str(EPOCHS),
                       "--features", str(FEATURES), "--seed", "3", "--rsm-epochs", ",".join(map(str, RSM))])
    return rc, out, stdout.getvalue()


def test_runs_without_plt_show_and_quietly(small_run):
    rc, _, stdout = small_run
    assert rc == 0
    assert stdout == ""


def test_every_expected_file_is_written_and_non_empty(small_run):
    _, out, _ = small_run
    expected = [f"{n}.png" for n in FIGURES]
    expected += [f"rsm_epoch_{e:03d}.png" for e in RSM]
    expected += ["rsm_evolution.gif", "linear_regression_comparison.json", "summary.json"]
    for name in expected:
        path = out / name
        assert path.is_file() and path.stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["files"]) == sorted(expected)
    # nothing else, in particular no temporary files left behind by the atomic writers; the manifest lists them all
    from experiments.report import MANIFEST

    assert sorted(p.name for p in out.iterdir()) == sorted([*expected, MANIFEST])
    assert sorted((out / MANIFEST).read_text().split()) == sorted(expected)


def test_summary_records_config_versions_and_theory(small_run):
    _, out, _ = small_run
    summary = json.loads((out / "summary.json").read_text())
    cfg = summary["config"]
    assert (cfg["seed"], cfg["epochs"], cfg["features"], cfg["gamma"]) == (3, EPOCHS, FEATURES, 1e-12)
    assert cfg["rsm_epochs"] == list(RSM)
    assert cfg["lr"] == pytest.approx(100.0 * (FEATURES / 10000) ** 0.5)
    assert {"numpy", "torch", "matplotlib", "saxe-dln"} <= set(summary["versions"])
    assert summary["theory"]["overlay"] is True, summary["theory"]["problems"]
    assert summary["theory"]["max_gaps"]["zero_depth"]["loss_max_abs"] < 1e-4


def test_gif_has_several_frames(small_run):
    from PIL import Image

    _, out, _ = small_run
    with Image.open(out / "rsm_evolution.gif") as im:
        assert im.format == "GIF" and im.is_animated
        assert im.n_frames == len(tutorial.gif_frames(EPOCHS)) >= 5


def test_png_files_are_images(small_run):
    _, out, _ = small_run
    for name in ("loss.png", "rsm_epoch_030.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_linear_regression_comparison(small_run):
    _, out, _ = small_run
    cmp = json.loads((out / "linear_regression_comparison.json").read_text())
    z = cmp["zero_depth_vs_analytical"]
    assert z["allclose"] is True and z["max_abs_diff"] < 1e-2
    assert {"deep_w_tot_vs_analytical", "zero_depth_vs_deep_w_tot", "all_approximately_equal"} <= set(cmp)


def test_stdout_summary_lists_files(small_run, capsys):
    _, out, _ = small_run
    summary = json.loads((out / "summary.json").read_text())
    cmp = json.loads((out / "linear_regression_comparison.json").read_text())
    tutorial._print_summary(out, summary, cmp)
    text = capsys.readouterr().out
    assert f"wrote {len(summary['files'])} files to {out}" in text
    assert "rsm_evolution.gif" in text and "approximately equal" in text


@pytest.mark.parametrize("extra, message", [
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--features", "0"], "--features must be >= 1"),
    (["--seed", "-1"], "--seed must be >= 0"),
    (["--format", "jpg"], "--format must be one of"),
    (["--epochs", "20", "--rsm-epochs", "5,21"], "--rsm-epochs must list epochs in 0..20"),
    (["--rsm-epochs", "a,b"], "--rsm-epochs must be comma-separated integers"),
])
def test_bad_arguments_exit_2_and_write_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert cli.main(["tutorial", "--out", str(out), "--quiet", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_unwritable_out_dir_exits_2(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for out in (blocker, blocker / "sub"):
        assert cli.main(["tutorial", "--out", str(out), "--quiet"]) == 2
        assert "--out" in capsys.readouterr().err
    assert blocker.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_rsm_epochs_and_gif_frames():
    assert tutorial.rsm_epochs(250) == list(tutorial.RSM_EPOCHS)
    assert 61 in tutorial.rsm_epochs(250) and 10 in tutorial.rsm_epochs(250)
    assert tutorial.rsm_epochs(1) == [0, 1]
    frames = tutorial.gif_frames(250)
    assert frames[0] == 0 and frames[-1] == 250 and frames[1] == 5
    assert tutorial.gif_frames(3) == [0, 1, 2, 3]


def test_plots_return_figures_without_pyplot():
    import numpy as np
    from matplotlib.figure import Figure

    from experiments import plots

    before = plt.get_fignums()
    losses, modes = np.linspace(1, 0, 11), np.outer(np.linspace(0, 1, 11), [3.0, 2.0, 1.0])
    figs = [plots.plot_loss(losses, losses * 0.9), plots.plot_loss_sv(losses, modes, losses, modes),
            plots.plot_loss_sv_twin(losses, modes), plots.plot_ills_sv_twin(losses, modes, "x", losses, modes)]
    assert all(isinstance(f, Figure) for f in figs)
    assert plt.get_fignums() == before  # no pyplot-managed figures were created
    with pytest.raises(ValueError, match="theory"):
        plots.plot_loss(losses, losses[:3])


def test_knobs_and_your_own_feature(tmp_path):
    """`saxe tutorial --lr 50 --gamma 1e-6 --feature "has_fins=Goldfish:1,Tuna:1"` (at 1000 features): the
    feature's figure is written with the theory on top, and the fish first follow the root mode down — their
    illusory correlation — before the finer mode lifts them to +1."""
    out = tmp_path / "d"
    assert cli.main(["tutorial", "--lr", "50", "--gamma", "1e-6", "--feature", "has_fins=Goldfish:1,Tuna:1",
                     "--features", "1000", "--out", str(out), "--quiet"]) == 0
    assert (out / "feature_has_fins.png").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["lr"] == 50 and summary["config"]["gamma"] == 1e-6
    assert summary["theory"]["overlay"], summary["theory"]["problems"]
    own = summary["own_features"]["has_fins"]
    assert own["values"]["Goldfish"] == 1 and own["values"]["Rose"] == -1
    assert own["final"]["Tuna"] > 0.9 and own["final"]["Oak"] < -0.9
    assert set(own["illusory_items"]) >= {"Goldfish", "Tuna"}
    assert own["prediction_max_abs"] < 1e-3  # float32 training against the float64 theory


@pytest.mark.parametrize("extra, message", [
    (["--feature", "has_fins"], "--feature must look like NAME=ITEM:VALUE"),
    (["--feature", "has_fins=Shark:1"], "unknown item 'Shark'"),
    (["--feature", "has_fins=Tuna:yes"], "must be ITEM:VALUE with a finite number"),
    (["--feature", "x=Goldfish:1e300"], "values must lie within"),
    (["--feature", "x=Goldfish:1", "--feature", "x=Tuna:1"], "names must differ, 'x' is given 2 times"),
    (["--depth", "1"], "--depth must be >= 2"),
    (["--gamma", "0"], "--gamma must be > 0"),
    (["--lr", "-1"], "--lr must be > 0"),
    (["--hidden", "0"], "--hidden must be >= 1"),
    # an lr above a trained network's stable bound: refused before training (it diverged at epoch 21, exit 3)
    (["--lr", "1000"], "--lr 1000 is above the stable bound 254.5 of the depth-2 network on the tree"),
    (["--depth", "3"], "the default lr 100 (the tutorial's, scaled to --features) is above the stable bound 31.4"),
    (["--feature", "x=Goldfish:1e3"], "of the depth-2 network on --feature x"),
    # the suggestion is below every network's bound (the feature's 2.649, not the tree's 31.4)
    (["--depth", "3", "--feature", "x=Goldfish:1e3"], "stable bound 2.649 of the depth-3 network on --feature x"),
    (["--features", "1"], "the zero-depth net's lr 10 (the tutorial's 1000, scaled to --features) is above its "
                          "stable bound 8"),  # it diverged at epoch 12 and left 17 files
])
def test_bad_knobs_exit_2(tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert cli.main(["tutorial", "--out", str(out), "--quiet", *extra]) == 2
    assert message in capsys.readouterr().err and not out.exists()
