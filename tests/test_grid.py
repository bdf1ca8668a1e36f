"""run_benchmark.py grid: the grid as data, every cell checked up front, local and Ray executors,
a run's own failure kept to its cell, and a killed Ray worker retried from its checkpoint."""

import math
from pathlib import Path

import pandas as pd
import pytest

from benchmark.commands.cells import run_cell
from benchmark.errors import CFBenchError
from benchmark.grid import executors, spec
from run_benchmark import main

SMOKE = ["--epochs", "1"]


# -- the grid as data ------------------------------------------------------------------------------


def test_cells_multiply_the_axes_and_name_the_varying_arguments():
    values = spec.parse_values(["ldifs.lam=1,10", "ldifs.anchor=pretrained"])
    grid = spec.build_grid(None, ["smoke"], ["ft", "ldifs"], [0, 1], values, ["--epochs", "1"])
    cells = grid.cells()
    # ft x 2 seeds + ldifs x 2 lam values (x 1 anchor) x 2 seeds
    assert [c.label for c in cells] == [
        "smoke/ft/seed0",
        "smoke/ft/seed1",
        "smoke/ldifs@lam=1/seed0",
        "smoke/ldifs@lam=1/seed1",
        "smoke/ldifs@lam=10/seed0",
        "smoke/ldifs@lam=10/seed1",
    ]
    ldifs = cells[4]
    assert ldifs.args == {"lam": 10, "anchor": "pretrained"}  # YAML-typed: 10 is an int
    assert ldifs.argv() == [
        "--sequence",
        "smoke",
        "--strategy",
        "ldifs",
        "--seed",
        "0",
        "--strategy-arg",
        "lam=10",
        "--strategy-arg",
        "anchor=pretrained",
        "--run-name",
        "ldifs@lam=10",
        "--epochs",
        "1",
    ]
    assert "--run-name" not in cells[0].argv()  # nothing varies for ft: named by its strategy


