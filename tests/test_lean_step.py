"""The training step without host synchronisation, --precision, LDIFS's fp32 distance, --compile,
and the run's cost (benchmark/cost.py) against hand counts."""

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from avalanche.training.plugins import SupervisedPlugin
from torch import nn

from benchmark import loss_watch
from benchmark.config import TrainConfig, autocast_dtype
from benchmark.cost import Cost, flops_per_image
from benchmark.loss_watch import LossWatch
from benchmark.model.encoder import build_encoder
from benchmark.model.heads import CosineHead, MultiTaskClassifier
from benchmark.pipeline import DeviceBatches, TensorPipeline
from benchmark.probe.splits import probe_split, validation_rest
from benchmark.rng import seed_everything
from benchmark.strategy_api import StrategyContext
from benchmark.streams import build_stream, training_split
from benchmark.trainer import Trainer
from run_benchmark import main
from strategies import resolve
from tasks import get_sequence, load_task
from tasks.synthetic import synthetic_task

CPU = torch.device("cpu")


def test_loss_watch_keeps_the_first_non_finite_loss_and_its_step():
    watch = LossWatch(CPU)
    for step, value in enumerate([2.0, 1.5, math.nan, math.inf, 1.0]):
        watch.check(torch.tensor(value), step)
    watch.last = torch.tensor(1.0)
    last, bad = watch.read()
    assert last == 1.0 and math.isnan(bad[0]) and bad[1] == 2
    watch.check(torch.tensor(0.5), 7)
    assert watch.read() == (1.0, None)  # read() starts a fresh watch


@pytest.fixture(scope="module")
def tiny():
    data = [
        synthetic_task(f"lean_{k}", seed=50 + k, num_classes=3, n_train=120, n_test=6).build(
            Path("."), False
        )
        for k in range(1)
    ]
    return data


def make_trainer(data, strategy="ft", precision="fp32", batch=4, extra=()):
    seed_everything(0)
    encoder = build_encoder("cfbench-tiny-vit", "none")
    text = encoder.text
    heads = [
        CosineHead(text.class_weights(d.classnames, d.templates), scale=text.logit_scale)
        for d in data
    ]
    model = MultiTaskClassifier(encoder.module, heads)
    cfg = TrainConfig(
        epochs=1,
        batch_size=batch,
        lr=1e-3,
        weight_decay=0.0,
        warmup_steps=1,
        workers=0,
        precision=precision,
    )
    context = StrategyContext(model, encoder, CPU, cfg, None, list(data))
    plugins = resolve(strategy, {})(context)
    trainer = Trainer(
        model=model,
        cfg=cfg,
        device=CPU,
        plugins=[*plugins, *extra],
        task_names=[d.name for d in data],
    )
    stream = build_stream(data, encoder.train_transform, encoder.eval_transform)
    return trainer, stream


def test_a_training_step_reads_the_loss_only_every_sync_every_steps(tiny, monkeypatch):
    trainer, stream = make_trainer(tiny)
    # The device pipeline: the PIL transforms draw their crops with .item() on CPU tensors.
    encoder = build_encoder("cfbench-tiny-vit", "none")
    pipeline = TensorPipeline.from_transforms(encoder.train_transform, encoder.eval_transform)
    split = training_split(tiny[0], None)
    trainer.device_loader = lambda t: DeviceBatches(
        tiny[0].train.images,
        np.asarray(tiny[0].train.targets),
        np.asarray(split.indices),
        t,
        4,
        pipeline,
        CPU,
        lambda: 0,
    )
    reads = []
    for name in ("item", "tolist", "__float__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counting(self, *a, _original=original, _name=name, **k):
            caller = sys._getframe(1).f_code.co_filename
            # CPU AdamW reads its CPU step counter; on CUDA the fused AdamW does not
            if f"torch{os.sep}optim" not in caller:
                reads.append(f"{_name} from {caller}:{sys._getframe(1).f_lineno}")
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counting)
    steps = len(split) // 4
    trainer.train_task(stream.train_stream[0], 1)
    # one read at every SYNC_EVERY-th step and one at the epoch's end, each a tolist + a float
    assert steps > loss_watch.SYNC_EVERY
    assert len(reads) <= 2 * (steps // loss_watch.SYNC_EVERY + 1), reads


class RecordLoss(SupervisedPlugin):
    def __init__(self):
        super().__init__()
        self.losses = []

    def before_backward(self, strategy, **kwargs):
        self.losses.append(float(strategy.loss.detach()))


def first_losses(data, strategy, precision):
    log = RecordLoss()
    trainer, stream = make_trainer(data, strategy, precision, extra=[log])
    trainer.train_task(stream.train_stream[0], 1)
    return trainer, log.losses[:5]


def test_precision_bf16_autocasts_ft_but_ldifs_keeps_its_distance_in_fp32(tiny):
    assert autocast_dtype("auto", CPU) is None
    assert autocast_dtype("auto", torch.device("cuda")) is torch.bfloat16
    assert autocast_dtype("fp32", torch.device("cuda")) is None
    ft16, ft16_losses = first_losses(tiny, "ft", "bf16")
    _, ft32_losses = first_losses(tiny, "ft", "fp32")
    assert ft16.autocast is torch.bfloat16
    assert ft16_losses != ft32_losses  # bf16 rounding shows in the loss
    np.testing.assert_allclose(ft16_losses, ft32_losses, rtol=0.05)
    ld16, ld16_losses = first_losses(tiny, "ldifs", "bf16")
    _, ld32_losses = first_losses(tiny, "ldifs", "fp32")
    assert ld16.autocast is None and ld16_losses == ld32_losses  # the same fp32 arithmetic


def test_bf16_rounding_is_as_large_as_the_ldifs_signal_after_a_small_change():
    """Why LDIFS refuses bf16: after a 1 % weight change, the feature distance computed under
    bf16 autocast differs from the fp32 one by a large fraction of itself."""
    from strategies.penalties import ldifs_distance
    from strategies.taps import TapRecorder

    seed_everything(0)
    enc = build_encoder("cfbench-tiny-vit", "none")
    ref = build_encoder("cfbench-tiny-vit", "none")
    ref.module.load_state_dict(enc.module.state_dict())
    with torch.no_grad():
        for p in enc.module.parameters():
            p.mul_(1 + 0.01 * torch.randn_like(p))
    x = torch.rand(8, 3, 32, 32)
    names = [n for n, m in enc.module.named_modules() if any(m is t for t in enc.taps)]

    def distance(dtype):
        rec = TapRecorder(enc.module, enc.taps)
        rrec = TapRecorder(ref.module, [ref.module.get_submodule(n) for n in names])
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            rec.start()
            enc.module(x)
            rec.stop()
            with rrec.capture():
                ref.module(x)
        return float(ldifs_distance(rec.taps(), rrec.taps()))

    fp32, bf16 = distance(None), distance(torch.bfloat16)
    assert fp32 > 0 and abs(bf16 - fp32) / fp32 > 0.05


def test_flop_count_of_a_linear_encoder_is_the_textbook_one():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 5, 7))
    flops = flops_per_image(model, (4, 5), CPU)
    assert flops == {"forward": 2 * 60 * 7, "train": 2 * 60 * 7 + 2 * 60 * 7}  # fwd + dW
    assert model.training and all(p.grad is None for p in model.parameters())


