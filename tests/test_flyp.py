"""FLYP: the contrastive loss against a computation by hand, the prompts each image is paired
with, a two-task run (both towers train, the heads are the fine-tuned text tower's), the refusal
without a text tower, and a smoke run through the command line."""

import copy
import dataclasses
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from avalanche.training.plugins import SupervisedPlugin

from benchmark.errors import CFBenchError
from benchmark.model.text import TextTower
from benchmark.streams import build_stream
from benchmark.trainer import Trainer
from run_benchmark import main
from strategies import STRATEGIES, flyp, resolve
from strategies.common import cpu_state
from tasks.synthetic import synthetic_task
from tests.helpers.strategy_runs import TRAIN, fresh_context, train_two_tasks

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data():
    specs = [
        synthetic_task(f"flyp_{k}", seed=50 + k, num_classes=4, n_train=16, n_test=4)
        for k in range(2)
    ]
    return [spec.build(Path("."), False) for spec in specs]


def test_contrastive_loss_equals_a_computation_by_hand():
    images = [[3.0, 4.0], [0.0, 2.0], [1.0, 1.0]]
    texts = [[1.0, 0.0], [0.6, 0.8], [-1.0, 1.0]]
    scale = 2.5

    def unit(v):
        n = math.sqrt(sum(a * a for a in v))
        return [a / n for a in v]

    u, t = [unit(v) for v in images], [unit(v) for v in texts]
    z = [[scale * sum(a * b for a, b in zip(ui, tj, strict=True)) for tj in t] for ui in u]

    def ce(rows):  # mean over rows i of -log softmax(row i)[i]
        return sum(
            math.log(sum(math.exp(v) for v in row)) - row[i] for i, row in enumerate(rows)
        ) / len(rows)

    columns = [list(c) for c in zip(*z, strict=True)]
    expected = (ce(z) + ce(columns)) / 2
    got = flyp.contrastive_loss(torch.tensor(images), torch.tensor(texts), torch.tensor(scale))
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # bf16 inputs are computed in float32; swapping the towers gives the same symmetric loss
    swapped = flyp.contrastive_loss(torch.tensor(texts), torch.tensor(images), scale)
    assert swapped.dtype == torch.float32 and swapped.item() == pytest.approx(expected, rel=1e-6)
    assert flyp.contrastive_loss(torch.eye(3), torch.eye(3), 100.0).item() < 1e-6  # matched