def test_grid_file_and_flags(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(
        "sequences: [smoke]\nstrategies: [ft, l2sp]\nseeds: [0, 2]\n"
        "grid:\n  l2sp.alpha: [0.1, 1.0]\noptions:\n  epochs: 1\n  out: somewhere\n"
        "  fresh: true\n"
    )
    file = spec.load_grid_file(path)
    grid = spec.build_grid(file, None, None, None, {}, ["--out", "elsewhere"])
    assert grid.seeds == (0, 2) and grid.values == {"l2sp": {"alpha": (0.1, 1.0)}}
    # the file's options first, the command line's after them (argparse: the last one wins)
    assert grid.options == ("--epochs", "1", "--out", "somewhere", "--fresh", "--out", "elsewhere")
    assert len(grid.cells()) == 2 + 4
    flags = spec.build_grid(file, None, ["ft"], [5], {}, [])  # flags replace the file's axes
    assert [c.label for c in flags.cells()] == ["smoke/ft/seed5"]


@pytest.mark.parametrize(
    "items, message",
    [(["lam=1,10"], "is not STRATEGY.KEY=V1,V2"), (["ldifs.lam="], "is not STRATEGY.KEY")],
)
def test_bad_grid_values_are_one_line(items, message):
    with pytest.raises(CFBenchError, match=message):
        spec.parse_values(items)


def test_values_for_a_strategy_the_grid_does_not_run_are_refused():
    with pytest.raises(CFBenchError, match="--grid names ldifs, which the grid does not run"):
        spec.build_grid(None, ["smoke"], ["ft"], [0], spec.parse_values(["ldifs.lam=1"]), [])


def test_summary_lists_every_cell():
    cells = spec.build_grid(None, ["smoke"], ["ft", "l2sp"], [0], {}, []).cells()
    results = [
        {"status": "done", "seconds": 4.0, "error": None},
        {"status": "failed", "seconds": 2.5, "error": "loss became nan on task 'synth_b'"},
    ]
    text = executors.summary(cells, results)
    assert "smoke/ft/seed0    done         4.0" in text
    assert "smoke/l2sp/seed0  failed       2.5  loss became nan on task 'synth_b'" in text
    assert text.endswith("1 of 2 cells succeeded")


# -- local executor, end to end -------------------------------------------------------------------


def _records(out: Path, name: str, seed: int) -> pd.DataFrame:
    return pd.read_csv(out / "smoke" / name / f"seed{seed}" / "records.csv")


def test_a_bad_cell_fails_the_grid_before_any_run(tmp_path, capsys):
    argv = [
        "grid",
        "--sequence",
        "smoke",
        "--strategy",
        "ft",
        "ldifs",
        "--grid",
        "ldifs.lam=1,-1",
        "--out",
        str(tmp_path),
        *SMOKE,
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: grid cell smoke/ldifs@lam=-1/seed0: ")
    assert "lam must be a finite number >= 0" in err and err.endswith("no cell was run")
    assert len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing ran, nothing was written


def test_a_nan_cell_fails_alone_and_the_rest_finish(tmp_path, capsys):
    argv = [
        "grid",
        "--sequence",
        "smoke",
        "--strategy",
        "ft",
        "l2sp",
        "--grid",
        "l2sp.alpha=1e300",
        "--out",
        str(tmp_path),
        *SMOKE,
    ]
    assert main(argv) == 1  # not every cell succeeded
    out = capsys.readouterr().out
    assert "smoke/ft/seed0    done" in out and "1 of 2 cells succeeded" in out
    failed = [line for line in out.splitlines() if line.startswith("smoke/l2sp/seed0  failed")]
    assert len(failed) == 1 and "loss became" in failed[0]
    assert (tmp_path / "smoke" / "ft" / "seed0" / "metrics.json").exists()
    # the grid again: the finished cell is skipped, not trained again
    assert main(argv) == 1
    assert "smoke/ft/seed0    skipped" in capsys.readouterr().out


def test_run_cell_reports_its_own_failure_and_logs_to_its_file(tmp_path):
    log = tmp_path / "cell" / "grid.log"
    result = run_cell(["--sequence", "nope", "--out", str(tmp_path)], str(log))
    assert result["status"] == "failed" and "unknown sequence 'nope'" in result["error"]
    assert "unknown sequence 'nope'" in log.read_text()


# -- Ray ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False)
    yield ray
    ray.shutdown()


GRID = ["--sequence", "smoke", "--strategy", "ft", "l2sp", "--seeds", "0", "1", *SMOKE]


def test_ray_grid_gives_the_records_of_the_local_one(ray_local, tmp_path, monkeypatch):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a Ray worker with one CPU runs: the same float arithmetic
    try:
        assert main(["grid", *GRID, "--out", str(tmp_path / "local")]) == 0
    finally:
        torch.set_num_threads(threads)
    assert main(["grid", *GRID, "--out", str(tmp_path / "ray"), "--executor", "ray"]) == 0
    for name in ("ft", "l2sp"):
        for seed in (0, 1):
            pd.testing.assert_frame_equal(
                _records(tmp_path / "ray", name, seed), _records(tmp_path / "local", name, seed)
            )
            log = tmp_path / "ray" / "smoke" / name / f"seed{seed}" / "grid.log"
            assert "LP accuracy" in log.read_text()  # the run's output went to its folder


def test_a_killed_ray_worker_is_retried_and_resumes(ray_local, tmp_path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the reference in the arithmetic of a one-CPU Ray worker
    try:
        reference = run_cell(["--sequence", "smoke", "--out", str(tmp_path / "ref"), *SMOKE])
    finally:
        torch.set_num_threads(threads)
    assert reference["status"] == "done"
    # Task 1 is 14 steps (432 training images, batch 32): step 20 is inside task 2.
    env = {"CFBENCH_KILL_AT": "train-step@20", "CFBENCH_KILL_ONCE": str(tmp_path / "killed")}
    cell = spec.Cell("smoke", "ft", 0, options=("--out", str(tmp_path), *SMOKE), env=env)
    folder = tmp_path / "smoke" / "ft" / "seed0"
    options = executors.RayOptions(max_retries=1, cpus_per_run=1.0)
    (result,) = executors.run_ray([cell], run_cell, options, lambda c: folder / "grid.log")
    assert (tmp_path / "killed").exists()  # it was killed once
    assert result["status"] == "done", result
    log = (folder / "grid.log").read_text()
    assert "resuming" in log and "after stage 1" in log  # task 1 was not trained again
    pd.testing.assert_frame_equal(
        pd.read_csv(folder / "records.csv"), _records(tmp_path / "ref", "ft", 0)
    )
    assert not math.isnan(result["seconds"])


def test_all_stands_for_every_registered_strategy():
    grid = spec.build_grid(None, ["smoke"], ["all", "ft"], [0], {}, [], ["ft", "l2sp", "ldifs"])
    assert grid.strategies == ("ft", "l2sp", "ldifs")  # in registry order, once each
