"""ZSCL (strategies/zscl.py): its losses against the formulas written out with numpy, the weight
ensemble against the mean computed directly, the image-only mode without a text tower, the
reference batches, the choice of reference data and the refusal of bad options. Training two
tasks and resuming bit for bit is tests/test_strategy_checkpoints.py's registry-parametrised
test."""

import copy
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from benchmark.errors import CFBenchError, DatasetMissingError
from benchmark.model.heads import CosineHead, MultiTaskClassifier
from benchmark.probe.features import Transformed
from benchmark.strategy_api import StrategyContext
from strategies import resolve
from strategies.penalties import distillation_kl, feature_mse, weight_average, zscl_distillation
from strategies.zscl import Config, ReferenceBatches
from tasks.synthetic import synthetic_task
from tests.helpers.strategy_runs import PROBE, TRAIN

CPU = torch.device("cpu")


# -- the pure functions ---------------------------------------------------------------------------
def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _kl_rows(teacher, student, t):
    """T^2 * mean over rows of sum_k p_k log(p_k / q_k), p = softmax(teacher / T)."""
    p, q = _softmax(teacher / t), _softmax(student / t)
    return float(np.mean(np.sum(p * np.log(p / q), axis=1)) * t**2)


def test_distillation_is_the_kl_by_hand_and_zero_at_the_teacher():
    # p = (1/2, 1/2), q = (3/4, 1/4): KL = 1/2 ln(2/3) + 1/2 ln(2) = 1/2 ln(4/3)
    teacher, student = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])
    assert distillation_kl(teacher, student, 1.0).item() == pytest.approx(0.5 * math.log(4 / 3))
    # T = 2: q = softmax(ln(3)/2, 0) = (sqrt 3, 1) / (sqrt 3 + 1), and the T^2 = 4 factor
    q = np.array([math.sqrt(3), 1.0]) / (math.sqrt(3) + 1)
    expected = 4 * (0.5 * math.log(0.5 / q[0]) + 0.5 * math.log(0.5 / q[1]))
    assert distillation_kl(teacher, student, 2.0).item() == pytest.approx(expected, rel=1e-6)
    z = torch.randn(3, 5)
    assert distillation_kl(z, z.clone(), 2.0).item() == 0.0


def test_distillation_has_the_official_cross_entropys_gradient():
    """The official code's loss is CE(softmax(t/T), s/T) * T^2 = KL + T^2 * H(teacher)."""
    g = torch.Generator().manual_seed(1)
    teacher, student = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    s1, s2 = student.clone().requires_grad_(), student.clone().requires_grad_()
    kl = distillation_kl(teacher, s1, 2.0)
    p = torch.softmax(teacher / 2.0, dim=1)
    ce = torch.nn.functional.cross_entropy(s2 / 2.0, p) * 4.0
    entropy = -(p * p.log()).sum(dim=1).mean() * 4.0
    assert ce.item() == pytest.approx(kl.item() + entropy.item(), rel=1e-5)
    kl.backward()
    ce.backward()
    torch.testing.assert_close(s1.grad, s2.grad)


def _direct_zscl(student, teacher, texts, scale, t):
    """Both terms with numpy: rows normalised, logits = scale * image . text, KL both ways."""
    s, r, w = (x.numpy().astype(np.float64) for x in (student, teacher, texts))
    s, r, w = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (s, r, w))
    z, z0 = scale * s @ w.T, scale * r @ w.T
    return _kl_rows(z0, z, t), _kl_rows(z0.T, z.T, t)


def test_zscl_distillation_matches_the_formula():
    g = torch.Generator().manual_seed(2)
    student, teacher = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    texts = torch.randn(3, 8, generator=g) * 4  # not unit rows: normalised inside
    image, text = zscl_distillation(student, teacher, texts, 10.0, 2.0)
    expected = _direct_zscl(student, teacher, texts, 10.0, 2.0)
    assert image.item() == pytest.approx(expected[0], rel=1e-5)
    assert text.item() == pytest.approx(expected[1], rel=1e-5)
    assert image.item() != pytest.approx(text.item())  # the two directions differ
    zero = zscl_distillation(student, student * 3.0, texts, 10.0, 2.0)  # same directions
    assert [v.item() for v in zero] == pytest.approx([0.0, 0.0], abs=1e-6)


