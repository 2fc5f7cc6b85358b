"""No traceback, no stale result, no silent guess: each case of the hardening issue, tried as a user would."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import saxe
import theory
from experiments import cli

ROOT = Path(__file__).resolve().parents[1]


def _csv(tmp_path: Path, text: str, name: str = "good.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = "item,f1,f2,f3\na,1,0,1\nb,0,1,1\nc,1,1,0\n"


def _run(args, capsys):
    rc = cli.main(args)
    return rc, capsys.readouterr().err


# ------------------------------------------------------------------------------------------ exit codes
def test_an_lr_that_diverges_is_refused_before_training_with_exit_2(tmp_path, capsys):
    out = tmp_path / "o"
    rc, err = _run(["verify", "--data", str(_csv(tmp_path, GOOD)), "--lr", "1e9", "--out", str(out), "--quiet"],
                   capsys)
    assert rc == 2 and "above the stable bound" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("command", [
    ["verify", "--data", None, "--gamma", "1e200"],
    ["verify", "--gamma", "1e200"],
    ["sweep", "--seeds", "1", "--features", "40", "--epochs", "5", "--lr", "1", "--gamma", "1e-3", "1e200"],
])
def test_an_init_scale_that_overflows_float64_is_bad_input(tmp_path, capsys, command):
    """γ so large that σ² overflows: exit 2 naming gamma before anything is written, never an OverflowError."""
    out = tmp_path / "o"
    command = [str(_csv(tmp_path, GOOD)) if c is None else c for c in command]
    rc, err = _run([*command, "--out", str(out), "--quiet"], capsys)
    assert rc == 2 and "gamma" in err and "too large" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("command, needle", [
    (["verify", "--seed", str(2**64)], "--seed must be <="),
    (["sweep", "--seeds", "2", "--seed-start", str(2**63 - 1), "--features", "40"], "--seed-start"),
    (["sweep", "--data-seed", str(2**70), "--features", "40"], "--data-seed"),
])
def test_a_seed_beyond_64_bits_is_refused_by_name(tmp_path, capsys, command, needle):
    """Regression: these failed with "Overflow when unpacking long long" (no option named), the sweep after
    writing its marker."""
    out = tmp_path / "o"
    rc, err = _run([*command, "--out", str(out), "--quiet"], capsys)
    assert rc == 2 and needle in err and not out.exists()


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs /sys (a read-only folder even for root)")
def test_a_sweep_out_folder_that_cannot_be_made_is_exit_4_like_verify(tmp_path, capsys):
    """Regression: sweep gave exit 2 (bad input) where verify and tutorial give 4 (cannot write)."""
    target = Path("/sys/saxe-cannot-write-here")
    if target.exists():
        pytest.skip("/sys/saxe-cannot-write-here exists")
    for command in (["sweep", "--seeds", "1", "--features", "40", "--epochs", "5", "--lr", "1", "--gamma", "1e-3"],
                    ["verify", "--quick"]):
        rc, err = _run([*command, "--out", str(target), "--quiet"], capsys)
        assert rc == 4 and "--out" in err, (command, rc, err)


def test_huge_values_are_refused_with_their_location(tmp_path, capsys):
    data = _csv(tmp_path, "item,f1,f2\na,1,0\nb,1e300,1\n", "huge.csv")
    rc, err = _run(["verify", "--data", str(data), "--out", str(tmp_path / "o"), "--quiet"], capsys)
    assert rc == 2 and f"{data}:3:2:" in err and "rescale" in err


@pytest.mark.parametrize("text, where", [
    ("item,f1,f2\na,1_000,0\nb,1,1\n", ":2:2: non-numeric value '1_000'"),
    ("item,f1,f2\na,0x1f,0\nb,1,1\n", ":2:2: non-numeric value '0x1f'"),
    ("item,f1,f1\na,1,0\nb,1,1\n", ":1:3: duplicate feature name 'f1'"),
    (",,\na,1,0\nb,1,1\n", ":1:2: empty feature name"),
])
def test_silently_accepted_cells_and_headers_are_refused(tmp_path, capsys, text, where):
    data = _csv(tmp_path, text, "t.csv")
    rc, err = _run(["verify", "--data", str(data), "--out", str(tmp_path / "o"), "--quiet"], capsys)
    assert rc == 2 and where in err


def test_training_that_diverges_exits_3_and_leaves_no_folder(tmp_path, capsys, monkeypatch):
    from experiments import verify

    def diverge(*args, **kwargs):
        raise saxe.DivergenceError(7, 1.0, float("nan"), None, "the loss is no longer finite")

    monkeypatch.setattr(verify, "train_run", diverge)
    out = tmp_path / "o"
    rc, err = _run(["verify", "--quick", "--out", str(out), "--quiet"], capsys)
    assert rc == 3 and "diverged" in err and "epoch 7" in err and not out.exists()


def test_a_theory_orbit_that_diverges_exits_3(tmp_path, capsys, monkeypatch):
    from experiments import verify_checks

    def diverge(*args, **kwargs):
        raise theory.OrbitDivergenceError("eta=1 makes the exact SGD map diverge (at step 3)")

    monkeypatch.setattr(verify_checks, "predict", diverge)
    rc, err = _run(["verify", "--quick", "--out", str(tmp_path / "o"), "--quiet"], capsys)
    assert rc == 3 and "exact SGD map diverge" in err


def test_an_unwritable_out_folder_fails_before_training_with_exit_4(tmp_path, capsys, monkeypatch):
    from experiments import outdir, verify

    trained = []
    monkeypatch.setattr(verify, "train_run", lambda *a, **k: trained.append(1))

    def refuse(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(outdir.tempfile, "mkstemp", refuse)
    out = tmp_path / "o"
    rc, err = _run(["verify", "--quick", "--out", str(out), "--quiet"], capsys)
    assert rc == 4 and "cannot write there" in err and not trained and not out.exists()


@pytest.mark.skipif(shutil.which("chattr") is None or os.geteuid() != 0, reason="chattr +i needs root")
def test_an_immutable_out_folder_fails_before_training(tmp_path, capsys):
    out = tmp_path / "immutable"
    out.mkdir()
    if subprocess.run(["chattr", "+i", str(out)], capture_output=True).returncode != 0:
        pytest.skip("this filesystem does not support chattr +i")
    try:
        rc, err = _run(["verify", "--quick", "--out", str(out), "--quiet"], capsys)
    finally:
        subprocess.run(["chattr", "-i", str(out)], check=True)
    assert rc == 4 and "cannot write there" in err and not any(out.iterdir())


# ------------------------------------------------------------------------------------------ stale results
def test_a_previous_run_is_never_left_looking_fresh(tmp_path, capsys, monkeypatch):
    good, other = _csv(tmp_path, GOOD), _csv(tmp_path, GOOD.replace("c,1,1,0", "c,0,0,1"), "other.csv")
    out = tmp_path / "ow"
    assert cli.main(["verify", "--data", str(good), "--out", str(out), "--quiet"]) == 0
    first = sorted(p.name for p in out.iterdir())
    assert "metrics.json" in first and any(n.startswith("good_") for n in first)
    # a second run into the same folder is refused without --force, and the folder is untouched
    rc, err = _run(["verify", "--data", str(other), "--out", str(out), "--quiet"], capsys)
    assert rc == 2 and "--force" in err and sorted(p.name for p in out.iterdir()) == first
    # with --force a run that fails leaves no metrics.json behind (it is removed before any work)
    from experiments import verify

    monkeypatch.setattr(verify, "train_run", lambda *a, **k: (_ for _ in ()).throw(
        saxe.DivergenceError(1, 1.0, float("nan"), None, "boom")))
    rc, _ = _run(["verify", "--data", str(other), "--out", str(out), "--quiet", "--force"], capsys)
    assert rc == 3 and not (out / "metrics.json").exists() and not list(out.glob("good_*.png"))
    monkeypatch.undo()
    # and a successful --force run leaves only its own files
    assert cli.main(["verify", "--data", str(other), "--out", str(out), "--quiet", "--force"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.startswith("good_")] and any(n.startswith("other_") for n in names)
    from experiments.report import MANIFEST  # every file verify wrote is listed, so a later --force removes it

    assert sorted((out / MANIFEST).read_text().split()) == [n for n in names if n != MANIFEST]


def test_force_removes_only_what_a_run_wrote(tmp_path):
    """--force replaces a previous run's results (listed in the folder's manifest as they are written) and never a
    file the user put there, whatever its suffix. (That verify's own files are all listed: the stale-results test.)"""
    from experiments.outdir import prepared_out
    from experiments.report import MANIFEST, write_json, write_text

    out = tmp_path / "mine"
    with prepared_out(out, force=False):
        write_text(out / "good_loss.png", "a figure")
        write_text(out / "report.md", "a report")
        write_json(out / "metrics.json", {})
    assert set((out / MANIFEST).read_text().split()) == {"good_loss.png", "report.md", "metrics.json"}
    user = {"my_notes.json": "{}", "holiday.png": "not a figure", "keep.txt": "hi", ".draft.tmp": "mine"}
    for name, text in user.items():
        (out / name).write_text(text)
    (out / ".good_loss.png.abc123.tmp").write_text("a killed write")
    with prepared_out(out, force=True):
        assert {p.name for p in out.iterdir()} == set(user)  # the results and their temp file are gone
        write_text(out / "other_loss.png", "a figure")
    assert all((out / n).read_text() == t for n, t in user.items())
    assert (out / MANIFEST).read_text().split() == ["other_loss.png"]


def test_a_killed_runs_files_are_listed_before_they_exist(tmp_path):
    """The manifest names a file before its write starts, so the files of a run killed mid-way are known."""
    from experiments.outdir import prepared_out
    from experiments.report import MANIFEST, write_text

    out = tmp_path / "killed"
    with prepared_out(out, force=False):
        write_text(out / "a.png", "x")
        assert (out / MANIFEST).read_text().split() == ["a.png"]
    write_text(out / "outside.txt", "not claimed")  # after the command: not listed
    assert (out / MANIFEST).read_text().split() == ["a.png"]
    with prepared_out(out, force=True):
        assert not (out / "a.png").exists() and (out / "outside.txt").exists()


def test_result_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "perm"
        assert cli.main(["verify", "--data", str(_csv(tmp_path, GOOD)), "--out", str(out), "--quiet"]) == 0
    finally:
        os.umask(old)
    for p in out.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p.name


# ------------------------------------------------------------------------------------------ messages
def test_gamma_messages_agree(tmp_path, capsys):
    for value in ("-1", "0"):
        rc, err = _run(["verify", "--quick", "--gamma", value, "--out", str(tmp_path / "o"), "--quiet"], capsys)
        assert rc == 2 and "--gamma must be > 0 and finite" in err


def test_api_misuse_names_the_argument():
    with pytest.raises(ValueError, match="model must be a torch.nn.Module.*got str"):
        saxe.initializer_("net", gamma=1e-3)
    X, Y = saxe.generate_hsd(n_features=40, rng=0)
    good = [np.zeros((30, 8)), np.zeros((40, 30))]
    with pytest.raises(ValueError, match=r"weights must chain: weights\[1\] has 29 columns .* weights\[0\] has 30 rows"):
        theory.predictor(X, Y, 1.0, weights=[good[0], np.zeros((40, 29))])
    with pytest.raises(ValueError, match="same number of rows"):
        theory.predictor(X[:7], Y, 1.0, weights=good)


def test_linear_regression_is_sample_major_like_everything_else():
    X, Y = saxe.generate_hsd(n_features=40, rng=0)
    np.testing.assert_array_equal(saxe.linear_regression(np.eye(8), Y), Y.T)  # was Y (the tutorial's layout)
    assert saxe.linear_regression(X, Y).shape == (40, 8)  # (N_out, N_in) like W_tot


def test_randomness_is_never_global():
    net = saxe.LNNet(3, 4, 5)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    saxe.initializer_(net, 1.0)  # generator=None: a fresh OS-seeded generator
    a = saxe.weights(net)[0].detach().clone()
    saxe.initializer_(net, 1.0)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG was not touched
    assert not torch.equal(a, saxe.weights(net)[0])  # and the draws are not a fixed seed


def test_constants_say_what_they_measure():
    assert saxe.LOSS_DIVERGENCE_FACTOR == 1e4 and theory.ORBIT_ESCAPE_FACTOR == 1e6
    assert not hasattr(saxe, "DIVERGENCE_FACTOR") and not hasattr(theory, "DIVERGENCE_FACTOR")


# ------------------------------------------------------------------------------------------ long work, logs
def test_train_can_show_progress_and_logs_get_no_escape_codes(tmp_path, capfd):
    X, Y = saxe.generate_hsd(n_features=20, rng=0)
    saxe.train(saxe.LNNet(8, 4, 20), X, Y, 50, 1.0, progress=True)
    assert "saxe.train" in capfd.readouterr().err
    with pytest.raises(ValueError, match="progress must be"):
        saxe.train(saxe.LNNet(8, 4, 20), X, Y, 5, 1.0, progress="yes")
    # the CLI with stderr redirected (not a TTY): plain lines, no carriage returns or cursor codes
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "saxe", "verify", "--data", str(_csv(tmp_path, GOOD)),
                           "--out", str(tmp_path / "log")], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "\x1b[" not in proc.stderr and "epochs in" in proc.stderr
    assert proc.stdout.splitlines()[0].startswith(("PASS", "    "))  # results start on their own line


