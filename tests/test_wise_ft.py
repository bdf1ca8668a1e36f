"""WiSE-FT: the interpolation of the encoder and the heads with their start-of-task values, its
ends (alpha 0 and 1), and its ``heads`` setting."""

import pytest
import torch
from avalanche.training.plugins import SupervisedPlugin

from benchmark.checkpoint.state import CheckpointError
from benchmark.checkpoint.store import CheckpointStore
from benchmark.streams import build_stream
from benchmark.trainer import Trainer
from strategies import resolve, wise_ft
from strategies.common import cpu_state
from tests.helpers.strategy_runs import (
    CPU,
    TRAIN,
    assert_same,
    assert_same_weights,
    fresh_context,
    mini_tasks,
    run_cache,
    through_checkpoint,
)


@pytest.fixture(scope="module")
def data():
    return mini_tasks(2)


@pytest.fixture(scope="module")
def runs(data):
    """Trained runs, keyed by (strategy, sorted args), each trained once per module."""
    return run_cache(data)


def test_wise_ft_ends(runs, data):
    assert_same_weights(runs("wise_ft", alpha=1.0).model, runs("ft").model)
    pretrained = runs("wise_ft", alpha=0.0)
    for key, value in pretrained.model.encoder.state_dict().items():
        assert torch.equal(value, pretrained.pretrained[key]), key
    # each zero-shot head starts its task as built: alpha = 0 gives every head back as built
    initial = fresh_context(data).model.heads.state_dict()
    assert_same(dict(pretrained.model.heads.state_dict()), dict(initial))


def test_wise_ft_mixes_the_head_with_its_start_of_task_value(runs, data):
    """Head 0 trains in task 0 only, as FT trains it (same seed), then is mixed with its
    zero-shot start; task 1 leaves it as it is. heads=False leaves it as trained."""
    zs = fresh_context(data).model.heads.state_dict()
    ft = runs("ft").model.heads.state_dict()
    mixed, old = runs("wise_ft"), runs("wise_ft", heads=False)  # alpha 0.5
    for key in ("0.weight", "0.bias"):
        assert not torch.equal(ft[key], zs[key])
        assert torch.equal(mixed.model.heads.state_dict()[key], 0.5 * zs[key] + 0.5 * ft[key])
        assert torch.equal(old.model.heads.state_dict()[key], ft[key])
    # the heads' mix changes nothing else: task 1 trains the same encoder from the same head
    assert_same_weights(mixed.model.encoder, old.model.encoder)
    assert not torch.equal(mixed.model.heads["1"].weight, old.model.heads["1"].weight)


def test_wise_ft_snapshots_the_heads_at_the_first_iteration_and_mixes_them_in_place(data):
    context = fresh_context(data)
    heads = context.model.heads
    plugin = resolve("wise_ft", {"alpha": 0.25})(context)[0]
    with torch.no_grad():
        heads["1"].weight.mul_(2.0)  # a head initialisation (before_training_exp)
    plugin.before_training_iteration(None)
    theta0 = cpu_state(heads)
    saved = through_checkpoint(plugin.state_dict())  # a checkpoint within a task keeps it
    with torch.no_grad():  # training (of head 1 only)
        heads["1"].weight.add_(torch.randn_like(heads["1"].weight))
        heads["1"].bias.add_(1.0)
    plugin.before_training_iteration(None)  # later iterations keep the first snapshot
    theta_ft = cpu_state(heads)
    params_before = list(heads.parameters())
    plugin.after_training_exp(None)
    state = heads.state_dict()
    for key in ("1.weight", "1.bias"):
        assert torch.equal(state[key], 0.75 * theta0[key] + 0.25 * theta_ft[key]), key
    for key in ("0.weight", "0.bias"):
        assert torch.equal(state[key], theta0[key]), key  # unchanged entries stay bit for bit
    assert all(p is q for p, q in zip(heads.parameters(), params_before, strict=True))
    assert plugin.state_dict() == {}  # between tasks: nothing to store
    assert_same(saved, {"heads0": theta0})
    other = resolve("wise_ft")(fresh_context(data))[0]
    other.load_state_dict(saved)
    assert_same(other.heads0, theta0)


def test_wise_ft_takes_the_lp_initialised_head_as_its_theta0(data):
    """With alpha = 0 the task's head ends where its training started: under LP-init, the probe
    LPInitPlugin set in before_training_exp (here listed after WiSE-FT), not the head before."""

    class HeadLog(SupervisedPlugin):
        def before_training_exp(self, strategy, **kwargs):
            self.head = cpu_state(strategy.model.heads["0"])

    context = fresh_context(data)
    built = cpu_state(context.model.heads["0"])
    log = HeadLog()
    plugins = [*resolve("wise_ft", {"alpha": 0.0})(context), *resolve("lp_ft")(context), log]
    trainer = Trainer(model=context.model, cfg=TRAIN, device=CPU, plugins=plugins)
    enc = context.encoder
    stream = build_stream(data, enc.train_transform, enc.eval_transform).train_stream
    trainer.train_task(stream[0], 1)
    assert not torch.equal(log.head["weight"], built["weight"])
    assert_same(cpu_state(context.model.heads["0"]), log.head)


def test_wise_ft_heads_setting_is_checked_and_older_checkpoints_are_refused(tmp_path):
    """A wise_ft checkpoint from before ``heads`` existed (encoder only) has no such setting:
    it is refused with either value, not resumed with another behaviour."""
    with pytest.raises(ValueError, match="heads must be true or false"):
        wise_ft.Config(heads=1)
    old = {"strategy": "wise_ft", "strategy_config": {"alpha": 0.5}, "vrf": False}
    for heads in (True, False):
        new = {**old, "strategy_config": resolve("wise_ft", {"heads": heads}).settings}
        CheckpointStore(tmp_path, new, "last")._check_settings(new)
        with pytest.raises(CheckpointError, match=f"strategy_config.heads: None -> {heads}"):
            CheckpointStore(tmp_path, new, "last")._check_settings(old)


def test_wise_ft_interpolates_the_encoder_in_place(data):
    context = fresh_context(data)
    encoder = context.model.encoder
    theta0 = cpu_state(encoder)
    plugin = resolve("wise_ft", {"alpha": 0.25})(context)[0]
    with torch.no_grad():
        for p in encoder.parameters():
            p.add_(torch.randn_like(p))
    theta_ft = cpu_state(encoder)
    params_before = list(encoder.parameters())
    plugin.after_training_exp(None)
    for key, theta in encoder.state_dict().items():
        torch.testing.assert_close(theta, 0.75 * theta0[key] + 0.25 * theta_ft[key])
    assert all(p is q for p, q in zip(encoder.parameters(), params_before, strict=True))
