"""Strategies trained on the tiny model: the settings, the context the runner would build, a
two-task training, and the checks the strategy tests share (tests/test_strategy_*.py,
tests/test_wise_ft.py, tests/test_ldifs.py, tests/test_flyp.py, tests/test_peft.py,
tests/test_zscl.py)."""

import io
from dataclasses import dataclass
from pathlib import Path

import torch
from avalanche.training.plugins import SupervisedPlugin

from benchmark.config import ProbeConfig, TrainConfig
from benchmark.model.encoder import build_encoder
from benchmark.model.heads import CosineHead, MultiTaskClassifier
from benchmark.rng import seed_everything
from benchmark.strategy_api import StrategyContext
from benchmark.streams import build_stream
from benchmark.trainer import Trainer
from strategies import resolve
from strategies.common import cpu_state
from tasks.synthetic import synthetic_task

CPU = torch.device("cpu")
TRAIN = TrainConfig(epochs=1, batch_size=16, lr=1e-3, weight_decay=0.0, warmup_steps=2, workers=0)
PROBE = ProbeConfig(c_grid=(1.0, 100.0), max_iter=50, batch_size=64)


def mini_tasks(count: int = 2) -> list:
    """``count`` synthetic 4-class tasks of 16 training images (seeds 30, 31, ...)."""
    specs = [
        synthetic_task(f"mini_{k}", seed=30 + k, num_classes=4, n_train=16, n_test=4)
        for k in range(count)
    ]
    return [spec.build(Path("."), False) for spec in specs]


class LossLog(SupervisedPlugin):
    """Goes after the strategy's plugins, so it sees the full loss of every step."""

    def __init__(self):
        super().__init__()
        self.losses = []

    def before_backward(self, strategy, **kwargs):
        self.losses.append(strategy.loss.item())


class GradLog(SupervisedPlugin):
    """The gradient of every optimiser step (before clipping), and the batch it came from."""

    def __init__(self):
        super().__init__()
        self.grads, self.batches = [], []

    def before_update(self, strategy, **kwargs):
        self.grads.append(
            [p.grad.clone() for p in strategy.model.parameters() if p.grad is not None]
        )
        self.batches.append(len(strategy.mb_x))


@dataclass
class Run:
    model: torch.nn.Module
    plugins: list
    losses: list
    pretrained: dict  # the encoder's state before training


def fresh_context(data, seed=0, train=TRAIN) -> StrategyContext:
    seed_everything(seed)  # the same random init every time
    encoder = build_encoder("cfbench-tiny-vit", "none")
    text = encoder.text
    heads = [
        CosineHead(text.class_weights(d.classnames, d.templates), scale=text.logit_scale)
        for d in data
    ]  # zero-shot heads, as the runner builds them
    model = MultiTaskClassifier(encoder.module, heads)
    stream = build_stream(data, encoder.train_transform, encoder.eval_transform)
    train_datasets = [e.dataset for e in stream.train_stream]  # as the session passes them
    return StrategyContext(model, encoder, CPU, train, PROBE, list(data), None, train_datasets)


def train_two_tasks(name, args, data, seed=0, train=TRAIN) -> Run:
    context = fresh_context(data, seed, train)
    pretrained = cpu_state(context.model.encoder)
    plugins = resolve(name, args)(context)
    log = LossLog()
    trainer = Trainer(
        model=context.model,
        cfg=train,
        device=CPU,
        plugins=plugins + [log],
        task_names=[d.name for d in data],
    )
    enc = context.encoder
    for experience in build_stream(data, enc.train_transform, enc.eval_transform).train_stream:
        trainer.train_task(experience, 1)
    return Run(context.model, plugins, log.losses, pretrained)


def run_cache(data):
    """``get(name, train=TRAIN, **args)``: the run of strategy ``name`` on ``data``, trained once
    per cache (a module-scoped ``runs`` fixture returns one)."""
    cache = {}

    def get(name, train=TRAIN, **args):
        key = (name, train, tuple(sorted(args.items())))
        if key not in cache:
            cache[key] = train_two_tasks(name, args, data, train=train)
        return cache[key]

    return get


def through_checkpoint(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)  # what a checkpoint loader will do


def assert_same(a, b, where="state"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def assert_same_weights(m1, m2):
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys()
    different = [k for k in s1 if not torch.equal(s1[k], s2[k])]
    assert not different, f"differ: {different[:5]}"
