"""The strategy contract (benchmark/plugin.py): StrategyPlugin's defaults, ``declared`` on cfbench
plugins and on foreign Avalanche plugins, and that the trainer acts on what a plugin declares."""

import dataclasses

import pytest
import torch
from avalanche.training.plugins import SupervisedPlugin

from benchmark.cost import Cost
from benchmark.plugin import Declared, StrategyPlugin, declared
from benchmark.streams import build_stream
from benchmark.trainer import Trainer
from examples import my_strategy
from strategies import resolve
from tests.helpers.strategy_runs import CPU, TRAIN, fresh_context, mini_tasks


@pytest.fixture(scope="module")
def data():
    return mini_tasks(2)


class Bare(StrategyPlugin):
    """Declares nothing: every value of the contract is the default."""


class Foreign(SupervisedPlugin):
    """An Avalanche plugin that is no StrategyPlugin but sets every part of the contract."""

    fp32_forward = True
    evaluation_kinds = ["vrf"]  # any iterable

    def __init__(self):
        super().__init__()
        self.reference_forwards = 2  # an instance attribute counts as well

    def config_entries(self) -> dict:
        return {"foreign": 1}

    def state_dict(self) -> dict:
        return {"x": 1}

    def load_state_dict(self, state: dict) -> None:
        self.loaded = state


def test_strategy_plugin_defaults():
    plugin = Bare()
    assert isinstance(plugin, SupervisedPlugin)
    assert (plugin.fp32_forward, plugin.reference_forwards, plugin.evaluation_kinds) == (
        False,
        0,
        (),
    )
    assert plugin.state_dict() == {}
    assert not hasattr(plugin, "config_entries")  # optional: none means no strategy_details
    assert plugin.load_state_dict({}) is None
    assert declared(plugin) == Declared(resumable=True)


@pytest.mark.parametrize(
    "strategy, args",
    [
        ("avalanche.training.plugins:SynapticIntelligencePlugin", {"si_lambda": 1}),
        ("avalanche.training.plugins:MASPlugin", {"lambda_reg": 0.5}),
    ],
)
def test_declared_gives_foreign_plugins_the_defaults(strategy, args):
    (plugin,) = resolve(strategy, args)(None)  # by import path: no context parameter
    assert not isinstance(plugin, StrategyPlugin)
    assert declared(plugin) == Declared()  # no state_dict: not resumable
    assert declared(SupervisedPlugin()) == Declared()


def test_declared_honours_what_a_foreign_plugin_sets(data):
    assert declared(Foreign()) == Declared(
        fp32_forward=True,
        reference_forwards=2,
        evaluation_kinds=("vrf",),
        config_entries={"foreign": 1},
        resumable=True,
    )
    empty = Foreign()
    empty.config_entries = dict  # has the method, reports nothing: {} (the session still adds
    assert declared(empty).config_entries == {}  # an empty strategy_details, as before)
    (example,) = my_strategy.build(fresh_context(data))  # the README's worked example
    assert declared(example) == Declared(resumable=True)


def test_cfbench_plugins_declare_through_the_base_class(data):
    context = fresh_context(data)
    (ldifs,) = resolve("ldifs")(context)
    (vrf,) = resolve("vrf")(context)
    (lwf,) = resolve("lwf")(context)
    (bitfit,) = resolve("bitfit")(context)
    assert all(isinstance(p, StrategyPlugin) for p in (ldifs, vrf, lwf, bitfit))
    assert declared(ldifs) == Declared(fp32_forward=True, reference_forwards=1, resumable=True)
    assert declared(vrf).evaluation_kinds == ("vrf", "ose")
    assert declared(bitfit).config_entries == bitfit.config_entries() != {}
    assert declared(vrf).config_entries is None and vrf.state_dict() == {}
    # a value that changes during the run is read as it is now: LwF has a teacher after task 1
    assert declared(lwf).reference_forwards == 0
    lwf.lwf.prev_model = context.model
    assert declared(lwf).reference_forwards == 1


def trainer_with(data, plugins, precision="fp32"):
    context = fresh_context(data)
    train = dataclasses.replace(TRAIN, precision=precision)
    trainer = Trainer(model=context.model, cfg=train, device=CPU, plugins=plugins)
    enc = context.encoder
    return trainer, build_stream(data, enc.train_transform, enc.eval_transform).train_stream


def test_a_declared_fp32_forward_turns_bf16_autocast_off(data):
    assert trainer_with(data, [Bare()], "bf16")[0].autocast is torch.bfloat16
    assert trainer_with(data, [Bare(), Foreign()], "bf16")[0].autocast is None


def test_declared_reference_forwards_are_counted_in_the_cost(data):
    """2 per image from the foreign plugin, plus LwF's teacher from its second task on."""
    context = fresh_context(data)
    (lwf,) = resolve("lwf")(context)
    trainer = Trainer(model=context.model, cfg=TRAIN, device=CPU, plugins=[lwf, Foreign()])
    trainer.cost = Cost(CPU)
    enc = context.encoder
    counts = []
    for experience in build_stream(data, enc.train_transform, enc.eval_transform).train_stream:
        trainer.train_task(experience, 1)
        counts.append(dict(trainer.cost.current))
        trainer.cost.close_stage(len(counts))
    trained = [c["images_trained"] for c in counts]
    assert trained[0] > 0 and trained[1] > 0
    assert [c["reference_forwards"] for c in counts] == [2 * trained[0], 3 * trained[1]]
