"""Every registered strategy trains two tasks on the tiny model, and its plugins' states go through
a checkpoint: tensors and plain values only, nothing the checkpoint can rebuild from the model, and
a run restored from one trains on bit for bit."""

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from benchmark.checkpoint.state import Checkpoint, capture, restore, resumable
from benchmark.streams import build_stream
from benchmark.trainer import Trainer
from strategies import STRATEGIES, resolve
from strategies.common import FROM_MODEL
from tasks.synthetic import synthetic_task
from tests.helpers.strategy_runs import (
    CPU,
    TRAIN,
    LossLog,
    assert_same,
    assert_same_weights,
    fresh_context,
    mini_tasks,
    run_cache,
    through_checkpoint,
)

STATEFUL = {"l2sp", "ldifs", "ewc", "lwf", "replay", "wise_ft"}


@pytest.fixture(scope="module")
def data():
    return mini_tasks(2)


@pytest.fixture(scope="module")
def runs(data):
    """Trained runs, keyed by (strategy, sorted args), each trained once per module."""
    return run_cache(data)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_trains_two_tasks_and_every_plugin_is_resumable(name, runs):
    run = runs(name)
    assert len(run.losses) >= 2 * 3 and all(math.isfinite(v) for v in run.losses)
    assert all(resumable(p) for p in run.plugins)
    for plugin in run.plugins:
        state = plugin.state_dict()
        assert_same(through_checkpoint(state), state)  # tensors and plain values only


def tensor_paths(state, path="state") -> dict[str, torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return {path: state}
    if not isinstance(state, (dict, list, tuple)):
        return {}
    items = state.items() if isinstance(state, dict) else enumerate(state)
    out = {}
    for key, value in items:
        out.update(tensor_paths(value, f"{path}.{key}"))
    return out


def test_plugin_states_store_nothing_the_checkpoint_can_rebuild(runs):
    """Anchors, the LwF teacher, EWC's saved weights and WiSE-FT's theta0 equal the model or the
    pretrained weights between tasks: only EWC's importances and replay's indices are stored."""
    for name in sorted(STATEFUL):
        run = runs(name, mem_size=20) if name == "replay" else runs(name)
        (plugin,) = run.plugins
        tensors = tensor_paths(plugin.state_dict())
        if name == "ewc":
            params = dict(run.model.named_parameters())
            assert plugin.state_dict()["saved_params"] == {1: FROM_MODEL}
            importances = plugin.state_dict()["importances"]
            assert list(importances) == [1] and importances[1].keys() == params.keys()
            assert sum(t.numel() for t in tensors.values()) == sum(
                p.numel() for p in params.values()
            )  # one importance per parameter, no copy of the weights
        elif name == "replay":
            assert all(not t.is_floating_point() for t in tensors.values())
            assert sum(t.numel() for t in tensors.values()) == 20
        else:
            assert not tensors, name
    assert runs("lwf").plugins[0].state_dict()["teacher"] == FROM_MODEL


@pytest.fixture(scope="module")
def data3(data):
    extra = synthetic_task("mini_2", seed=32, num_classes=4, n_train=16, n_test=4)
    return [*data, extra.build(Path("."), False)]


@pytest.mark.parametrize(
    "name, max_images", [(n, None) for n in sorted(STRATEGIES)] + [("replay", 10)]
)
def test_a_run_restored_from_a_checkpoint_trains_on_bit_for_bit(name, max_images, data3):
    """Checkpoint after task 1 (through torch.save and a weights_only load), rebuild everything
    from scratch, restore, train tasks 2 and 3: every loss and weight equals the uninterrupted
    run's. (Replay also with --max-train-images: its saved indices point into that subset.)"""
    args = {"mem_size": 12} if name == "replay" else {}
    train = dataclasses.replace(TRAIN, max_train_images=max_images)

    def build():
        context = fresh_context(data3, train=train)
        plugins = resolve(name, args)(context)
        log = LossLog()
        trainer = Trainer(
            model=context.model,
            cfg=train,
            device=CPU,
            plugins=[*plugins, log],
            task_names=[d.name for d in data3],
        )
        enc = context.encoder
        stream = build_stream(data3, enc.train_transform, enc.eval_transform, max_images)
        return context.model, plugins, trainer, stream.train_stream, log

    model, plugins, trainer, stream, log = build()
    trainer.train_task(stream[0], 1)
    state = through_checkpoint(dataclasses.asdict(capture(1, [], model, plugins, trainer)))
    for experience in list(stream)[1:]:
        trainer.train_task(experience, 1)

    model2, plugins2, trainer2, stream2, log2 = build()
    restore(Checkpoint(**state), model2, plugins2, trainer2, "test checkpoint")
    for experience in list(stream2)[1:]:
        trainer2.train_task(experience, 1)
    assert len(log2.losses) > 0 and log2.losses == log.losses[-len(log2.losses) :]
    assert_same_weights(model2, model)
    assert trainer2.clock.train_exp_counter == trainer.clock.train_exp_counter == 3


@pytest.mark.parametrize(
    "name, plugin",
    [
        ("bitfit", "strategies.bitfit.BitFitPlugin"),
        ("vrf", "strategies.vrf.VRFEvaluationPlugin"),
        ("lora", "strategies.lora.LoRAPlugin"),
    ],
)
def test_a_plugin_with_the_base_state_writes_and_reads_what_its_own_empty_state_did(
    name, plugin, data
):
    """BitFit's, VRF's and LoRA's plugins wrote their own empty state before StrategyPlugin gave
    it to them: a checkpoint's entry is still {"plugin": name, "state": {}}, and such an entry (as
    a checkpoint written before holds it) restores into a freshly built run."""
    context = fresh_context(data)
    plugins = resolve(name)(context)
    trainer = Trainer(model=context.model, cfg=TRAIN, device=CPU, plugins=plugins)
    written = capture(1, [], context.model, plugins, trainer)
    assert written.plugins == [{"plugin": plugin, "state": {}}]
    before = Checkpoint(**through_checkpoint(dataclasses.asdict(written)))
    fresh = fresh_context(data)
    again = resolve(name)(fresh)
    trainer = Trainer(model=fresh.model, cfg=TRAIN, device=CPU, plugins=again)
    restore(before, fresh.model, again, trainer, "an older checkpoint")
    assert_same_weights(fresh.model, context.model)
