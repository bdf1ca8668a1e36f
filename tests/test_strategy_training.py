"""What the strategies do to training on the tiny model: a regulariser at weight 0 is FT, micro-
batches give the whole batch's gradient (penalties and EWC's importances included), replay's
memory is an even uniform sample, LP-FT's head is the probe."""

import dataclasses
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from benchmark.probe.features import Transformed, extract_features
from benchmark.probe.fit import linear_probe
from benchmark.probe.splits import validation_split
from benchmark.streams import build_stream, training_split
from benchmark.trainer import Trainer
from strategies import resolve
from tests.helpers.strategy_runs import (
    CPU,
    PROBE,
    TRAIN,
    GradLog,
    assert_same_weights,
    fresh_context,
    mini_tasks,
    run_cache,
)


@pytest.fixture(scope="module")
def data():
    return mini_tasks(2)


@pytest.fixture(scope="module")
def runs(data):
    """Trained runs, keyed by (strategy, sorted args), each trained once per module."""
    return run_cache(data)


def test_replay_keeps_an_even_uniform_sample_of_each_task(runs, data):
    plugin = runs("replay", mem_size=50).plugins[0]
    kept = plugin.storage_policy.kept
    assert sorted(kept) == [0, 1] and [len(kept[t]) for t in (0, 1)] == [25, 25]
    n_train = len(training_split(data[0]))
    assert all(len(set(kept[t].tolist())) == 25 and int(kept[t].max()) < n_train for t in kept)
    labels = list(plugin.storage_policy.buffer.targets_task_labels)
    assert labels.count(0) == labels.count(1) == 25


def test_every_regulariser_with_zero_weight_reproduces_ft(runs):
    # Bit-exact needs clipping off: EWC's penalty and LwF's all-heads forward give the old heads
    # zero gradients (FT leaves them None), which changes the rounding of the global grad norm.
    no_clip = dataclasses.replace(TRAIN, grad_clip=0.0)
    ft = runs("ft", train=no_clip).model
    zero = [
        ("l2sp", {"alpha": 0}),
        ("ldifs", {"lam": 0}),
        ("ewc", {"lam": 0}),
        ("lwf", {"alpha": 0}),
    ]
    for name, args in zero:
        assert_same_weights(runs(name, train=no_clip, **args).model, ft)
    for name, args in zero[:2]:  # with clipping too, where the old heads' gradients stay None
        assert_same_weights(runs(name, **args).model, runs("ft").model)
    assert not torch.equal(  # and a non-zero weight does change the weights
        runs("l2sp").model.encoder.conv1.weight, runs("ft").model.encoder.conv1.weight
    )


def test_lp_ft_sets_the_task_head_to_the_probe_without_moving_the_rng(data):
    context = fresh_context(data)
    model, enc = context.model, context.encoder
    plugin = resolve("lp_ft")(context)[0]
    strategy = SimpleNamespace(experience=SimpleNamespace(task_label=1), model=model, device=CPU)
    rng = torch.random.get_rng_state()
    plugin.before_training_exp(strategy)
    assert torch.equal(torch.random.get_rng_state(), rng)
    head = model.heads["1"]
    # independently: the probe on the encoder's eval-transform features of task 1's train split
    train = data[1].train
    features = extract_features(model.encoder, Transformed(train, enc.eval_transform), CPU)
    labels = torch.tensor(train.targets)
    _, val = validation_split(len(train))
    mask = torch.zeros(len(train), dtype=torch.bool)
    mask[val] = True
    probe = linear_probe(features, labels, mask, features, labels, 4, PROBE.c_grid, PROBE.max_iter)
    with torch.no_grad():
        torch.testing.assert_close(
            head(features), F.normalize(features, dim=1) @ probe.weight.T + probe.bias
        )
    assert torch.equal(model.heads["0"].bias, torch.zeros(4))  # other heads untouched


@pytest.mark.parametrize(
    "name, args",
    [
        ("ft", {}),
        ("l2sp", {"anchor": "pretrained"}),
        ("ldifs", {"anchor": "pretrained"}),
        ("lwf", {}),
        ("ewc", {"lam": 5.0}),
        ("replay", {"mem_size": 8}),
    ],
)
def test_micro_batches_accumulate_the_gradient_of_the_whole_batch(name, args, data):
    """Task 1 trained alike; task 2's first step once on the whole batch (16 images, 16 + 8 with
    replay) and once in micro-batches of 5: same gradient, penalties included."""
    grads = []
    for micro in (None, 5):
        context = fresh_context(data)
        log = GradLog()
        trainer = Trainer(
            model=context.model, cfg=TRAIN, device=CPU, plugins=[*resolve(name, args)(context), log]
        )
        enc = context.encoder
        stream = build_stream(data, enc.train_transform, enc.eval_transform).train_stream
        trainer.train_task(stream[0], 1)
        trainer.cfg = dataclasses.replace(TRAIN, micro_batch=micro)
        first = len(log.grads)
        trainer.train_task(stream[1], 1)
        assert log.batches[first] > 5  # more than one micro-batch
        grads.append(log.grads[first])
    assert len(grads[0]) == len(grads[1]) > 0
    for full, accumulated in zip(*grads, strict=True):
        torch.testing.assert_close(accumulated, full, rtol=1e-4, atol=1e-6)


def test_ewc_importances_over_micro_batches_equal_those_of_whole_batches(data):
    """The importance pass uses the training batch (16) even with --micro-batch 5: same F."""
    context = fresh_context(data)
    enc = context.encoder
    experience = build_stream(data, enc.train_transform, enc.eval_transform).train_stream[0]
    dataset = experience.dataset.eval()
    optimizer = torch.optim.SGD(context.model.parameters(), lr=0.0)
    importances = []
    for micro in (None, 5):
        plugin = resolve("ewc", {})(dataclasses.replace(context, train=TRAIN))[0]
        plugin.micro_batch = micro
        imp = plugin.compute_importances(
            context.model, torch.nn.CrossEntropyLoss(), optimizer, dataset, CPU, 16
        )
        importances.append({k: v.data.clone() for k, v in imp.items()})
    assert importances[0].keys() == importances[1].keys()
    assert any(bool(v.abs().sum() > 0) for v in importances[0].values())
    for key, whole in importances[0].items():
        torch.testing.assert_close(importances[1][key], whole, rtol=1e-4, atol=1e-9)
