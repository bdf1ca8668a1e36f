"""LoRA and BitFit: which parameters train (counted by hand), what the optimiser sees, the merge of
the LoRA adapter after each task, resuming, and the counts config.json records."""

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from avalanche.training.plugins import SupervisedPlugin
from torch import nn

from benchmark.checkpoint.state import Checkpoint, capture, restore
from benchmark.errors import CFBenchError
from benchmark.model.encoder import build_encoder
from benchmark.streams import build_stream
from benchmark.trainer import Trainer
from run_benchmark import main
from strategies import lora, resolve
from strategies.common import cpu_state
from strategies.trainable import (
    bitfit_parameters,
    count,
    is_bias,
    layer_kinds,
    lora_count,
    lora_layer_count,
    lora_targets,
)
from tasks.synthetic import synthetic_task
from tests.helpers.strategy_runs import TRAIN, LossLog, fresh_context, through_checkpoint

CPU = torch.device("cpu")
WD = dataclasses.replace(TRAIN, weight_decay=0.1)  # decay must not reach frozen weights either


@pytest.fixture(scope="module")
def data():
    specs = [
        synthetic_task(f"peft_{k}", seed=40 + k, num_classes=4, n_train=16, n_test=4)
        for k in range(3)
    ]
    return [spec.build(Path("."), False) for spec in specs]


@pytest.fixture(scope="module")
def resnet():
    return build_encoder("resnet20-cifar", "none").module


def lora_names(module):
    return [n for n, _ in module.named_parameters() if "lora_" in n]


# -- counts by hand -------------------------------------------------------------------------------
def test_lora_counts_by_hand(tiny_encoder, resnet):
    # Linear(in, out): r (in + out); Conv2d(in, out, k x k): r (in k^2 + out); MHA(D): r 4D + r 2D
    assert lora_layer_count(nn.Linear(5, 7), 3) == 3 * 12
    assert lora_layer_count(nn.Conv2d(3, 16, 3), 2) == 2 * (27 + 16)
    assert lora_layer_count(nn.Conv2d(4, 6, (1, 5)), 1) == 4 * 5 + 6
    assert lora_layer_count(nn.MultiheadAttention(64, 2), 8) == 8 * 256 + 8 * 128
    with pytest.raises(ValueError, match="grouped"):
        lora_layer_count(nn.Conv2d(4, 4, 3, groups=2), 2)
    # tiny ViT (width 64, MLP 256, 4 blocks), r = 8: attn 3072, c_fc 2560, c_proj 2560 per block
    visual = tiny_encoder.module
    targets = lora_targets(visual)
    assert layer_kinds(targets) == ["attn", "c_fc", "c_proj"] and len(targets) == 12
    assert targets[:3] == [
        "transformer.resblocks.0.attn",
        "transformer.resblocks.0.mlp.c_fc",
        "transformer.resblocks.0.mlp.c_proj",
    ]
    assert lora_count(visual, targets, 8) == 4 * (3072 + 2560 + 2560) == 32768
    # ResNet-20, r = 8: stem 3->16 (344), six 16->16 (1280), 16->32 (1408), five 32->32 (2560),
    # 32->64 (2816), five 64->64 (5120); no shortcut convolutions (option A)
    targets = lora_targets(resnet)
    assert len(targets) == 19 and layer_kinds(targets) == ["conv1", "conv2"]
    assert lora_count(resnet, targets, 8) == 344 + 6 * 1280 + 1408 + 5 * 2560 + 2816 + 5 * 5120
    assert lora_count(resnet, targets, 8) == 50648


def test_lora_targets_match_as_peft_does_and_refuse_what_would_train_nothing(tiny_encoder):
    visual = tiny_encoder.module
    assert lora_targets(visual, ["c_fc"]) == [
        f"transformer.resblocks.{i}.mlp.c_fc" for i in range(4)
    ]
    assert lora_targets(visual, ["resblocks.2.mlp.c_proj", "conv1"]) == [
        "conv1",
        "transformer.resblocks.2.mlp.c_proj",
    ]
    with pytest.raises(ValueError, match="out_proj of an nn.MultiheadAttention.*target the atten"):
        lora_targets(visual, ["out_proj"])
    with pytest.raises(ValueError, match="'ln_1' matches no Linear, Conv2d or MultiheadAtt"):
        lora_targets(visual, ["ln_1"])


