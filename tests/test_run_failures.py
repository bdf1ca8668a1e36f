"""Failures in the middle of a run (a NaN loss, the GPU out of memory, a plugin state that cannot
be saved or was not, a full disk): one line saying what is saved, the finished stages kept, and
the run resumed from them. Bad input before a run starts is in test_bad_input.py."""

import errno
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from avalanche.training.plugins import SupervisedPlugin

from benchmark import evaluation
from benchmark.trainer import Trainer
from run_benchmark import main
from tests.helpers.cli_checks import one_line_error, snapshot


# -- failures in the middle of a run: finished stages are kept and the run resumes from them ------
class NaNLossAt(SupervisedPlugin):
    """Turns the loss into NaN at one step of one task; draws nothing from the RNG."""

    def __init__(self, task: int = 1, step: int = 2):
        super().__init__()
        self.task, self.step = task, step

    def before_backward(self, strategy, **kwargs):
        clock = strategy.clock
        if clock.train_exp_counter == self.task and clock.train_exp_iterations == self.step:
            strategy.loss = strategy.loss * math.nan

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def stages(folder: Path) -> pd.DataFrame:
    records = pd.read_csv(folder / "records.csv")
    return records[["stage", "dataset", "kind", "accuracy"]].reset_index(drop=True)


def ft_stages(finished: Path, upto: int) -> pd.DataFrame:
    full = stages(finished / "mini" / "ft" / "seed0")
    return full[full.stage <= upto].reset_index(drop=True)


def test_nan_loss_names_task_and_step_and_keeps_finished_stages(mini, finished, tmp_path, capsys):
    strategy = "tests.test_run_failures:NaNLossAt"
    argv = ["--sequence", str(mini), "--out", str(tmp_path), "--strategy", strategy]
    folder = tmp_path / "mini" / strategy.replace(":", "_") / "seed0"
    for _ in range(2):  # the re-run resumes after stage 1 and meets the same NaN
        assert main(argv) == 2
        message = one_line_error(capsys)
        assert "loss became nan on task 'synth_b' at step 2; lower --lr" in message
        assert f"stages 0-1 are saved in {folder}" in message
        # stages 0-1 are the plain fine-tuning ones: the plugin changes nothing before the NaN
        pd.testing.assert_frame_equal(stages(folder), ft_stages(finished, 1))


def oom_at_task_2(monkeypatch):
    forward = Trainer.forward

    def forward_then_oom(self):
        if self.clock.train_exp_counter == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(self)

    monkeypatch.setattr(Trainer, "forward", forward_then_oom)


def test_gpu_out_of_memory_while_training_resumes_with_micro_batches(
    mini, finished, tmp_path, capsys, monkeypatch
):
    argv = ["--sequence", str(mini), "--out", str(tmp_path)]
    with monkeypatch.context() as patch:
        oom_at_task_2(patch)
        assert main(argv) == 2
    message = one_line_error(capsys)
    folder = tmp_path / "mini" / "ft" / "seed0"
    assert "GPU out of memory while training task 'synth_b' at 32 images per pass" in message
    assert (
        "run the same command with --micro-batch 16: it resumes, and still updates on "
        f"batches of 32 (stages 0-1 are saved in {folder})" in message
    )
    pd.testing.assert_frame_equal(stages(folder), ft_stages(finished, 1))
    assert main([*argv, "--micro-batch", "16"]) == 0  # an execution setting: resumes
    assert "resuming" in capsys.readouterr().out
    resumed = stages(folder)
    pd.testing.assert_frame_equal(resumed[resumed.stage <= 1], ft_stages(finished, 1))
    assert sorted(resumed.stage.unique()) == [0, 1, 2]


def test_gpu_out_of_memory_with_batch_norm_statistics_suggests_a_batch_size(
    mini, tmp_path, capsys, monkeypatch
):
    """Micro-batches would change batch-norm statistics, so a smaller batch is the answer."""
    oom_at_task_2(monkeypatch)
    argv = [
        "--sequence",
        str(mini),
        "--out",
        str(tmp_path),
        "--model",
        "resnet20-cifar",
        "--pretrained",
        "none",
        "--batchnorm",
        "train",
    ]
    assert main(argv) == 2
    message = one_line_error(capsys)
    assert (
        "GPU out of memory while training task 'synth_b' at batch size 32; a smaller "
        "--batch-size (e.g. 16) changes the protocol, so rerun with it and --fresh or another "
        "--out (stages 0-1 are saved in" in message
    )


def test_gpu_out_of_memory_while_evaluating_resumes_with_a_smaller_eval_batch(
    mini, finished, tmp_path, capsys, monkeypatch
):
    extract, calls = evaluation.extract_features, []

    def extract_then_oom(*args, **kwargs):
        calls.append(kwargs.get("batch_size"))
        if len(calls) == 7:  # stage 2: one pass (train and test) per dataset, 3 per stage
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return extract(*args, **kwargs)

    monkeypatch.setattr(evaluation, "extract_features", extract_then_oom)
    argv = ["--sequence", str(mini), "--out", str(tmp_path), "--cache-dir", "none"]
    assert main(argv) == 2
    message = one_line_error(capsys)
    folder = tmp_path / "mini" / "ft" / "seed0"
    assert "GPU out of memory while evaluating stage 2; run the same command with " in message
    assert "--eval-batch-size 128, which resumes (stages 0-1 are saved" in message
    assert main([*argv, "--eval-batch-size", "128"]) == 0  # an execution setting: resumes
    assert "resuming" in capsys.readouterr().out
    assert calls[-1] == 128
    resumed = stages(folder)
    pd.testing.assert_frame_equal(resumed[resumed.stage <= 1], ft_stages(finished, 1))
    assert sorted(resumed.stage.unique()) == [0, 1, 2]


