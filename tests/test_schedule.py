"""The learning-rate schedule: ``warmup_cosine`` on hand-computed factors, and the Trainer stepping
it once per optimiser step, afresh for every task."""

import math
from pathlib import Path

import pytest
import torch
from avalanche.training.plugins import SupervisedPlugin
from torch import nn
from torchvision.transforms import ToTensor

from benchmark.config import TrainConfig
from benchmark.model.heads import CosineHead, MultiTaskClassifier
from benchmark.rng import seed_everything
from benchmark.streams import build_stream
from benchmark.trainer import Trainer, warmup_cosine
from tasks.synthetic import synthetic_task

# cos(pi / 4) = sqrt(2) / 2, so 0.5 * (1 + cos(pi / 4)) = 0.5 + sqrt(2) / 4 and
# 0.5 * (1 + cos(3 pi / 4)) = 0.5 - sqrt(2) / 4.
QUARTER = 0.5 + math.sqrt(2) / 4  # 0.853553...
THREE_QUARTERS = 0.5 - math.sqrt(2) / 4  # 0.146446...


def test_linear_warmup_then_cosine_to_zero_on_hand_numbers():
    f = warmup_cosine(4, 12)  # 4 warm-up steps, then 8 steps of cosine decay
    assert f(0) == pytest.approx(0.25)  # (0 + 1) / 4: the first step already trains
    assert f(1) == pytest.approx(0.5)
    assert f(2) == pytest.approx(0.75)
    assert f(3) == pytest.approx(1.0)  # step warmup - 1: the peak is reached at the end of it
    assert f(4) == pytest.approx(1.0)  # step warmup: the cosine starts at its top
    assert f(6) == pytest.approx(QUARTER)  # a quarter of the decay: (6 - 4) / 8
    assert f(8) == pytest.approx(0.5)  # the midpoint of the cosine: (8 - 4) / 8 = 1/2
    assert f(10) == pytest.approx(THREE_QUARTERS)  # (10 - 4) / 8 = 3/4
    assert f(12) == pytest.approx(0.0, abs=1e-12)  # step total: decayed to 0


def test_the_factor_stays_at_zero_past_the_end():
    f = warmup_cosine(4, 12)
    # unclamped, the cosine would rise again: at step 20 (progress 2) it would be back at 1
    for step in (13, 16, 20, 100):
        assert f(step) == pytest.approx(0.0, abs=1e-12), step


def test_the_factor_is_monotone_up_then_down():
    f = warmup_cosine(3, 10)
    values = [f(s) for s in range(12)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert values[:3] == sorted(values[:3]) and values[2] == pytest.approx(1.0)
    assert values[3:] == sorted(values[3:], reverse=True)


def test_no_warmup_starts_at_the_full_rate():
    # warmup_steps = 0 is allowed (config.validate asks for an integer >= 0)
    f = warmup_cosine(0, 4)
    assert f(0) == pytest.approx(1.0)
    assert f(1) == pytest.approx(QUARTER)  # progress 1/4
    assert f(2) == pytest.approx(0.5)
    assert f(3) == pytest.approx(THREE_QUARTERS)
    assert f(4) == pytest.approx(0.0, abs=1e-12)
    assert f(0) == pytest.approx(1.0)  # the factor is a pure function of the step


def test_total_at_most_warmup_only_warms_up_and_never_divides_by_zero():
    # A task shorter than the warm-up: every step it trains is on the linear ramp.
    f = warmup_cosine(5, 3)
    assert [f(s) for s in range(3)] == pytest.approx([0.2, 0.4, 0.6])
    assert f(4) == pytest.approx(1.0)
    assert f(5) == pytest.approx(1.0)  # progress 0 / max(1, 3 - 5): no division by a negative
    assert f(6) == pytest.approx(0.0, abs=1e-12)  # one step later: progress 1, clamped
    g = warmup_cosine(2, 2)  # total == warmup: no cosine steps at all
    assert [g(0), g(1), g(2)] == pytest.approx([0.5, 1.0, 1.0])
    assert g(3) == pytest.approx(0.0, abs=1e-12)
    h = warmup_cosine(0, 0)
    assert h(0) == pytest.approx(1.0) and h(1) == pytest.approx(0.0, abs=1e-12)


# -- the Trainer steps the schedule per iteration -------------------------------------------------
class LrLog(SupervisedPlugin):
    """The learning rate every optimiser step uses (read just before the step)."""

    def __init__(self):
        super().__init__()
        self.lrs = []

    def before_update(self, strategy, **kwargs):
        self.lrs.append(strategy.optimizer.param_groups[0]["lr"])


def test_trainer_steps_the_schedule_once_per_iteration_and_restarts_it_per_task():
    # 3 classes x 9 = 27 train images; the fixed validation split takes round(2.7) = 3, leaving
    # 24 training images = 6 batches of 4: warm-up 2 steps, then 4 cosine steps.
    data = [
        synthetic_task(f"sched_{k}", seed=70 + k, num_classes=3, n_train=9, n_test=2, size=8).build(
            Path("."), False
        )
        for k in range(2)
    ]
    seed_everything(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))
    model = MultiTaskClassifier(encoder, [CosineHead(torch.randn(3, 5)) for _ in data])
    lr = 0.01
    cfg = TrainConfig(epochs=1, batch_size=4, lr=lr, weight_decay=0.0, warmup_steps=2, workers=0)
    log = LrLog()
    trainer = Trainer(
        model=model,
        cfg=cfg,
        device=torch.device("cpu"),
        plugins=[log],
        task_names=[d.name for d in data],
    )
    stream = build_stream(data, ToTensor(), ToTensor()).train_stream
    # steps 0, 1: (s + 1) / 2; steps 2..5: progress 0, 1/4, 1/2, 3/4 of the cosine
    per_task = [lr * f for f in (0.5, 1.0, 1.0, QUARTER, 0.5, THREE_QUARTERS)]
    trainer.train_task(stream[0], 1)
    assert log.lrs == pytest.approx(per_task)
    trainer.train_task(stream[1], 1)  # a new task: warm-up again from the configured lr
    assert log.lrs == pytest.approx(per_task + per_task)