def test_bitfit_parameters_and_counts_by_hand(tiny_encoder, resnet):
    assert [
        is_bias(n) for n in ("bias", "a.in_proj_bias", "attn.bias_k", "a.weight", "unbiased")
    ] == [True, True, True, False, False]
    visual = tiny_encoder.module
    # per block: ln_1 64, in_proj 192, out_proj 64, ln_2 64, c_fc 256, c_proj 64 = 704; ln_pre and
    # ln_post 64 each; the patch embedding has no bias
    biases = bitfit_parameters(visual)
    assert count(visual, biases) == 4 * 704 + 2 * 64 == 2944
    assert "transformer.resblocks.0.attn.in_proj_bias" in biases
    assert not any(n.endswith("weight") for n in biases)
    norms = bitfit_parameters(visual, norms=True)
    assert count(visual, norms) == 2944 + (4 * 2 + 2) * 64 == 3584
    assert set(norms) - set(biases) == {
        n for n in dict(visual.named_parameters()) if "ln_" in n and n.endswith("weight")
    }
    # ResNet-20: bias-free convolutions; 19 batch norms of 16 (7), 32 (6) and 64 (6) channels
    assert count(resnet, bitfit_parameters(resnet)) == 7 * 16 + 6 * 32 + 6 * 64 == 688
    assert count(resnet, bitfit_parameters(resnet, norms=True)) == 2 * 688


def test_configs_refuse_bad_values():
    for bad in (
        {"rank": 0},
        {"alpha": 0.0},
        {"alpha": float("inf")},
        {"dropout": 1.0},
        {"target_modules": "c_fc,,c_proj"},
    ):
        with pytest.raises(CFBenchError, match="bad strategy argument"):
            resolve("lora", bad)
    with pytest.raises(CFBenchError, match="is not bool"):
        resolve("bitfit", {"norms": "yes"})
    with pytest.raises(CFBenchError, match="is not bool"):
        resolve("lora", {"dora": "yes"})
    with pytest.raises(ValueError, match="dora must be true or false"):
        lora.Config(dora=1)
    assert lora.Config(target_modules=" c_fc, c_proj").keys() == ["c_fc", "c_proj"]
    assert lora.Config().keys() is None


def test_lora_refuses_a_target_that_would_train_nothing(data):
    with pytest.raises(CFBenchError, match="lora: 'out_proj' is the out_proj"):
        resolve("lora", {"target_modules": "out_proj,c_fc"})(fresh_context(data))


# -- the LoRA plugin ------------------------------------------------------------------------------
def test_a_fresh_adapter_leaves_the_encoder_as_it_was_and_only_it_and_the_heads_get_gradients(data):
    context = fresh_context(data)
    model, encoder = context.model, context.model.encoder
    plugin = resolve("lora", {})(context)[0]
    x = torch.randn(3, 3, 32, 32)
    model.train()
    before = encoder(x).detach()
    plugin.inject()
    assert torch.equal(encoder(x), before)  # B = 0: W0 + (alpha / r) B A = W0 exactly
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    adapters = {f"encoder.{n}" for n in lora_names(encoder)}
    assert trainable == adapters | {n for n, _ in model.named_parameters() if n.startswith("heads")}
    assert sum(p.numel() for n, p in encoder.named_parameters() if "lora_" in n) == 32768
    assert plugin.config_entries()["trainable_encoder_params"] == 32768
    model(x, 1).sum().backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == adapters | {"heads.1.weight", "heads.1.bias"}
    # every adapter's B gets a gradient (A's is 0 while B = 0), the MHA's out_proj one included
    grads = {n: p.grad.abs().sum().item() for n, p in model.named_parameters() if "lora_B" in n}
    assert len(grads) == 16 and all(g > 0 for g in grads.values())