def test_each_image_is_paired_with_a_prompt_of_its_class(data):
    """Every text feature is the full-context encode_text of one of the image's class prompts
    (the cut context and the deduplication change nothing), templates are drawn at random, and
    the loss's gradient reaches the text tower's embeddings and the logit scale."""
    context = fresh_context(data)
    (plugin,) = resolve("flyp")(context)
    task = data[1]
    labels = torch.tensor([0, 1, 1, 3, 2, 0, 1, 1])
    n_templates = len(task.templates)
    with torch.no_grad():
        tokens = plugin.tokenizer([t.format(c) for c in task.classnames for t in task.templates])
        every = plugin.text.encode_text(tokens).view(len(task.classnames), n_templates, -1)
    seen = set()
    for _ in range(6):
        with torch.no_grad():
            features = plugin.text_features(1, labels, CPU)
        for f, y in zip(features, labels.tolist(), strict=True):
            gaps = (every[y] - f).abs().amax(dim=1)
            assert gaps.min() < 1e-5
            seen.add((y, int(gaps.argmin())))
    assert {j for y, j in seen if y == 1} == set(range(n_templates))  # 24 draws of class 1
    images = torch.randn(len(labels), features.shape[1])
    texts = plugin.text_features(1, labels, CPU)
    flyp.contrastive_loss(images, texts, plugin.text.logit_scale.exp()).backward()
    for name in ("positional_embedding", "token_embedding.weight", "logit_scale"):
        grad = dict(plugin.text.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_flyp_trains_both_towers_and_rebuilds_every_head_from_the_text_tower(data):
    pretrained = fresh_context(data)
    text0 = cpu_state(pretrained.encoder.text.model)
    run = train_two_tasks("flyp", {}, data)
    (plugin,) = run.plugins
    trained = cpu_state(plugin.text)
    moved = [k for k in text0 if not torch.equal(trained[k], text0[k])]
    assert "logit_scale" in moved and len(moved) == len(text0)  # every text weight trained
    encoder = run.model.encoder.state_dict()
    assert sum(not torch.equal(v, run.pretrained[k]) for k, v in encoder.items()) > 0.9 * len(
        encoder
    )
    # the heads: exp(trained logit scale) * the fine-tuned tower's class weights, computed on a
    # frozen TextTower of the trained copy; the bias 0
    tower = TextTower(copy.deepcopy(plugin.text), plugin.tokenizer, 1.0)
    scale = math.exp(trained["logit_scale"].item())
    for t, d in enumerate(data):
        expected = scale * tower.class_weights(d.classnames, d.templates)
        head = run.model.heads[str(t)]
        torch.testing.assert_close(head.weight.detach(), expected, rtol=1e-5, atol=1e-6)
        assert torch.equal(head.bias.detach(), torch.zeros(len(d.classnames)))
    assert len(run.losses) >= 6 and all(math.isfinite(v) for v in run.losses)


class Check(SupervisedPlugin):
    """After FLYP's plugin: the step's loss against contrastive_loss on a fresh forward of the
    batch and encode_text (full context) of each image's one prompt."""

    def __init__(self, plugin, task):
        super().__init__()
        self.plugin, self.task, self.pairs = plugin, task, []

    def before_backward(self, strategy, **kwargs):
        text = self.plugin.text
        prompts = [self.task.templates[0].format(self.task.classnames[y]) for y in strategy.mb_y]
        with torch.no_grad():
            images = strategy.model.encoder(strategy.mb_x)
            texts = text.encode_text(self.plugin.tokenizer(prompts))
            expected = flyp.contrastive_loss(images, texts, text.logit_scale.exp())
        self.pairs.append((strategy.loss.item(), expected.item()))


def test_every_step_minimises_the_contrastive_loss_of_the_batch(data):
    """With one template per task the prompts are known: each step's loss is CLIP's loss of the
    batch's images against their class prompts, not the heads' cross-entropy."""
    one = [dataclasses.replace(d, templates=("a photo of {}.",)) for d in data]
    context = fresh_context(one)
    plugins = resolve("flyp")(context)
    check = Check(plugins[0], one[0])
    trainer = Trainer(model=context.model, cfg=TRAIN, device=CPU, plugins=[*plugins, check])
    enc = context.encoder
    stream = build_stream(one, enc.train_transform, enc.eval_transform).train_stream
    trainer.train_task(stream[0], 1)
    assert len(check.pairs) >= 3
    for got, expected in check.pairs:
        assert got == pytest.approx(expected, rel=1e-5)
    assert check.pairs[-1][0] < check.pairs[0][0]  # it learns (lr 1e-3)


def test_the_text_group_leaves_the_optimiser_with_its_task(data):
    context = fresh_context(data)
    (plugin,) = resolve("flyp")(context)
    optimizer = torch.optim.AdamW(context.model.parameters(), lr=1e-3)
    strategy = SimpleNamespace(optimizer=optimizer, model=context.model)
    plugin.before_training_exp(strategy)
    assert len(optimizer.param_groups) == 2
    assert {id(p) for p in optimizer.param_groups[1]["params"]} == {
        id(p) for p in plugin.text.parameters()
    }
    plugin.after_training_exp(strategy)
    assert len(optimizer.param_groups) == 1 and plugin.group is None


def test_flyp_refuses_a_model_without_a_text_tower_and_micro_batches(data, tmp_path, capsys):
    assert STRATEGIES["flyp"].needs_text_tower
    context = SimpleNamespace(encoder=SimpleNamespace(text=None), train=TRAIN)
    with pytest.raises(CFBenchError, match="strategy flyp needs a model with a text tower"):
        flyp.build(context, flyp.Config())
    split = fresh_context(data, train=dataclasses.replace(TRAIN, micro_batch=4))
    with pytest.raises(CFBenchError, match="flyp cannot use --micro-batch"):
        resolve("flyp")(split)
    base = ["--sequence", "smoke", "--model", "resnet20-cifar", "--out", str(tmp_path)]
    assert main([*base, "--strategy", "flyp"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: strategy flyp needs a model with a text tower and resnet20-cifar has none; use "
        "a CLIP model (e.g. --model ViT-B-32) or choose another strategy"
    ]
    assert not tmp_path.joinpath("smoke").exists()


def test_a_smoke_run_trains_and_records_the_text_towers_heads(tmp_path):
    out = ["--sequence", "smoke", "--out", str(tmp_path), "--seed", "0"]
    assert main([*out, "--strategy", "flyp"]) == 0
    folder = tmp_path / "smoke" / "flyp" / "seed0"
    config = json.loads((folder / "config.json").read_text())
    assert config["strategy"] == "flyp" and config["strategy_config"] == {}
    records = pd.read_csv(folder / "records.csv")
    heads = records[records.kind == "head"]
    assert set(heads.stage) == {0, 1, 2, 3} and heads.accuracy.between(0, 100).all()
    # zs: the pretrained text tower's heads on the current encoder; head: the fine-tuned text
    # tower's. Equal before training (the heads start zero-shot), apart after it
    zs = records[records.kind == "zs"].set_index(["stage", "dataset"]).accuracy
    head = heads.set_index(["stage", "dataset"]).accuracy
    assert head.loc[0].equals(zs.loc[0, ["synth_a", "synth_b", "synth_c"]])
    for stage, task in enumerate(["synth_a", "synth_b", "synth_c"], start=1):
        # measured: 14.1 -> 71.6, 14.7 -> 69.7, 10.3 -> 57.5 (% of the task's test images)
        assert head.loc[stage, task] > head.loc[0, task] + 20, (stage, task)
        assert head.loc[stage, task] != zs.loc[stage, task]
    assert (folder / "metrics.json").exists()