def test_cost_totals_and_stages():
    cost = Cost(
        CPU,
        [
            {
                "stage": 0,
                "images_trained": 0,
                "images_encoded": 10,
                "reference_forwards": 0,
                "seconds": {"train": 0, "features": 1, "probe": 2},
            }
        ],
    )
    cost.flops = {"forward": 2e9, "train": 6e9}
    cost.count("images_trained", 5)
    cost.count("reference_forwards", 5)
    cost.count("images_encoded", 3)
    with cost.phase("probe"):
        pass
    assert [s["stage"] for s in cost.close_stage(1)] == [0, 1]
    out = cost.summary()
    assert out["images_trained"] == 5 and out["images_encoded"] == 13
    assert out["gflops"] == pytest.approx(5 * 6 + (13 + 5) * 2)
    assert out["seconds"]["features"] == 1 and out["seconds"]["probe"] >= 2
    assert [s["stage"] for s in cost.close_stage(1)] == [0, 1]  # a stage redone replaces itself


def test_a_runs_cost_counts_what_it_trained_and_encoded(tmp_path):
    out = tmp_path / "out"
    args = [
        "--sequence",
        "smoke",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--cache-dir",
        "none",
        "--strategy",
        "ldifs",
        "--probe-max-train",
        "100",
        "--probe-max-test",
        "40",
    ]
    assert main(args) == 0
    folder = out / "smoke" / "ldifs" / "seed0"
    cost = json.loads((folder / "metrics.json").read_text())["cost"]
    sequence = get_sequence("smoke")
    root = tmp_path / "data"
    tasks = [load_task(n, root, False) for n in sequence.tasks]
    datasets = [load_task(n, root, False) for n in [*sequence.tasks, *sequence.controls]]
    trained = sum(len(training_split(t, None)) for t in tasks)  # one epoch each
    # the probe's subsets, plus the validation images its train subset left out (lp_val, val)
    per_stage = sum(
        min(100, len(d.train))
        + min(40, len(d.test))
        + len(validation_rest(len(d.train), *probe_split(len(d.train), 100)))
        for d in datasets
    )
    stages = len(tasks) + 1
    assert cost["images_trained"] == trained and cost["reference_forwards"] == trained
    assert cost["images_encoded"] == stages * per_stage
    assert [s["stage"] for s in cost["per_stage"]] == list(range(stages))
    f = cost["gflops_per_image"]
    expected = trained * f["train"] + (stages * per_stage + trained) * f["forward"]
    assert cost["gflops"] == pytest.approx(expected)
    assert all(cost["seconds"][p] > 0 for p in ("train", "features", "probe"))
    wall = [s["seconds"]["wall"] for s in cost["per_stage"]]
    assert all(
        w >= sum(s["seconds"][p] for p in ("train", "features", "probe"))
        for w, s in zip(wall, cost["per_stage"], strict=True)
    )
    config = json.loads((folder / "config.json").read_text())
    assert config["precision_used"] == "fp32" and config["pipeline"] == "device"


def test_compile_compiles_the_encoder_in_place_and_is_not_part_of_the_protocol(
    tmp_path, monkeypatch
):
    compiled = []
    monkeypatch.setattr(nn.Module, "compile", lambda self, *a, **k: compiled.append(type(self)))
    args = [
        "--sequence",
        "smoke",
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
        "--probe-max-train",
        "60",
        "--probe-max-test",
        "20",
    ]
    assert main([*args, "--compile"]) == 0
    assert len(compiled) == 1
    assert main(args) == 0  # the same run without --compile: complete, nothing refused