@pytest.mark.parametrize("arch", ["vit", "resnet"])
def test_dora_starts_at_the_encoder_and_counts_its_magnitudes(arch, data, resnet):
    """One magnitude per output row of every adapted weight, counted by hand: tiny ViT blocks of
    in_proj 192 + out_proj 64 + c_fc 256 + c_proj 64 rows; the ResNet-20's convolutions of 16
    (7), 32 (6) and 64 (6) output channels. A fresh DoRA adapter leaves the encoder's outputs
    bit for bit (m = ||W0||_c, B = 0), and the magnitudes are trainable parameters."""
    if arch == "vit":
        context = fresh_context(data)
        encoder, lora_params, magnitudes = context.model.encoder, 32768, 4 * (192 + 64 + 256 + 64)
    else:
        encoder, lora_params, magnitudes = resnet, 50648, 7 * 16 + 6 * 32 + 6 * 64
        context = SimpleNamespace(
            model=SimpleNamespace(encoder=resnet, heads=nn.ModuleList()), device=CPU
        )
    plugin = lora.build(context, lora.Config(dora=True))[0]
    assert plugin.config_entries()["trainable_encoder_params"] == lora_params + magnitudes
    x = torch.randn(3, 3, 32, 32)
    encoder.eval()
    with torch.no_grad():
        before = encoder(x)
    plugin.inject()
    trainable = {n: p.numel() for n, p in encoder.named_parameters() if p.requires_grad}
    assert sum(trainable.values()) == lora_params + magnitudes
    assert sum(v for n, v in trainable.items() if "magnitude" in n) == magnitudes
    with torch.no_grad():
        assert torch.equal(encoder(x), before)
    plugin.merge()
    assert all(p.requires_grad for p in encoder.parameters()) and not lora_names(encoder)


def randomise_adapters(encoder):
    with torch.no_grad():
        for name, p in encoder.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)


def test_the_merged_encoder_equals_the_adapted_one_with_the_plain_names(data):
    context = fresh_context(data)
    encoder = context.model.encoder
    plain = cpu_state(encoder)
    keys = list(encoder.state_dict())
    params = [n for n, _ in encoder.named_parameters()]
    plugin = resolve("lora", {"rank": 4, "alpha": 8.0})(context)[0]
    plugin.inject()
    randomise_adapters(encoder)
    x = torch.randn(5, 3, 32, 32)
    encoder.eval()
    with torch.no_grad():
        adapted = encoder(x)
        fc = encoder.transformer.resblocks[1].mlp.c_fc
        delta = 2.0 * fc.lora_B["default"].weight @ fc.lora_A["default"].weight  # alpha / r = 2
    plugin.merge()
    assert list(encoder.state_dict()) == keys  # names and order of the plain encoder
    assert [n for n, _ in encoder.named_parameters()] == params
    assert all(p.requires_grad for p in encoder.parameters())  # as it was before the task
    assert not hasattr(encoder, "peft_config") and not lora_names(encoder)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), adapted, rtol=1e-5, atol=1e-5)
    state = encoder.state_dict()
    key = "transformer.resblocks.1.mlp.c_fc.weight"
    torch.testing.assert_close(state[key], plain[key] + delta, rtol=0, atol=1e-7)
    for k in ("conv1.weight", "transformer.resblocks.1.mlp.c_fc.bias", "positional_embedding"):
        assert torch.equal(state[k], plain[k]), k  # not adapted: untouched
    for k in (
        "transformer.resblocks.0.attn.in_proj_weight",
        "transformer.resblocks.0.attn.out_proj.weight",
    ):
        assert not torch.equal(state[k], plain[k]), k  # peft's MHA layer adapts both


class Watch(SupervisedPlugin):
    """After LoRA's plugin: what the optimiser holds when a task starts, and the frozen attention
    weights after every epoch (the low-rank update must never be written into W0 while a task
    trains)."""

    def __init__(self, encoder, frozen):
        super().__init__()
        self.encoder, self.frozen, self.starts, self.exact = encoder, frozen, [], []

    def before_training_epoch(self, strategy, **kwargs):
        held = {id(p) for g in strategy.optimizer.param_groups for p in g["params"]}
        adapters = [p for n, p in self.encoder.named_parameters() if "lora_" in n]
        n_model = len(list(strategy.model.parameters()))
        self.starts.append((all(id(p) in held for p in adapters), len(held), n_model))

    def after_training_epoch(self, strategy, **kwargs):
        attn = self.encoder.transformer.resblocks[0].attn  # W0 under the low-rank updates
        w0 = attn.parametrizations.in_proj_weight.original
        now = (w0, attn.out_proj.parametrizations.weight.original)
        self.exact.append(all(torch.equal(a, b) for a, b in zip(now, self.frozen, strict=True)))


