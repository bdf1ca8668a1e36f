"""Crash and resume: real smoke runs killed with SIGKILL (through the CFBENCH_KILL_AT hook), Ctrl-C
and SIGTERM at several points, then resumed, give results identical to an uninterrupted run's."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT

RESULTS = ("records.csv", "lp_matrix.csv", "zs_matrix.csv", "head_matrix.csv", "metrics.json")
RUN = ("smoke", "ft", "seed0")


def command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "run_benchmark.py"), "--out", str(out), *extra]


def env(**extra: str) -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


def cli(out: Path, *extra: str, **variables: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(out, *extra),
        cwd=ROOT,
        env=env(**variables),
        capture_output=True,
        text=True,
        timeout=600,
    )


def files(folder: Path) -> dict[str, bytes]:
    """The results files; metrics.json without its "cost" (wall seconds, and images encoded,
    which the pretrained-row cache may save), whose training counts are kept and compared."""
    out = {name: (folder / name).read_bytes() for name in RESULTS}
    metrics = json.loads(out["metrics.json"])
    cost = metrics.pop("cost")
    out["metrics.json"] = json.dumps(metrics).encode()
    out["stages costed"] = [s["stage"] for s in cost["per_stage"]]
    out["images trained"] = [s["images_trained"] for s in cost["per_stage"]]
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, bytes]:
    """The results files of an uninterrupted smoke run."""
    out = tmp_path_factory.mktemp("reference")
    proc = cli(out)
    assert proc.returncode == 0, proc.stderr
    return files(out.joinpath(*RUN))


def assert_prefix_of_reference(folder: Path, reference: dict[str, bytes], tmp_path: Path) -> None:
    """What a killed run left on disk is complete CSV and equals the reference's first stages."""
    if not (folder / "records.csv").exists():
        return
    partial = pd.read_csv(folder / "records.csv")
    ref_path = tmp_path / "ref_records.csv"
    ref_path.write_bytes(reference["records.csv"])
    full = pd.read_csv(ref_path)
    # whole stages of 18 records: 3 tasks x {lp, lp_val, zs, head, val} + 1 control x
    # {lp, lp_val, zs}
    assert len(partial) > 0 and len(partial) % 18 == 0
    pd.testing.assert_frame_equal(partial, full.iloc[: len(partial)])


# Smoke: 3 tasks x 42 steps; 4 datasets evaluated per stage; records.csv written once per stage.
KILL_POINTS = [
    "train-step@60",  # task 2, first epoch
    "eval@10",  # stage 2, second dataset
    "write:records.csv@3",  # stage 2's results, written to the temporary file, not yet renamed
    "write:checkpoint.json@4",  # the last stage's checkpoint index, likewise
    "write:records.csv@4",  # the last stage's results, after its checkpoint: nothing to train
]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_then_resume_gives_identical_results(point, reference, tmp_path):
    out = tmp_path / "out"
    killed = cli(out, CFBENCH_KILL_AT=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    folder = out.joinpath(*RUN)
    assert_prefix_of_reference(folder, reference, tmp_path)
    resumed = cli(out)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    last = point == "write:records.csv@4"  # the final checkpoint was saved: nothing to train
    expected = f"{folder} is already complete" if last else f"resuming {folder} after stage"
    assert expected in resumed.stdout
    assert files(folder) == reference
    assert not list(folder.rglob("*.tmp"))  # the killed run's temporary file was swept
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["stage03.pt"]


def test_ctrl_c_and_sigterm_stop_cleanly_and_resume(reference, tmp_path):
    out = tmp_path / "out"
    folder = out.joinpath(*RUN)
    for sig, code, word, after in (
        (signal.SIGINT, 130, "interrupted", "stage 1 ("),
        (signal.SIGTERM, 143, "terminated", "stage 2 ("),
    ):
        proc = subprocess.Popen(
            command(out),
            cwd=ROOT,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for line in proc.stdout:
            if line.startswith(after):
                proc.send_signal(sig)
                break
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == code, err[-2000:]
        last = err.strip().splitlines()[-1]
        saved = r"(stage 0 \(the pretrained model\) is|stages 0-\d are)"  # as far as it got
        pattern = (
            f"{word}; {saved} saved in {re.escape(str(folder))}; run the same command to resume"
        )
        assert re.fullmatch(pattern, last), last
        assert "Traceback" not in err
        assert_prefix_of_reference(folder, reference, tmp_path)
    resumed = cli(out)
    assert resumed.returncode == 0 and "resuming" in resumed.stdout
    assert files(folder) == reference


def test_a_finished_run_is_not_rerun_and_fresh_starts_over(reference, tmp_path):
    out = tmp_path / "out"
    first = cli(out, "--keep-checkpoints", "all")
    assert first.returncode == 0
    folder = out.joinpath(*RUN)
    stages = sorted(p.name for p in (folder / "checkpoints").iterdir())
    assert stages == ["stage00.pt", "stage01.pt", "stage02.pt", "stage03.pt"]
    (folder / "tensorboard").mkdir()  # anything in the run folder goes with --fresh
    again = cli(out)
    assert again.returncode == 0 and "is already complete (--fresh runs it again)" in again.stdout
    assert files(folder) == reference
    fresh = cli(out, "--fresh")
    assert fresh.returncode == 0 and "resuming" not in fresh.stdout
    assert files(folder) == reference
    assert not (folder / "tensorboard").exists()
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["stage03.pt"]


@pytest.fixture(scope="module")
def partial_run(tmp_path_factory) -> Path:
    """A smoke run killed during task 2: stages 0 and 1 finished."""
    out = tmp_path_factory.mktemp("partial")
    assert cli(out, CFBENCH_KILL_AT="train-step@60").returncode == -signal.SIGKILL
    return out


def copy_of(partial_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    out = tmp_path / "out"
    shutil.copytree(partial_run, out)
    return out, out.joinpath(*RUN)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_truncated_checkpoint_is_reported_and_nothing_is_touched(partial_run, tmp_path):
    out, folder = copy_of(partial_run, tmp_path)
    ckpt = folder / "checkpoints" / "stage01.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:-1000])
    before = snapshot(folder)
    proc = cli(out)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"error: checkpoint {ckpt} is corrupt or truncated" in proc.stderr
    assert "--fresh" in proc.stderr
    assert snapshot(folder) == before  # not retrained over, not deleted


def test_resume_with_other_settings_is_refused(partial_run, tmp_path):
    out, folder = copy_of(partial_run, tmp_path)
    before = snapshot(folder)
    proc = cli(out, "--lr", "0.002")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "holds a run started with other settings (train.lr: 0.001 -> 0.002)" in proc.stderr
    assert snapshot(folder) == before


def test_a_checkpoint_older_than_a_setting_resumes_at_its_old_value(tmp_path):
    """Settings added later (store.ADDED_SETTINGS, e.g. vrf) are absent from older checkpoints:
    the run resumes when it keeps the value that reproduces the old behaviour, not otherwise."""
    from benchmark.checkpoint.state import CheckpointError
    from benchmark.checkpoint.store import CheckpointStore

    old = {"strategy": "ft", "train": {"lr": 1e-3}}
    CheckpointStore(tmp_path, {**old, "vrf": False}, "last")._check_settings(old)
    with pytest.raises(CheckpointError, match="vrf: False -> True"):
        CheckpointStore(tmp_path, {**old, "vrf": True}, "last")._check_settings(old)