def test_feature_mse_by_hand():
    # normalised: (1, 0) and (0.6, 0.8) vs (0, 1) twice: ((1 + 1) + (0.36 + 0.04)) / 4 = 0.6
    student = torch.tensor([[2.0, 0.0], [3.0, 4.0]])
    teacher = torch.tensor([[0.0, 5.0], [0.0, 1.0]])
    assert feature_mse(student, teacher).item() == pytest.approx(0.6)


def test_weight_average_after_k_updates_is_the_mean():
    g = torch.Generator().manual_seed(3)
    models = [
        {"w": torch.randn(4, 3, generator=g), "still": torch.full((2,), 0.1), "n": torch.tensor(k)}
        for k in range(5)
    ]
    average = dict(models[0])
    for k, model in enumerate(models[1:], start=1):
        average = weight_average(average, model, k)
    direct = torch.stack([m["w"].double() for m in models]).mean(dim=0)
    torch.testing.assert_close(average["w"].double(), direct, rtol=1e-6, atol=1e-7)
    assert torch.equal(average["still"], torch.full((2,), 0.1))  # 5 equal values stay bit exact
    assert average["n"].item() == 4  # integer entries: the latest
    with pytest.raises(ValueError, match="count"):
        weight_average(average, models[0], 0)


def test_reference_batches_cover_every_pass_once_and_repeat():
    subset = torch.tensor([10, 11, 12, 13, 14])
    batches = ReferenceBatches(subset, 3)
    drawn = torch.cat([batches.indices(s) for s in range(5)])  # 15 = three passes of 5
    for p in range(3):
        assert sorted(drawn[5 * p : 5 * p + 5].tolist()) == subset.tolist()
    assert drawn[:5].tolist() != drawn[5:10].tolist()  # each pass in its own order
    again = ReferenceBatches(subset.clone(), 3)
    assert torch.equal(again.indices(3), drawn[9:12])  # a pure function of the step


# -- the plugin -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data():
    specs = [
        synthetic_task(f"zs_{k}", seed=40 + k, num_classes=3, n_train=8, n_test=2) for k in range(2)
    ]
    return [spec.build(Path("."), False) for spec in specs]


@pytest.fixture(scope="module")
def reference():
    return synthetic_task("zs_ref", seed=50, num_classes=4, n_train=10, n_test=2).build(
        Path("."), False
    )


def make_context(tiny_encoder, data, reference, text=True, controls=()):
    """A fresh model (a copy of the tiny ViT) and a loader that knows the reference dataset."""
    torch.manual_seed(0)
    module = copy.deepcopy(tiny_encoder.module)
    tower = tiny_encoder.text
    heads = [
        CosineHead(tower.class_weights(d.classnames, d.templates), scale=tower.logit_scale)
        for d in data
    ]
    encoder = SimpleNamespace(
        text=tower if text else None, eval_transform=tiny_encoder.eval_transform
    )

    def load(name, **kwargs):
        if name == reference.name:
            return reference
        raise DatasetMissingError(f"no {name}")

    model = MultiTaskClassifier(module, heads)
    return StrategyContext(
        model, encoder, CPU, TRAIN, PROBE, list(data), controls=list(controls), load_dataset=load
    )


def added_loss(plugin, context):
    """What the plugin adds to the loss of one training step (a batch of 4 images)."""
    strategy = SimpleNamespace(mbatch=[torch.zeros(4)], loss=torch.zeros(()), device=CPU)
    plugin.before_training_iteration(strategy)
    plugin.before_backward(strategy)
    return strategy.loss


def reference_features(plugin, context, step, reference):
    index = plugin.batches.indices(step).tolist()
    images = Transformed(reference.train, context.encoder.eval_transform)
    x = torch.stack([images[i][0] for i in index])
    with torch.no_grad():
        return context.model.encoder(x), plugin.teacher(x)