def test_lora_trains_the_adapter_through_the_trainer_and_nothing_else(data):
    context = fresh_context(data, train=WD)
    model, encoder = context.model, context.model.encoder
    pretrained = cpu_state(encoder)
    attn = encoder.transformer.resblocks[0].attn
    frozen = (attn.in_proj_weight.detach().clone(), attn.out_proj.weight.detach().clone())
    plugins = resolve("lora", {})(context)
    watch = Watch(encoder, frozen)
    trainer = Trainer(model=model, cfg=WD, device=CPU, plugins=[*plugins, watch])
    stream = build_stream(data, context.encoder.train_transform, context.encoder.eval_transform)
    trainer.train_task(stream.train_stream[0], 2)
    # the optimiser held this task's adapter and nothing the model no longer has
    assert all(ok and held == n for ok, held, n in watch.starts)
    assert watch.exact == [True, True]  # frozen attention weights bit for bit, two epochs
    state = encoder.state_dict()
    adapted = {f"{t}.weight" for t in plugins[0].targets if not t.endswith("attn")}
    adapted |= {f"{t}.in_proj_weight" for t in plugins[0].targets if t.endswith("attn")}
    adapted |= {f"{t}.out_proj.weight" for t in plugins[0].targets if t.endswith("attn")}
    assert list(state) == list(pretrained)
    for key, value in state.items():  # weight decay 0.1 reached no frozen weight
        assert torch.equal(value, pretrained[key]) != (key in adapted), key
    assert all(p.requires_grad for p in encoder.parameters()) and not lora_names(encoder)
    trainer.train_task(stream.train_stream[1], 1)  # a second, fresh adapter on the merged weights
    assert watch.starts[-1][0] and watch.starts[-1][1] == watch.starts[-1][2]


@pytest.mark.parametrize(
    "name, args",
    [
        ("lora", {"rank": 2, "dropout": 0.25}),
        ("lora", {"rank": 2, "dora": True}),
        ("bitfit", {"norms": True}),
    ],
)
def test_a_restored_run_trains_on_bit_for_bit(name, args, data):
    """As tests/test_strategy_checkpoints.py's registry test, with other settings: LoRA's dropout
    draws from the training RNG, DoRA trains magnitudes, BitFit also trains the norms."""

    def build():
        context = fresh_context(data)
        plugins = resolve(name, args)(context)
        log = LossLog()
        trainer = Trainer(model=context.model, cfg=TRAIN, device=CPU, plugins=[*plugins, log])
        enc = context.encoder
        stream = build_stream(data, enc.train_transform, enc.eval_transform).train_stream
        return context.model, plugins, trainer, stream, log

    model, plugins, trainer, stream, log = build()
    trainer.train_task(stream[0], 1)
    state = through_checkpoint(dataclasses.asdict(capture(1, [], model, plugins, trainer)))
    assert state["plugins"][0]["state"] == {}
    for experience in list(stream)[1:]:
        trainer.train_task(experience, 1)
    model2, plugins2, trainer2, stream2, log2 = build()
    restore(Checkpoint(**state), model2, plugins2, trainer2, "test checkpoint")
    for experience in list(stream2)[1:]:
        trainer2.train_task(experience, 1)
    assert len(log2.losses) > 0 and log2.losses == log.losses[-len(log2.losses) :]
    s1, s2 = model.state_dict(), model2.state_dict()
    assert list(s1) == list(s2) and all(torch.equal(s1[k], s2[k]) for k in s1)


