"""LDIFS: the taps (ViT and CNN), the feature distance against a loop-by-loop reference, and the
plugin's loss term."""

import copy
from types import SimpleNamespace

import pytest
import torch

from benchmark.errors import CFBenchError
from benchmark.model.encoder import vit_taps
from benchmark.model.heads import CosineHead, MultiTaskClassifier
from benchmark.strategy_api import StrategyContext
from strategies import resolve
from strategies.taps import TapRecorder
from tests.helpers.strategy_runs import CPU, PROBE, TRAIN, fresh_context, mini_tasks


@pytest.fixture(scope="module")
def data():
    return mini_tasks(2)


def manual_vit_pass(visual, x):
    """open_clip's VisionTransformer._embeds then the blocks, written out by hand."""
    h = visual.conv1(x)
    h = h.reshape(h.shape[0], h.shape[1], -1).permute(0, 2, 1)  # [B, grid^2, width]
    cls = visual.class_embedding.reshape(1, 1, -1).expand(h.shape[0], -1, -1)
    h = torch.cat([cls, h], dim=1) + visual.positional_embedding
    h = visual.ln_pre(h)
    outputs = [h]
    for block in visual.transformer.resblocks:
        h = block(h)
        outputs.append(h)
    return outputs  # ln_pre, block 1, ..., block L


def fake_vit(blocks):
    """Just the attributes vit_taps reads: ln_pre and transformer.resblocks."""
    visual = torch.nn.Module()
    visual.ln_pre = torch.nn.LayerNorm(4)
    visual.transformer = torch.nn.Module()
    visual.transformer.resblocks = torch.nn.ModuleList(torch.nn.Linear(4, 4) for _ in range(blocks))
    return visual


@pytest.mark.parametrize(
    "blocks, expected",
    [
        (12, [3, 6, 9, 12]),
        (8, [2, 4, 6, 8]),
        (24, [6, 12, 18, 24]),
        (10, [2, 4, 6, 8, 10]),
        (6, [1, 2, 3, 4, 5, 6]),
        (2, [1, 2]),
    ],
)
def test_vit_taps_are_ln_pre_and_every_quarter_of_the_blocks(blocks, expected):
    # ViT-B/32 has 12 blocks: ln_pre, blocks 3, 6, 9, 12 (1-based); fewer than 8 blocks: all;
    # L // 4 = 2 for 10 blocks, so five of them
    visual = fake_vit(blocks)
    taps = vit_taps(visual)
    assert taps[0] is visual.ln_pre
    assert [id(t) for t in taps[1:]] == [id(visual.transformer.resblocks[i - 1]) for i in expected]


