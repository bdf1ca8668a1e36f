import json
import subprocess
import sys

import pandas as pd
import pytest

from benchmark.commands.run import build_parser
from run_benchmark import main
from strategies import STRATEGIES
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    assert main(["--sequence", "smoke", "--out", str(out), "--seed", "0"]) == 0
    return out / "smoke" / "ft" / "seed0"


def test_smoke_run_writes_every_file(smoke_run):
    for name in (
        "config.json",
        "records.csv",
        "lp_matrix.csv",
        "zs_matrix.csv",
        "head_matrix.csv",
        "metrics.json",
    ):
        assert (smoke_run / name).is_file(), name
    config = json.loads((smoke_run / "config.json").read_text())
    assert config["model"] == "cfbench-tiny-vit" and config["strategy"] == "ft"
    records = pd.read_csv(smoke_run / "records.csv")
    assert {
        "sequence",
        "strategy",
        "seed",
        "stage",
        "stage_task",
        "dataset",
        "role",
        "kind",
        "accuracy",
    } <= set(records.columns)
    # 4 stages x (3 tasks x {lp, lp_val, zs, head, val} + 1 control x {lp, lp_val, zs})
    assert len(records) == 4 * (3 * 5 + 3)
    assert set(records[records.dataset == "synth_control"].kind) == {"lp", "lp_val", "zs"}
    assert set(records[records.dataset == "synth_control"].role) == {"control"}
    assert records.accuracy.between(0, 100).all()


def test_smoke_matrix_has_t_plus_one_rows_and_training_helps(smoke_run):
    lp = pd.read_csv(smoke_run / "lp_matrix.csv", index_col="stage")
    head = pd.read_csv(smoke_run / "head_matrix.csv", index_col="stage")
    assert list(lp.index) == [0, 1, 2, 3]
    assert list(lp.columns) == ["synth_a", "synth_b", "synth_c", "synth_control"]
    assert list(head.columns) == ["synth_a", "synth_b", "synth_c"]
    for t, task in enumerate(["synth_a", "synth_b", "synth_c"], start=1):
        assert lp.loc[t, task] > lp.loc[0, task], task  # the probe gains on the trained task
        assert head.loc[t, task] > head.loc[0, task] + 10, task


def test_smoke_metrics_match_the_matrix(smoke_run):
    lp = pd.read_csv(smoke_run / "lp_matrix.csv", index_col="stage").to_numpy()
    m = json.loads((smoke_run / "metrics.json").read_text())["lp"]
    assert m["final_avg_acc"] == pytest.approx(lp[3, :3].mean(), abs=1e-3)
    assert m["delta_lp_controls"] == pytest.approx(lp[3, 3] - lp[0, 3], abs=1e-3)
    assert m["bwt"] == pytest.approx(((lp[3, 0] - lp[1, 0]) + (lp[3, 1] - lp[2, 1])) / 2, abs=1e-3)


def _cli(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, str(ROOT / "run_benchmark.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_missing_dataset_is_one_line_exit_2_no_traceback(tmp_path):
    seq = tmp_path / "real.yaml"
    seq.write_text("tasks: [resisc45]\ncontrols: [synth_a]\n")
    proc = _cli(
        "--sequence",
        str(seq),
        "--data-root",
        str(tmp_path / "data"),
        "--no-download",
        "--out",
        str(tmp_path / "out"),
        "--model",
        "cfbench-tiny-vit",
        "--pretrained",
        "none",
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("error: dataset 'resisc45'")
    assert "NWPU-RESISC45" in lines[0] and str(tmp_path / "data" / "resisc45") in lines[0]
    assert not (tmp_path / "out").exists()  # failed before anything was written


def test_help_explains_every_option():
    text = build_parser(list(STRATEGIES)).format_help()
    for option in (
        "--sequence",
        "--strategy",
        "--model",
        "--pretrained",
        "--seed",
        "--data-root",
        "--out",
        "--device",
        "--epochs",
        "--batch-size",
        "--lr",
        "--no-download",
        "--fresh",
        "--keep-checkpoints",
        "--micro-batch",
        "--eval-batch-size",
        "--source",
    ):
        assert option in text
    from benchmark.commands.data import build_parser as build_data_parser

    data_help = build_data_parser().format_help()
    for word in (
        "list",
        "prepare",
        "verify",
        "--sequence",
        "--data-root",
        "--source",
        "--force",
        "--workers",
        "resumable",
        "exit 2",
    ):
        assert word in data_help, word


def _umask_of_a_child() -> int:
    """The umask this process runs under, as a child shell reports it (it inherits it)."""
    out = subprocess.run(["sh", "-c", "umask"], capture_output=True, text=True, check=True)
    return int(out.stdout.strip(), 8)


def test_results_files_get_umask_permissions_not_mkstemp_0600(tmp_path):
    import stat

    from benchmark import results

    results.write_atomic(tmp_path / "x.csv", "a,b\n")
    assert (tmp_path / "x.csv").read_text() == "a,b\n"
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind
    mode = stat.S_IMODE((tmp_path / "x.csv").stat().st_mode)
    assert mode == 0o666 & ~_umask_of_a_child()
    (tmp_path / "plain.csv").write_text("a,b\n")  # what open() makes of 0o666 under the umask
    assert mode == stat.S_IMODE((tmp_path / "plain.csv").stat().st_mode)


@pytest.mark.parametrize("umask, mode", [("027", 0o640), ("002", 0o664), ("077", 0o600)])
def test_written_files_follow_the_umask_the_program_was_started_with(tmp_path, umask, mode):
    import stat

    target = tmp_path / "x.json"
    script = (
        "import sys; from pathlib import Path; from benchmark.io import write_atomic; "
        "write_atomic(Path(sys.argv[1]), b'{}')"
    )
    proc = subprocess.run(
        [
            "sh",
            "-c",
            f'umask {umask} && exec "$0" -c "$1" "$2"',
            sys.executable,
            script,
            str(target),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert target.read_bytes() == b"{}"
    assert stat.S_IMODE(target.stat().st_mode) == mode  # 0o666 minus the umask's bits


def test_written_files_follow_a_umask_set_after_import(tmp_path):
    """A program that imports cfbench and then sets its umask gets files under that umask."""
    import stat

    target = tmp_path / "x.json"
    script = (
        "import os, sys; from pathlib import Path; from benchmark.io import write_atomic; "
        "os.umask(0o027); write_atomic(Path(sys.argv[1]), b'{}')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(target)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_strategy_all_skips_lp_ft_when_every_run_has_lp_heads(capsys):
    """With --head-init lp (or no text tower) every strategy starts from LP heads, so lp_ft would
    repeat ft exactly: --strategy all leaves it out and says so; naming it still runs it."""
    from benchmark.commands.launch import build_configs
    from strategies import STRATEGIES

    parser = build_parser(list(STRATEGIES))
    _, cfgs = build_configs(parser.parse_args(["--strategy", "all", "--head-init", "lp"]))
    names = [c.strategy for c in cfgs]
    assert "lp_ft" not in names and "ft" in names
    assert "skipping lp_ft: with LP-initialised heads" in capsys.readouterr().out
    _, cfgs = build_configs(parser.parse_args(["--strategy", "all"]))  # smoke: zero-shot heads
    assert "lp_ft" in [c.strategy for c in cfgs]
    _, (cfg,) = build_configs(parser.parse_args(["--strategy", "lp_ft", "--head-init", "lp"]))
    assert cfg.strategy == "lp_ft"