def test_lora_draws_its_adapter_without_moving_the_training_rng(data):
    context = fresh_context(data)
    plugin = resolve("lora", {})(context)[0]
    rng = torch.random.get_rng_state()
    plugin.inject()
    assert torch.equal(torch.random.get_rng_state(), rng)
    plugin.merge()


def test_lora_adapts_the_cifar_resnet_convolutions(resnet):
    model = SimpleNamespace(encoder=resnet, heads=nn.ModuleList([nn.Linear(64, 3)]))
    context = SimpleNamespace(model=model, device=CPU)
    plugin = lora.build(context, lora.Config(rank=2))[0]
    plain = cpu_state(resnet)
    x = torch.randn(2, 3, 32, 32)
    resnet.eval()  # batch norms on running statistics: the same function before and after
    expected = lora_count(resnet, plugin.targets, 2)
    assert plugin.config_entries()["trainable_encoder_params"] == expected == 50648 // 4
    plugin.inject()
    assert sum(p.numel() for n, p in resnet.named_parameters() if "lora_" in n) == expected
    randomise_adapters(resnet)
    with torch.no_grad():
        adapted = resnet(x)
    plugin.merge()
    with torch.no_grad():
        torch.testing.assert_close(resnet(x), adapted, rtol=1e-5, atol=1e-5)
    assert list(resnet.state_dict()) == list(plain)
    resnet.load_state_dict(plain)  # the module fixture is shared


# -- BitFit ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("norms", [False, True])
def test_bitfit_changes_only_the_biases_and_the_heads(norms, data):
    context = fresh_context(data, train=WD)
    model, encoder = context.model, context.model.encoder
    pretrained, heads = cpu_state(encoder), cpu_state(model.heads)
    plugin = resolve("bitfit", {"norms": norms})(context)[0]
    trainer = Trainer(model=model, cfg=WD, device=CPU, plugins=[plugin])
    stream = build_stream(data, context.encoder.train_transform, context.encoder.eval_transform)
    trainer.train_task(stream.train_stream[0], 2)
    trained = set(bitfit_parameters(encoder, norms))
    changed = {k for k, v in encoder.state_dict().items() if not torch.equal(v, pretrained[k])}
    assert changed and changed <= trained  # weight decay 0.1 reached no frozen weight
    assert len(changed) >= 0.9 * len(trained)  # (a bias may not move in a few steps)
    assert any("ln_" in k and k.endswith("weight") for k in changed) == norms
    assert not torch.equal(model.heads["0"].weight, heads["0.weight"])
    assert plugin.config_entries() == {
        "encoder_params": 215680,
        "trainable_encoder_params": 3584 if norms else 2944,
        "head_params": 3 * (4 * 32 + 4),
        "trainable_params": (3584 if norms else 2944) + 3 * (4 * 32 + 4),
    }


# -- end to end: config.json ----------------------------------------------------------------------
MINI = """name: mini
tasks: [{name: synth_a, epochs: 1}, {name: synth_b, epochs: 1}]
controls: [synth_control]
defaults: {model: cfbench-tiny-vit, pretrained: none, lr: 1.0e-3, batch_size: 32,
           warmup_steps: 2, weight_decay: 0.0, probe_max_train_samples: 60}
"""


def test_config_json_records_the_trainable_counts(tmp_path):
    """The session's hook: a plugin's config_entries() go to strategy_details (BitFit's entries
    are checked on the plugin above)."""
    name, encoder_trained = "lora", 32768
    path = tmp_path / "mini.yaml"
    path.write_text(MINI)
    assert main(["--sequence", str(path), "--strategy", name, "--out", str(tmp_path)]) == 0
    folder = tmp_path / "mini" / name / "seed0"
    config = json.loads((folder / "config.json").read_text())
    details = config["strategy_details"]
    heads = details["head_params"]
    assert heads == 2 * (32 * 8 + 8)  # synth_a, synth_b: 8 classes each, embed dim 32
    assert details["encoder_params"] == 215680
    assert details["trainable_encoder_params"] == encoder_trained
    assert details["trainable_params"] == encoder_trained + heads
    assert details["lora_targets"] == ["attn", "c_fc", "c_proj"] and details["lora_layers"] == 12
    assert (folder / "metrics.json").exists()