def test_ldifs_taps_record_ln_pre_and_the_blocks_of_the_tiny_vit(tiny_encoder):
    visual = tiny_encoder.module
    blocks = len(visual.transformer.resblocks)
    assert blocks == 4  # benchmark/model_configs/cfbench-tiny-vit.json: every block is a tap
    x = torch.randn(3, 3, 32, 32)
    recorder = TapRecorder(visual, tiny_encoder.taps)
    try:
        with torch.no_grad():
            visual(x)  # outside capture(): nothing recorded
            assert recorder.inputs == [] and all(o == [] for o in recorder.outputs)
            with recorder.capture():
                visual(x)
            manual = manual_vit_pass(visual, x)
    finally:
        recorder.remove()
    expected = manual  # ln_pre, blocks 1, 2, 3, 4
    taps = recorder.taps()
    assert len(taps) == len(expected) == 5
    for got, want in zip(taps, expected, strict=True):
        assert got.shape == (3, 1 + (32 // 8) ** 2, 64)  # batch-first [B, T, D]
        torch.testing.assert_close(got, want)
    assert torch.equal(recorder.inputs[0], x)


def loop_ldifs(student, frozen):
    """The LDIFS distance (token-axis normalisation, mean reduction) with explicit loops in
    float64: for every tap, sample and channel, scale the channel's column over the T tokens to
    unit length on both sides and add the squared differences; divide by B * T * D per tap; then
    average over the taps."""
    per_tap = []
    for f, r in zip(student, frozen, strict=True):
        f, r = f.double(), r.double()
        b, t, d = f.shape
        total = 0.0
        for i in range(b):
            for k in range(d):
                u, v = f[i, :, k], r[i, :, k]
                u, v = u / u.square().sum().sqrt(), v / v.square().sum().sqrt()
                total += float((u - v).square().sum())
        per_tap.append(total / (b * t * d))
    return sum(per_tap) / len(per_tap)


def test_ldifs_plugin_adds_lambda_times_the_distance(data):
    context = fresh_context(data)
    encoder = context.model.encoder
    plugin = resolve("ldifs", {"lam": 3.0})(context)[0]
    plugin.before_training_exp(SimpleNamespace())  # takes the anchor: a copy of this encoder
    x = torch.randn(4, 3, 32, 32)

    def added_loss():
        plugin.before_forward(None)
        encoder(x)
        plugin.after_forward(None)
        strategy = SimpleNamespace(loss=torch.zeros(()))
        plugin.before_backward(strategy)
        return strategy.loss

    assert len(encoder.transformer.resblocks) == 4  # the taps: ln_pre and all 4 blocks
    encoder.eval()  # as the reference: MultiheadAttention's eval fast path rounds differently
    with torch.no_grad():
        assert added_loss().item() == 0.0  # the model equals its reference
        reference = copy.deepcopy(encoder)
        encoder.transformer.resblocks[1].mlp.c_fc.weight.add_(0.05)
        student = manual_vit_pass(encoder, x)
        frozen = manual_vit_pass(reference, x)
        expected = 3.0 * loop_ldifs(student, frozen)
        got = added_loss()
    assert got.item() > 0
    assert got.item() == pytest.approx(expected, rel=1e-4)
    anchor = list(plugin.anchor.module.parameters())
    assert not any(p.requires_grad for p in anchor)  # frozen, and outside the trained model:
    assert not any(p is q for p in context.model.parameters() for q in anchor)


def test_ldifs_works_for_a_cnn_with_batch_norm_that_declares_taps():
    encoder = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1),
        torch.nn.BatchNorm2d(16),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    )
    model = MultiTaskClassifier(encoder, [CosineHead(torch.randn(3, 16))])
    taps = SimpleNamespace(taps=[encoder[2], encoder[5]])  # feature maps [B, C, H, W]
    context = StrategyContext(model, taps, CPU, TRAIN, PROBE, [])
    plugin = resolve("ldifs")(context)[0]
    plugin.before_training_exp(SimpleNamespace())
    reference = plugin.anchor.module
    running = reference[1].running_mean.clone()
    x = torch.randn(6, 3, 8, 8)
    model.train()

    def added_loss():
        plugin.before_forward(None)
        model(x, 0)
        plugin.after_forward(None)
        strategy = SimpleNamespace(loss=torch.zeros(()))
        plugin.before_backward(strategy)
        return strategy.loss

    assert added_loss().item() == 0.0  # train-mode student, batch statistics on both sides
    assert torch.equal(reference[1].running_mean, running)  # the reference never drifts
    with torch.no_grad():  # running statistics that differ from the batch's, equal on both sides
        for bn in (encoder[1], reference[1]):
            bn.running_mean.fill_(0.5)
            bn.running_var.fill_(2.0)
    encoder[1].eval()  # --batchnorm frozen: the student's first BN uses running statistics
    assert added_loss().item() == 0.0  # the reference mirrors it module by module
    encoder[1].train()
    with torch.no_grad():
        encoder[0].weight.mul_(1.5)
    assert added_loss().item() > 0


def test_ldifs_refuses_an_encoder_without_taps(data):
    context = fresh_context(data)
    context.encoder.taps = []
    with pytest.raises(CFBenchError, match="declares taps"):
        resolve("ldifs")(context)
