"""Sweeps at scale: completion markers and merge safety, Dask (a 2-worker LocalCluster) giving the rows of a
single-process sweep, resume across both, and a lost worker's chunk retried."""
from __future__ import annotations

import json
import os
from pathlib import Path

from test_sweep import GRID, N_GRID, read, same_numbers, sweep

import experiments.sweep as S
from experiments import cli


def _interrupt_after_first_chunk(monkeypatch):
    """Make the sweep stop like a killed process after its first chunk has been written (KeyboardInterrupt → 130)."""
    real = S.compute_chunk
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(S, "compute_chunk", flaky)


def test_a_killed_shard_blocks_the_merge_unless_partial(tmp_path, monkeypatch, capsys):
    assert sweep(tmp_path, "--shard", "1/2") == 0
    marker = json.loads((tmp_path / "sweep.shard-1-of-2.json").read_text())
    assert marker["complete"] is True and marker["n_rows"] == marker["n_expected"] == N_GRID // 2
    with monkeypatch.context() as m:
        _interrupt_after_first_chunk(m)
        assert sweep(tmp_path, "--shard", "0/2") == 130
    _, partial_rows = read(tmp_path / "sweep.shard-0-of-2.csv")
    assert 0 < len(partial_rows) < N_GRID // 2  # the rows of the chunks it finished: complete rows only
    marker0 = json.loads((tmp_path / "sweep.shard-0-of-2.json").read_text())
    assert marker0["complete"] is False and marker0["n_expected"] == N_GRID // 2
    capsys.readouterr()

    # --merge refuses (exit 1), names the shard and why, writes nothing — also with --quiet
    assert cli.main(["sweep", "--out", str(tmp_path), "--merge", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "shard 0/2" in err and f"stopped after {len(partial_rows)} of {N_GRID // 2} runs" in err
    assert not (tmp_path / "sweep.csv").exists() and not (tmp_path / "sweep.json").exists()

    # --partial merges what is there, marks it partial in sweep.json, and says so on stderr even with --quiet
    assert cli.main(["sweep", "--out", str(tmp_path), "--merge", "--partial", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "PARTIAL" in err and "shard 0/2" in err
    info = json.loads((tmp_path / "sweep.json").read_text())
    assert info["partial"] is True and info["complete"] is False and info["incomplete_shards"] == [0]
    assert info["n_rows"] == len(partial_rows) + N_GRID // 2 and info["n_expected"] == N_GRID

    # resuming the shard completes it; then the merge is whole
    assert sweep(tmp_path, "--shard", "0/2", "--resume") == 0
    assert cli.main(["sweep", "--out", str(tmp_path), "--merge", "--quiet"]) == 0
    info = json.loads((tmp_path / "sweep.json").read_text())
    assert info["partial"] is False and info["complete"] is True and info["n_rows"] == N_GRID


def test_a_missing_shard_blocks_the_merge(tmp_path, capsys):
    assert sweep(tmp_path, "--shard", "0/3") == 0
    assert sweep(tmp_path, "--shard", "2/3") == 0
    assert cli.main(["sweep", "--out", str(tmp_path), "--merge", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "shard 1/3: missing" in err and "shard 0/3" not in err
    assert cli.main(["sweep", "--out", str(tmp_path), "--merge", "--partial", "--quiet"]) == 0
    info = json.loads((tmp_path / "sweep.json").read_text())
    assert info["missing_shards"] == [1] and info["partial"] is True
    assert info["n_expected"] == N_GRID and info["n_rows"] < N_GRID  # the whole grid, not the shards present
    assert f"of {N_GRID} expected" in capsys.readouterr().err


def test_shards_of_different_grids_are_not_merged(tmp_path, capsys):
    """A shard run with another grid (here another --lr) is refused by name, even though data, epochs and dtype
    agree and no run id repeats."""
    other = [a if a != "8" else "5" for a in GRID]
    assert sweep(tmp_path, "--shard", "0/2") == 0
    assert sweep(tmp_path, "--shard", "1/2", grid=other) == 0
    capsys.readouterr()
    assert cli.main(["sweep", "--out", str(tmp_path), "--merge", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "shard 1 was run with another grid" in err and "--lr" in err
    assert not (tmp_path / "sweep.csv").exists()


def test_resume_refuses_the_rows_of_another_grid(tmp_path, capsys):
    assert sweep(tmp_path) == 0
    capsys.readouterr()
    other = [a if a != "8" else "5" for a in GRID]
    assert sweep(tmp_path, "--resume", grid=other) == 2
    err = capsys.readouterr().err
    assert "not in this grid" in err and "lr8.0" in err
    assert json.loads((tmp_path / "sweep.json").read_text())["complete"] is True  # the first sweep's, untouched


def test_an_unsharded_sweep_marks_itself_complete(tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        _interrupt_after_first_chunk(m)
        assert sweep(tmp_path) == 130
    assert json.loads((tmp_path / "sweep.json").read_text())["complete"] is False
    assert sweep(tmp_path, "--resume") == 0
    info = json.loads((tmp_path / "sweep.json").read_text())
    assert info["complete"] is True and info["n_rows"] == N_GRID


def test_bad_dask_and_partial_arguments(tmp_path, capsys):
    for extra, needle in ((["--dask", "local:0"], "N >= 1"), (["--dask", "cluster"], "--dask must be"),
                          (["--partial"], "--merge only")):
        assert sweep(tmp_path, *extra) == 2
        assert needle in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------------- Dask
def test_dask_local_cluster_rows_identical_and_resume_across_both(tmp_path):
    single = tmp_path / "single"
    assert sweep(single) == 0
    _, want = read(single / "sweep.csv")

    # half the seeds in one process, then the rest on a 2-worker LocalCluster with --resume
    both = tmp_path / "both"
    half = [a if a != "2" or GRID[i - 1] != "--seeds" else "1" for i, a in enumerate(GRID)]
    assert sweep(both, grid=half) == 0
    assert sweep(both, "--resume", "--dask", "local:2") == 0
    _, got = read(both / "sweep.csv")
    assert [r["run_id"] for r in got] == [r["run_id"] for r in want]  # grid order, whatever order chunks finished
    assert all(same_numbers(g, w, rtol=0.0) for g, w in zip(got, want))
    info = json.loads((both / "sweep.json").read_text())
    assert info["complete"] is True and info["dask"] == "local:2" and info["n_resumed"] == N_GRID // 2


def _kill_worker_once(flag: str, *args):
    """A chunk that kills its worker process the first time it runs (the flag file is removed), then computes."""
    from experiments.sweep_dask import run_chunk

    if os.path.exists(flag):
        os.remove(flag)
        os._exit(1)
    return run_chunk(*args)


def test_a_lost_workers_chunk_is_retried(tmp_path):
    import cloudpickle
    import distributed
    import test_sweep_scale

    cloudpickle.register_pickle_by_value(test_sweep_scale)  # workers cannot import the tests folder
    problem = S.load_problem(None, 200, 0)
    grid = S.build_grid([2], [6], [3.0], [1e-4], range(4))
    batches = S._batches(grid, 2)
    flag = tmp_path / "kill-once"
    flag.write_text("")
    from experiments.sweep_dask import client_for

    with client_for("local:2", 1) as client:
        payload = client.scatter({"X": problem.X, "Y": problem.Y, "name": problem.name}, broadcast=True)
        futures = [client.submit(_kill_worker_once, str(flag), payload, runs, 40, "auto", "float64", "cpu", 1,
                                 pure=False) for runs in batches]
        results = [f.result(timeout=120) for f in distributed.as_completed(futures)]
    assert not flag.exists()  # a worker did die
    rows = sorted((row for rs, _ in results for row in rs), key=lambda r: r["run_id"])
    assert len(rows) == 4 and all(r["final_loss"] for r in rows)


def test_dask_needs_the_extra_message(monkeypatch, tmp_path, capsys):
    import builtins

    real = builtins.__import__

    def no_distributed(name, *a, **k):
        if name == "distributed":
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_distributed)
    assert sweep(tmp_path, "--dask", "local:2") == 2
    assert "saxe-dln[distributed]" in capsys.readouterr().err
    assert not Path(tmp_path / "sweep.csv").exists()


def test_dask_scheduler_address(tmp_path):
    """``--dask tcp://HOST:PORT``: the chunks go to a scheduler that is already running (here a 1-worker local one)."""
    import distributed

    single = tmp_path / "single"
    grid = [a if a != "2" or GRID[i - 1] != "--seeds" else "1" for i, a in enumerate(GRID)]
    assert sweep(single, grid=grid) == 0
    _, want = read(single / "sweep.csv")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster:
        assert cluster.scheduler_address.startswith("tcp://")
        assert sweep(tmp_path / "remote", "--dask", cluster.scheduler_address, grid=grid) == 0
    _, got = read(tmp_path / "remote" / "sweep.csv")
    assert [r["run_id"] for r in got] == [r["run_id"] for r in want]
    assert all(same_numbers(g, w, rtol=0.0) for g, w in zip(got, want))


def test_unreachable_scheduler_is_a_usage_error(tmp_path, capsys, monkeypatch):
    import experiments.sweep_dask as D

    monkeypatch.setattr(D, "SCHEDULER_TIMEOUT", "2s")
    out = tmp_path / "out"
    assert sweep(out, "--dask", "tcp://127.0.0.1:9") == 2
    assert "cannot reach the scheduler" in capsys.readouterr().err
    assert not out.exists()  # it left a folder holding only an incomplete marker
    # what --out alone refuses is said first (before reaching, or starting, a cluster)
    other = tmp_path / "other"
    other.mkdir()
    (other / "sweep.csv").write_text("a,b\n1,2\n")
    assert sweep(other, "--resume", "--dask", "tcp://127.0.0.1:9") == 2
    err = capsys.readouterr().err
    assert "not a complete sweep CSV" in err and "cannot reach" not in err


def test_a_folder_with_other_files_is_refused(tmp_path, capsys):
    """A sweep writes only beside a sweep's own files (its shards share one folder), never beside a user's."""
    (tmp_path / "phase_diagram.png").write_bytes(b"a user's own figure")
    (tmp_path / "notes.txt").write_text("mine")
    assert sweep(tmp_path) == 2
    assert "holds 1 entry that is not a sweep's (e.g. 'notes.txt')" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "phase_diagram.png"]
    assert (tmp_path / "phase_diagram.png").read_bytes() == b"a user's own figure"
    (tmp_path / "notes.txt").unlink()
    (tmp_path / "phase_diagram.png").unlink()
    (tmp_path / ".sweep.csv.abc123.tmp").write_text("a killed run's temp file")  # a sweep's: accepted
    (tmp_path / ".DS_Store").write_text("hidden files are never written over: accepted")
    assert sweep(tmp_path, "--shard", "0/2") == 0


def test_sweeps_and_training_never_import_scipy(tmp_path):
    """The memory budget of a sweep (README: peak RSS ≤ 300 MB for 1024 runs) relies on scipy staying out of the
    process: theory imports it only where a theory needs it (solve_ivp, null_space, the numerical curvature of a
    bottleneck, spence). Without a bottleneck neither saxe.train nor a sweep needs it."""
    import subprocess
    import sys

    code = ("import sys, numpy as np, torch, saxe\n"
            "from experiments import cli\n"
            "X, Y = saxe.generate_hsd(n_features=200, rng=0)\n"
            "net = saxe.LNNet(8, 12, 200).double(); saxe.initializer_(net, 1e-3)\n"
            "saxe.train(net, X, Y, 20, 3.0)\n"
            f"assert cli.main(['sweep', '--lr', '3', '--gamma', '1e-4', '0', '--hidden', '12', '--seeds', '2', "
            f"'--epochs', '20', '--features', '200', '--quiet', '--out', {str(tmp_path / 'o')!r}]) == 0\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