# ------------------------------------------------------------------------------------------ the CLI itself
def test_python_m_saxe_works_from_a_folder_with_its_own_experiments_and_theory(tmp_path):
    for pkg in ("experiments", "theory"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text(f"raise ImportError('the user\\'s own {pkg} package')\n")
    data = _csv(tmp_path, GOOD)  # a small table: every package is imported as for the default runs, in seconds
    proc = subprocess.run([sys.executable, "-m", "saxe", "verify", "--data", str(data), "--quiet", "--out", "o"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "metrics.json").exists()


def test_version_help_and_defaults(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0 and "saxe-dln" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert "``" not in text and "exit codes" in text
    parser = cli.build_parser()
    assert parser.parse_args(["tutorial"]).out == "tutorial_out"
    assert parser.parse_args(["verify"]).out == "verify_out"


def test_metrics_record_complete_runs_only(tmp_path):
    out = tmp_path / "m"
    assert cli.main(["verify", "--data", str(_csv(tmp_path, GOOD)), "--out", str(out), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["runs"]["good"]["figures"]) <= {p.name for p in out.iterdir()}


def test_sigterm_unwinds_like_ctrl_c(tmp_path):
    """kill (SIGTERM) mid-sweep: exit 143 with one line on stderr, no temp file left, the marker not complete."""
    import signal
    import sys
    import time

    out = tmp_path / "term"
    cmd = [sys.executable, "-m", "saxe", "sweep", "--seeds", "64", "--features", "60", "--epochs", "4000", "--lr",
           "1", "2", "--gamma", "1e-3", "--depth", "3", "--batch", "2", "--quiet", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "sweep.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "terminated" in err and "Traceback" not in err
    assert not list(out.glob(".*.tmp"))
    assert json.loads((out / "sweep.json").read_text())["complete"] is False
