"""Every registered strategy on the tiny model, the plugins' exact behaviour, and end-to-end runs of
``--strategy all`` and of external plugins through ``main()``."""

import copy
import dataclasses
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from avalanche.training.plugins import SupervisedPlugin

from benchmark.checkpoint.state import Checkpoint, capture, restore, resumable
from benchmark.config import ProbeConfig, TrainConfig
from benchmark.metrics import HEADLINE
from benchmark.model.encoder import build_encoder, vit_taps
from benchmark.model.heads import CosineHead, MultiTaskClassifier
from benchmark.probe.features import Transformed, extract_features
from benchmark.probe.fit import linear_probe
from benchmark.probe.splits import validation_split
from benchmark.rng import seed_everything
from benchmark.strategy_api import StrategyContext
from benchmark.streams import build_stream, training_split
from benchmark.trainer import Trainer
from run_benchmark import main
from strategies import STRATEGIES, resolve
from strategies.common import FROM_MODEL, cpu_state
from strategies.taps import TapRecorder
from tasks.synthetic import synthetic_task

CPU = torch.device("cpu")
TRAIN = TrainConfig(epochs=1, batch_size=16, lr=1e-3, weight_decay=0.0, warmup_steps=2, workers=0)
PROBE = ProbeConfig(c_grid=(1.0, 100.0), max_iter=50, batch_size=64)
STATEFUL = {"l2sp", "ldifs", "ewc", "lwf", "replay", "wise_ft"}


@pytest.fixture(scope="module")
def data():
    specs = [
        synthetic_task(f"mini_{k}", seed=30 + k, num_classes=4, n_train=16, n_test=4)
        for k in range(2)
    ]
    return [spec.build(Path("."), False) for spec in specs]


class LossLog(SupervisedPlugin):
    """Goes after the strategy's plugins, so it sees the full loss of every step."""

    def __init__(self):
        super().__init__()
        self.losses = []

    def before_backward(self, strategy, **kwargs):
        self.losses.append(strategy.loss.item())


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


@pytest.fixture(scope="module")
def runs(data):
    """Trained runs, keyed by (strategy, sorted args), each trained once per module."""
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


# -- the whole registry ---------------------------------------------------------------------------
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
    from benchmark.checkpoint.state import CheckpointError
    from benchmark.checkpoint.store import CheckpointStore
    from strategies import wise_ft

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


# -- LDIFS taps and distance ----------------------------------------------------------------------
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
    from benchmark.errors import CFBenchError

    context = fresh_context(data)
    context.encoder.taps = []
    with pytest.raises(CFBenchError, match="declares taps"):
        resolve("ldifs")(context)


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


# -- end to end through main() --------------------------------------------------------------------
MINI = """name: mini
tasks: [{name: synth_a, epochs: 1}, {name: synth_b, epochs: 1}]
controls: [synth_control]
defaults: {model: cfbench-tiny-vit, pretrained: none, lr: 1.0e-3, batch_size: 32,
           warmup_steps: 2, weight_decay: 0.0, probe_max_train_samples: 60}
strategy_args: {ldifs: {lam: 1, anchor: pretrained}, replay: {mem_size: 40}}
"""


@pytest.fixture(scope="module")
def mini_sequence(tmp_path_factory):
    path = tmp_path_factory.mktemp("seq") / "mini.yaml"
    path.write_text(MINI)
    return path


def test_strategy_all_runs_every_strategy_and_prints_one_table(mini_sequence, tmp_path, capsys):
    assert (
        main(["--sequence", str(mini_sequence), "--strategy", "all", "--out", str(tmp_path)]) == 0
    )
    out = capsys.readouterr().out
    table = out[out.index("LP metrics") :].splitlines()
    assert table[1].split() == ["Final", "acc", "ΔLP", "controls", "Forgetting"]
    assert [m.label for m in HEADLINE] == ["Final acc", "ΔLP controls", "Forgetting"]
    rows = {line.split()[0]: line.split()[1:] for line in table[3 : 3 + len(STRATEGIES)]}
    assert list(rows) == list(STRATEGIES)
    assert all(len(v) == 3 and "n/a" not in v for v in rows.values())
    csv = pd.read_csv(tmp_path / "mini" / "comparison_seed0.csv", index_col="strategy")
    assert list(csv.index) == list(STRATEGIES)
    metrics = json.loads((tmp_path / "mini" / "ldifs" / "seed0" / "metrics.json").read_text())
    assert csv.loc["ldifs", "Forgetting"] == pytest.approx(metrics["lp"]["forgetting"])
    assert csv.loc["ldifs", "Final acc"] == pytest.approx(metrics["lp"]["final_avg_acc"])
    config = json.loads((tmp_path / "mini" / "ldifs" / "seed0" / "config.json").read_text())
    assert config["strategy_args"] == {"lam": 1, "anchor": "pretrained"}  # from the YAML
    assert config["strategy_config"] == {
        "lam": 1.0,
        "anchor": "pretrained",
        "axis": "token",
        "reduction": "mean",
    }
    assert config["seed"] == 0
    # Re-running compares the strategy's settings by effect, not as typed: an argument given at
    # the value it already had is the same run (already complete); another value is refused.
    argv = ["--sequence", str(mini_sequence), "--out", str(tmp_path), "--strategy", "ldifs"]
    before = {p: p.read_bytes() for p in (tmp_path / "mini" / "ldifs").rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main([*argv, "--strategy-arg", "lam=1.0", "--strategy-arg", "axis=token"]) == 0
    assert "is already complete" in capsys.readouterr().out
    assert main([*argv, "--strategy-arg", "lam=2"]) == 2
    assert "other settings (strategy_config.lam: 1.0 -> 2.0)" in capsys.readouterr().err
    after = {p: p.read_bytes() for p in (tmp_path / "mini" / "ldifs").rglob("*") if p.is_file()}
    assert after == before


def test_strategy_all_refuses_a_strategy_arg_before_training(mini_sequence, tmp_path, capsys):
    argv = ["--sequence", str(mini_sequence), "--out", str(tmp_path), "--strategy"]
    assert main([*argv, "all", "--strategy-arg", "lam=1"]) == 2
    assert main([*argv, "ldifs", "--strategy-arg", "anchor=foo"]) == 2
    err = capsys.readouterr().err
    assert "with --strategy all" in err and "anchor='foo' is not one of" in err
    assert not (tmp_path / "mini").exists()


@pytest.mark.parametrize(
    "strategy, args",
    [
        ("examples.my_strategy:build", ["lam=1e-4"]),
        ("avalanche.training.plugins:SynapticIntelligencePlugin", ["si_lambda=1"]),
        ("avalanche.training.plugins:MASPlugin", ["lambda_reg=0.5"]),
    ],
)
def test_external_plugins_run_end_to_end(mini_sequence, tmp_path, strategy, args):
    argv = ["--sequence", str(mini_sequence), "--strategy", strategy, "--out", str(tmp_path)]
    for arg in args:
        argv += ["--strategy-arg", arg]
    assert main(argv) == 0
    (folder,) = (tmp_path / "mini").iterdir()
    metrics = json.loads((folder / "seed0" / "metrics.json").read_text())
    assert math.isfinite(metrics["lp"]["final_avg_acc"])


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