def nudge(module):
    """Move the final projection (the features' directions) by a fixed random amount."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        module.proj.add_(
            0.5 * module.proj.abs().mean() * torch.randn(module.proj.shape, generator=g)
        )


def test_plugin_adds_both_distillation_terms_on_the_reference_batch(
    tiny_encoder, data, reference, capsys
):
    context = make_context(tiny_encoder, data, reference)
    args = {"ref_dataset": reference.name, "ref_batch": 6, "l2": 0.0}
    (plugin,) = resolve("zscl", args)(context)
    out = capsys.readouterr().out
    assert out.count("zscl: reference zs_ref") == 1 and "logits over its 4 class prompts" in out
    assert plugin.details["feature_loss"] == 0.0  # official default with a text tower
    context.model.eval()  # as the teacher: the same arithmetic on both sides
    plugin.before_training_exp(None)
    # the student is the teacher (up to the rounding of attention with and without gradients)
    assert added_loss(plugin, context).item() == pytest.approx(0.0, abs=1e-6)
    nudge(context.model.encoder)
    f, f0 = reference_features(plugin, context, 1, reference)
    texts = tiny_encoder.text.class_weights(reference.classnames, reference.templates)
    image, text = _direct_zscl(f, f0, texts, tiny_encoder.text.logit_scale, 2.0)
    got = added_loss(plugin, context)
    assert min(image, text) > 1e-3 and got.item() == pytest.approx(image + text, rel=1e-4)
    assert plugin.step == 2


def test_without_a_text_tower_only_the_feature_term_is_used(tiny_encoder, data, reference, capsys):
    context = make_context(tiny_encoder, data, reference, text=False)
    (plugin,) = resolve("zscl", {"ref_dataset": reference.name, "l2": 0.5})(context)
    assert "image features only (no text tower" in capsys.readouterr().out
    assert plugin.texts is None and plugin.feature_weight == 1.0
    assert "image features only" in plugin.config_entries()["zscl"]["terms"]
    assert plugin.batches.size == TRAIN.batch_size  # the training batch by default
    context.model.eval()
    plugin.before_training_exp(None)
    start = {k: v.clone() for k, v in context.model.state_dict().items()}
    nudge(context.model.encoder)
    f, f0 = reference_features(plugin, context, 0, reference)
    s = torch.nn.functional.normalize(f, dim=1).numpy().astype(np.float64)
    r = torch.nn.functional.normalize(f0, dim=1).numpy().astype(np.float64)
    mse = float(np.mean((s - r) ** 2))
    now = context.model.state_dict()
    l2 = sum(float(((now[k] - start[k]).double() ** 2).sum()) for k in start)
    assert l2 == pytest.approx(float(((now["encoder.proj"] - start["encoder.proj"]) ** 2).sum()))
    got = added_loss(plugin, context).item()
    assert mse > 1e-3 and got == pytest.approx(mse + 0.5 * l2, rel=1e-4)


def test_weight_ensemble_averages_the_start_and_every_avg_freq_th_step(
    tiny_encoder, data, reference
):
    context = make_context(tiny_encoder, data, reference)
    (plugin,) = resolve("zscl", {"ref_dataset": reference.name, "avg_freq": 2})(context)
    model = context.model
    plugin.before_training_exp(None)
    states = [{k: v.clone() for k, v in model.state_dict().items()}]  # the task's start
    for step in range(5):  # optimiser steps 0..4: snapshots after steps 0, 2 and 4
        with torch.no_grad():
            for p in model.encoder.parameters():
                p.add_(0.01 * (step + 1))
            model.heads["0"].weight.mul_(1.1)
        if step % 2 == 0:
            states.append({k: v.clone() for k, v in model.state_dict().items()})
        plugin.after_training_iteration(SimpleNamespace())
    assert plugin.count == 4
    mid_task = plugin.state_dict()
    assert mid_task["average"] is not None and mid_task["iteration"] == 5
    plugin.after_training_exp(None)
    final = model.state_dict()
    for key in ("encoder.conv1.weight", "heads.0.weight"):
        direct = torch.stack([s[key].double() for s in states]).mean(dim=0)
        torch.testing.assert_close(final[key].double(), direct, rtol=1e-6, atol=1e-6)
    assert torch.equal(final["heads.1.weight"], states[0]["heads.1.weight"])  # untrained head
    assert plugin.state_dict()["average"] is None  # between tasks: nothing but the counters


def test_auto_reference_skips_the_runs_tasks_and_controls(tiny_encoder, data, reference, capsys):
    context = make_context(tiny_encoder, data, reference)  # nothing but zs_ref on disk
    (plugin,) = resolve("zscl")(make_context(tiny_encoder, data, reference, controls=data[:1]))
    assert plugin.details["reference"] == data[0].name  # no candidate: the first control
    assert "leaks into its evaluation" in plugin.details["chosen"]
    context.load_dataset = lambda name, **kwargs: synthetic_task(name, seed=9).build(Path("."), 0)
    (plugin,) = resolve("zscl")(context)  # everything on disk: the paper's ImageNet comes first
    assert plugin.details["reference"] == "imagenet"
    context.controls = [SimpleNamespace(name="imagenet")]
    (plugin,) = resolve("zscl")(context)
    assert plugin.details["reference"] == "npz:usps"  # a control is never taken when avoidable
    context.controls = []
    context.load_dataset = lambda name, **kwargs: (_ for _ in ()).throw(DatasetMissingError(name))
    with pytest.raises(CFBenchError, match="no reference dataset for ref_dataset=auto"):
        resolve("zscl")(context)
    capsys.readouterr()


@pytest.mark.parametrize(
    "args, message",
    [
        ({"temperature": 0}, "temperature must be a finite number > 0"),
        ({"avg_freq": 0}, "avg_freq must be >= 1"),
        ({"ref_images": 0}, "ref_images must be >= 1"),
        ({"image_loss": -1}, "image_loss must be a finite number >= 0"),
        ({"we": "yes"}, "we="),
    ],
)
def test_a_bad_option_is_refused_in_one_line(args, message):
    with pytest.raises(CFBenchError, match=message) as error:
        resolve("zscl", args)
    assert "\n" not in str(error.value)


def test_an_unknown_reference_dataset_is_refused_in_one_line(tiny_encoder, data, reference):
    context = make_context(tiny_encoder, data, reference)
    context.load_dataset = None  # the registry itself: an unknown name
    with pytest.raises(CFBenchError, match="unknown dataset 'nosuch'") as error:
        resolve("zscl", {"ref_dataset": "nosuch"})(context)
    assert "\n" not in str(error.value)
    assert Config().ref_dataset == "auto" and Config().avg_freq == 100


def test_micro_batches_give_the_gradient_of_the_whole_step(tiny_encoder, data, reference):
    """The reference term is added once per optimiser step (on the first micro-batch, divided
    by its share): the first step's gradient is the same with --micro-batch 3 as without."""
    import dataclasses

    from benchmark.streams import build_stream
    from benchmark.trainer import Trainer
    from tests.helpers.strategy_runs import GradLog

    grads = []
    for micro in (None, 3):
        context = make_context(tiny_encoder, data, reference)
        train = dataclasses.replace(TRAIN, micro_batch=micro)
        args = {"ref_dataset": reference.name, "ref_batch": 5, "feature_loss": 1.0}
        log = GradLog()
        plugins = [*resolve("zscl", args)(context), log]
        trainer = Trainer(model=context.model, cfg=train, device=CPU, plugins=plugins)
        enc = tiny_encoder
        stream = build_stream(data, enc.train_transform, enc.eval_transform).train_stream
        trainer.train_task(stream[0], 1)
        assert log.batches[0] > 3  # more than one micro-batch
        grads.append(log.grads[0])
    assert len(grads[0]) == len(grads[1]) > 0
    for full, accumulated in zip(*grads, strict=True):
        torch.testing.assert_close(accumulated, full, rtol=1e-4, atol=1e-6)
