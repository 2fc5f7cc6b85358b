"""``saxe sweep``: the batched reduced engine equals plain autograd training, the batched theory maps equal the
theory functions, and the CLI end to end (CSV, figure, resume, shards, divergence, bad input)."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import saxe
from saxe.batched import train_reduced
import theory
from experiments import cli
from experiments import sweep as S

CPU = torch.device("cpu")
# Small tutorial-like problem for the CLI tests: 8 items × 200 features; stable lr ≈ 37.5 (depth 2), 9.0 (depth 3).
FEATURES, HIDDEN, EPOCHS = "200", "6", "80"
GRID = ["--depth", "2", "3", "--hidden", HIDDEN, "--lr", "3", "8", "--gamma", "1e-4", "1", "--seeds", "2",
        "--epochs", EPOCHS, "--features", FEATURES, "--batch", "4", "--quiet"]
N_GRID = 2 * 2 * 2 * 2


def sweep(out: Path, *extra: str, grid=GRID) -> int:
    return cli.main(["sweep", *grid, "--out", str(out), *extra])


def read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames), list(reader)


def same_numbers(a: dict[str, str], b: dict[str, str], rtol: float = 1e-12) -> bool:
    """Rows equal in every column but the timing (floats to rtol)."""
    for key in a:
        if key in ("batch_seconds", "batch_runs"):
            continue
        x, y = a[key], b[key]
        if x == y:
            continue
        try:
            fx, fy = float(x), float(y)
        except ValueError:
            return False
        if not math.isclose(fx, fy, rel_tol=rtol, abs_tol=0.0):
            return False
    return True


@pytest.fixture(scope="module")
def full_sweep(tmp_path_factory) -> tuple[Path, list[str], list[dict[str, str]]]:
    out = tmp_path_factory.mktemp("full")
    assert sweep(out) == 0
    header, rows = read(out / "sweep.csv")
    return out, header, rows


@pytest.fixture(scope="module")
def problem1000() -> S.Problem:
    return S.load_problem(None, 1000, 0)


# ------------------------------------------------------------------------------------------- engine
def test_init_weights_are_initializer_bit_for_bit():
    for sizes in ([8, 1000], [8, 20, 1000], [8, 20, 20, 1000], [3, 2, 5]):
        for dtype in (torch.float64, torch.float32):
            for gamma in (0.0, 1e-12, 0.37, 1.0):
                net = saxe.make_net(sizes[0], sizes[1:-1], sizes[-1]).to(dtype)
                saxe.initializer_(net, gamma, generator=torch.Generator().manual_seed(7))
                ws = S.init_weights(sizes, gamma, 7, dtype)
                assert all(torch.equal(a, b) for a, b in zip(saxe.weights(net), ws)), (sizes, dtype, gamma)


@pytest.mark.parametrize("depth", [2, 3])
def test_reduced_engine_equals_autograd_float64(problem1000, depth):
    """One batch of runs with different lr and γ (random init) vs per-run saxe.train(engine="autograd")."""
    lr_max = theory.max_stable_lr(problem1000.s[0], 8, 1000, depth=depth)
    configs = [(0.3, 1e-3, 0), (0.6, 1e-1, 1), (0.9, 1.0, 2), (0.5, 1e-6, 3)]
    runs = [S.Run(i, depth, 20, f * lr_max, g, seed) for i, (f, g, seed) in enumerate(configs)]
    batch = train_reduced(S.InitCache(problem1000, torch.float64), runs, 250, CPU)
    for i, run in enumerate(runs):
        net = saxe.make_net(8, run.hidden_sizes, 1000).double()
        saxe.initializer_(net, run.gamma, generator=torch.Generator().manual_seed(run.seed))
        ref = saxe.train(net, problem1000.X, problem1000.Y, 250, run.lr, engine="autograd", record_rsm=False)
        assert batch.diverged_at[i] == -1
        for got, want in ((batch.losses[i], ref.losses), (batch.modes[i], ref.modes)):
            assert got.shape == want.shape
            assert np.max(np.abs(got - want)) <= 1e-9 * np.max(np.abs(want))
        # and per mode, relative to its singular value (the normalisation of the modes error)
        assert np.max(np.abs(batch.modes[i] - ref.modes) / problem1000.s) <= 1e-9


def test_diverging_run_recorded_and_batch_unaffected(problem1000):
    lr_max = theory.max_stable_lr(problem1000.s[0], 8, 1000, depth=2)
    runs = [S.Run(0, 2, 20, 0.5 * lr_max, 1e-3, 0), S.Run(1, 2, 20, 20 * lr_max, 1e-3, 1),
            S.Run(2, 2, 20, 0.8 * lr_max, 1.0, 2), S.Run(3, 2, 20, 50 * lr_max, 1.0, 3)]
    cache = S.InitCache(problem1000, torch.float64)
    both = S.train_batch(problem1000, cache, runs, 150, engine="reduced", dtype=torch.float64, device=CPU)
    assert both.diverged_at[1] > 0 and both.diverged_at[3] >= 0
    assert both.diverged_at[0] == both.diverged_at[2] == -1
    assert np.isnan(both.modes[1]).all() and np.isnan(both.losses[1, both.diverged_at[1]:]).all()
    alone = S.train_batch(problem1000, cache, [runs[0], runs[2]], 150, engine="reduced", dtype=torch.float64,
                          device=CPU)
    np.testing.assert_array_equal(both.losses[[0, 2]], alone.losses)
    np.testing.assert_array_equal(both.modes[[0, 2]], alone.modes)
    # the plain engine detects the divergence at the same epoch
    ref = S.train_batch(problem1000, cache, [runs[1]], 150, engine="autograd", dtype=torch.float64, device=CPU)
    assert ref.engines == ["autograd"] and ref.diverged_at[0] == both.diverged_at[1]


# ------------------------------------------------------------------------------------------- theory
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_batched_theory_equals_theory_functions(problem1000, depth):
    p = problem1000
    hidden = 0 if depth == 1 else 12
    lr_max = theory.max_stable_lr(p.s[0], 8, 1000, depth=depth)
    runs = [S.Run(i, depth, hidden, f * lr_max, g, i) for i, (f, g) in enumerate([(0.3, 1e-3), (0.7, 1.0), (0.5, 0.0)])]
    cache = S.InitCache(p, torch.float64)
    preds = S.theory_batch(p, cache, runs, 120, {})
    t = np.arange(121)
    for i, run in enumerate(runs):
        w0 = [w.numpy() for w in S.init_weights(p.sizes(run), run.gamma, run.seed)]
        want = theory.predictor(p.X, p.Y, run.lr, weights=w0).modes(t)  # the exact theory state
        assert np.max(np.abs(preds["exact"][i] - want)) <= 1e-12 * p.s[0]
        a0 = p.a0(run)
        for method in ("continuous", "discrete"):
            ref = theory.predictor(p.X, p.Y, run.lr, depth=depth, a0=a0, method=method).modes(t)
            assert np.max(np.abs(preds[method][i] - ref)) <= 1e-12 * p.s[0]


def test_batched_theory_nan_where_theory_diverges(problem1000):
    p = problem1000
    lr = 10 * theory.escape_lr(p.s[0], 8, 1000)
    run = S.Run(0, 2, 12, lr, 1e-3, 0)
    preds = S.theory_batch(p, S.InitCache(p, torch.float64), [run], 100, {})
    w0 = [w.numpy() for w in S.init_weights(p.sizes(run), run.gamma, run.seed)]
    with pytest.raises(ValueError, match="diverge"), np.errstate(over="ignore", invalid="ignore"):
        theory.predictor(p.X, p.Y, lr, weights=w0, unstable=True).modes(np.arange(101))
    assert np.isnan(preds["exact"]).all() and np.isnan(preds["discrete"]).all()


# ------------------------------------------------------------------------------------------- grid
def test_grid_order_shards_and_ids():
    grid = S.build_grid([3, 2, 1], [6, 4, 6], [8.0, 3.0], [1.0, 1e-4], range(2))
    assert len(grid) == (1 + 2 * 2) * 2 * 2 * 2  # depth 1 has no hidden layer (hidden 0)
    assert [r.index for r in grid] == list(range(len(grid)))
    keys = [(r.depth, r.hidden, r.lr, r.gamma, r.seed) for r in grid]
    assert keys == sorted(keys) and len(set(r.run_id for r in grid)) == len(grid)
    assert grid[0].run_id == "d1-h0-lr3.0-g0.0001-s0"
    parts = [S.shard_runs(grid, (i, 3)) for i in range(3)]
    assert sorted(r.index for part in parts for r in part) == list(range(len(grid)))
    assert S.parse_shard("2/5") == (2, 5)
    for bad in ("5/5", "-1/3", "1", "a/b", "1/0", "1/2/3"):
        with pytest.raises(cli.UsageError):
            S.parse_shard(bad)


# ------------------------------------------------------------------------------------------- CLI
def test_small_sweep_end_to_end(full_sweep):
    out, header, rows = full_sweep
    assert header == S.columns(8)
    assert len(rows) == N_GRID == len({r["run_id"] for r in rows})
    assert {r["engine"] for r in rows} == {"reduced"}
    assert (out / "phase_diagram.png").stat().st_size > 1000 and (out / "sweep.json").exists()
    for r in rows:
        assert r["diverged"] in ("True", "False")
        if r["diverged"] == "False":
            assert float(r["final_loss"]) >= 0 and all(r[f"err_{th}"] != "" for th in S.THEORIES)
            assert r["half_measured_1"] != ""
    # the exact theory is exact to rounding at a small init in the stable regime
    small = [r for r in rows if r["gamma"] == "0.0001" and r["depth"] == "2"]
    assert max(float(r["err_exact"]) for r in small) < 1e-5


def test_autograd_engine_sweep_matches(full_sweep, tmp_path):
    _, _, rows = full_sweep
    grid = [a for a in GRID]
    grid[grid.index("3", grid.index("--depth"))] = "2"  # depth 2 only: 8 runs through saxe.train
    assert sweep(tmp_path, "--engine", "autograd", grid=grid) == 0
    _, plain = read(tmp_path / "sweep.csv")
    ref = {r["run_id"]: r for r in rows}
    assert len(plain) == 8 and {r["engine"] for r in plain} == {"autograd"}
    for r in plain:
        q = ref[r["run_id"]]
        assert r["diverged"] == q["diverged"] and r["diverged_epoch"] == q["diverged_epoch"]
        if r["diverged"] == "False":
            assert math.isclose(float(r["final_loss"]), float(q["final_loss"]), rel_tol=1e-9)
            for th in S.THEORIES:  # errors are normalised by s: absolute agreement to the engines' 1e-9
                assert abs(float(r[f"err_{th}"]) - float(q[f"err_{th}"])) <= 1e-9
            assert all(r[f"half_measured_{a}"] == q[f"half_measured_{a}"] for a in range(1, 9))


def test_resume_after_interruption_keeps_completed_rows(full_sweep, tmp_path, monkeypatch):
    _, _, full_rows = full_sweep
    real = S.train_batch
    calls = []

    def interrupted(problem, cache, runs, *a, **k):
        if calls:
            raise KeyboardInterrupt
        calls.append([r.run_id for r in runs])
        return real(problem, cache, runs, *a, **k)

    monkeypatch.setattr(S, "train_batch", interrupted)
    assert sweep(tmp_path) == 130
    header, partial = read(tmp_path / "sweep.csv")
    assert [r["run_id"] for r in partial] == calls[0] and len(partial) == 4
    assert sweep(tmp_path) == 2  # an existing sweep is never clobbered without --resume
    trained = []

    def recording(problem, cache, runs, *a, **k):
        trained.extend(r.run_id for r in runs)
        return real(problem, cache, runs, *a, **k)

    monkeypatch.setattr(S, "train_batch", recording)
    assert sweep(tmp_path, "--resume") == 0
    _, rows = read(tmp_path / "sweep.csv")
    assert rows[:4] == partial  # kept verbatim
    assert sorted(trained) == sorted(r["run_id"] for r in full_rows if r["run_id"] not in calls[0])
    assert len(rows) == N_GRID and len({r["run_id"] for r in rows}) == N_GRID
    ref = {r["run_id"]: r for r in full_rows}
    assert all(same_numbers(r, ref[r["run_id"]]) for r in rows)
    # resuming a complete sweep trains nothing; other data is refused
    trained.clear()
    assert sweep(tmp_path, "--resume") == 0 and trained == []
    assert sweep(tmp_path, "--resume", "--data-seed", "1") == 2


def test_shards_cover_grid_exactly_once(full_sweep, tmp_path):
    _, header, full_rows = full_sweep
    for i in range(3):
        assert sweep(tmp_path, "--shard", f"{i}/3") == 0
    files = sorted(tmp_path.glob("sweep.shard-*-of-3.csv"))
    assert [f.name for f in files] == [f"sweep.shard-{i}-of-3.csv" for i in range(3)]
    rows = []
    for f in files:
        h, rs = read(f)
        assert h == header
        rows += rs
    assert sorted(r["run_id"] for r in rows) == sorted(r["run_id"] for r in full_rows)
    ref = {r["run_id"]: r for r in full_rows}
    assert all(same_numbers(r, ref[r["run_id"]]) for r in rows)
    assert cli.main(["sweep", "--out", str(tmp_path), "--merge", "--quiet"]) == 0
    _, merged = read(tmp_path / "sweep.csv")
    assert merged == rows and (tmp_path / "phase_diagram.png").exists()


def test_csv_data_sweep(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "items.csv"
    feats = rng.choice([-1.0, 1.0], size=(4, 40))
    data.write_text("item," + ",".join(f"f{j}" for j in range(40)) + "\n" +
                    "".join(f"i{i}," + ",".join(f"{v:g}" for v in feats[i]) + "\n" for i in range(4)))
    grid = ["--lr", "2", "--gamma", "0", "0.5", "--hidden", "5", "--seeds", "2", "--epochs", "40", "--quiet"]
    assert cli.main(["sweep", *grid, "--data", str(data), "--out", str(tmp_path / "o")]) == 0
    header, rows = read(tmp_path / "o" / "sweep.csv")
    assert header == S.columns(4) and len(rows) == 4
    assert {r["engine"] for r in rows} == {"autograd", "reduced"}  # γ = 0 has no reduced basis
    assert all(r["data"].startswith("items-") for r in rows)


def test_diverging_config_in_cli_recorded(tmp_path):
    grid = ["--lr", "5", "2000", "--gamma", "1e-3", "--hidden", HIDDEN, "--seeds", "2", "--epochs", "60",
            "--features", FEATURES, "--quiet"]
    assert sweep(tmp_path, grid=grid) == 0
    _, rows = read(tmp_path / "sweep.csv")
    div = [r for r in rows if r["lr"] == "2000.0"]
    ok = [r for r in rows if r["lr"] == "5.0"]
    assert all(r["diverged"] == "True" and int(r["diverged_epoch"]) > 0 for r in div)
    assert all(r["final_loss"] == "" and r["err_exact"] == "" and r["half_measured_1"] == "" for r in div)
    assert all(r["diverged"] == "False" and r["diverged_epoch"] == "" and r["err_exact"] for r in ok)


@pytest.mark.parametrize("args", [
    ["--lr", "0"], ["--lr", "-1"], ["--lr", "nan"], ["--gamma", "-1e-3"], ["--gamma", "inf"], ["--depth", "0"],
    ["--hidden", "0"], ["--seeds", "0"], ["--epochs", "0"], ["--batch", "0"], ["--shard", "3/3"],
    ["--shard", "x"], ["--shard", "1/0"], ["--data", "/nonexistent/items.csv"],
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, args):
    out = tmp_path / "out"
    try:
        rc = cli.main(["sweep", "--out", str(out), "--quiet", *args])
    except SystemExit as exc:  # argparse's own errors (e.g. "-1e-3" read as an option) also exit 2
        rc = exc.code
    assert rc == 2
    assert not out.exists()


def test_empty_grid_axis_is_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli.main(["sweep", "--lr", "--out", str(tmp_path / "out")])
    assert exc.value.code == 2 and not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where CUDA is missing")
def test_cuda_unavailable_is_usage_error(tmp_path, capsys):
    assert cli.main(["sweep", "--device", "cuda", "--out", str(tmp_path / "out")]) == 2
    assert "CUDA" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_sweep_matches_cpu(full_sweep, tmp_path):
    _, _, rows = full_sweep
    assert sweep(tmp_path, "--device", "cuda") == 0
    _, gpu = read(tmp_path / "sweep.csv")
    ref = {r["run_id"]: r for r in rows}
    assert len(gpu) == N_GRID and {r["device"] for r in gpu} == {"cuda"}
    for r in gpu:
        q = ref[r["run_id"]]
        assert r["diverged"] == q["diverged"]
        if r["diverged"] == "False":
            assert math.isclose(float(r["final_loss"]), float(q["final_loss"]), rel_tol=1e-9)
            for th in S.THEORIES:
                assert abs(float(r[f"err_{th}"]) - float(q[f"err_{th}"])) <= 1e-9