def test_a_plugin_without_state_dict_is_not_resumed_with_a_lost_state(
    mini, tmp_path, capsys, monkeypatch
):
    """Avalanche's SI keeps its importances in attributes, with no state_dict(): the run says so
    when it starts, and a resume after its first task is refused instead of silently wrong."""
    strategy = "avalanche.training.plugins:SynapticIntelligencePlugin"
    argv = [
        "--sequence",
        str(mini),
        "--out",
        str(tmp_path),
        "--strategy",
        strategy,
        "--strategy-arg",
        "si_lambda=1",
    ]
    with monkeypatch.context() as patch:
        oom_at_task_2(patch)
        assert main(argv) == 2  # stopped during task 2: stages 0-1 saved
    out = capsys.readouterr().out
    assert (
        "note: avalanche.training.plugins.synaptic_intelligence.SynapticIntelligencePlugin "
        "has no state_dict(); this run cannot be resumed once its first task is finished" in out
    )
    folder = tmp_path / "mini" / strategy.replace(":", "_") / "seed0"
    before = snapshot(folder)
    assert main(argv) == 2
    message = one_line_error(capsys)
    assert f"cannot resume from checkpoint {folder / 'checkpoints' / 'stage01.pt'}" in message
    assert "SynapticIntelligencePlugin has no state_dict(), so its state was not saved" in message
    assert "rerun with --fresh" in message
    assert snapshot(folder) == before


def test_the_same_sequence_by_another_path_resumes_the_same_run(
    mini, finished, capsys, monkeypatch
):
    before = snapshot(finished)
    monkeypatch.chdir(mini.parent)
    capsys.readouterr()
    assert main(["--sequence", mini.name, "--out", str(finished)]) == 0
    assert "is already complete (--fresh runs it again)" in capsys.readouterr().out
    assert snapshot(finished).keys() == before.keys()
    assert all(
        snapshot(finished)[k] == v for k, v in before.items() if k != "mini/ft/seed0/metrics.json"
    )


def test_out_of_memory_fitting_an_lp_init_head_suggests_the_eval_batch_and_says_without_fresh(
    mini, tmp_path, capsys, monkeypatch
):
    from benchmark.model import lp_init

    extract, calls = lp_init.extract_features, []

    def extract_then_oom(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the LP-init probe of task 2
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return extract(*args, **kwargs)

    monkeypatch.setattr(lp_init, "extract_features", extract_then_oom)
    argv = ["--sequence", str(mini), "--out", str(tmp_path), "--head-init", "lp", "--fresh"]
    assert main(argv) == 2
    message = one_line_error(capsys)
    assert (
        "GPU out of memory while preparing task 'synth_b' (e.g. the feature pass of its "
        "LP-init probe); run the same command (without --fresh) with --eval-batch-size 128, "
        "which resumes (stages 0-1 are saved in" in message
    )


class NumpyState(SupervisedPlugin):
    """A plugin whose state holds a numpy scalar, which weights_only loading would refuse."""

    def state_dict(self) -> dict:
        return {"count": np.float64(1.0)}

    def load_state_dict(self, state: dict) -> None:
        pass


def test_a_plugin_state_that_a_checkpoint_cannot_hold_is_refused_when_saved(mini, tmp_path, capsys):
    strategy = "tests.test_run_failures:NumpyState"
    assert main(["--sequence", str(mini), "--out", str(tmp_path), "--strategy", strategy]) == 2
    message = one_line_error(capsys)
    assert (
        "tests.test_run_failures.NumpyState.state_dict()['count'] holds a numpy.float64; a "
        "checkpoint takes tensors and plain values only" in message
    )
    folder = tmp_path / "mini" / strategy.replace(":", "_") / "seed0"
    assert sorted(stages(folder).stage.unique()) == [0]  # stage 0 is saved; stage 1 was refused


def test_a_full_disk_is_one_line_saying_what_is_saved(mini, tmp_path, capsys, monkeypatch):
    from benchmark.checkpoint import store as checkpoint_store

    write, calls = checkpoint_store.write_atomic, []

    def write_until_full(path, content):
        calls.append(path.name)
        if path.name == "stage01.pt":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(path, content)

    monkeypatch.setattr(checkpoint_store, "write_atomic", write_until_full)
    assert main(["--sequence", str(mini), "--out", str(tmp_path)]) == 2
    folder = tmp_path / "mini" / "ft" / "seed0"
    assert one_line_error(capsys) == (
        f"error: cannot write stage 1 to {folder} (No space left on device); free some space or "
        f"choose another --out; stage 0 (the pretrained model) is saved in {folder}"
    )
    assert sorted(stages(folder).stage.unique()) == [0]
