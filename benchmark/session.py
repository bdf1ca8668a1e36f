"""What a run is built from (``prepare``) and its live objects (``build_session``).

``prepare`` decides everything before the run folder is touched, as typed values: the data (loaded
first, so a missing dataset fails before any training), the encoder and its weights digest, the
head initialisation, the pipeline. ``build_session`` makes the model, the strategy's plugins, the
evaluation, the trainer (with its cost and loader) and the stream, each with everything it needs
at construction (docs/design.md section 2). ``config_json`` writes what the run records from
those values, at the end; nothing reads it back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from benchmark.checkpoint.store import weights_digest
from benchmark.config import RunConfig, autocast_dtype
from benchmark.cost import Cost, flops_per_image
from benchmark.evaluation import MatrixEvaluation, eval_datasets
from benchmark.feeding import choose_pipeline, device_loaders, load_data
from benchmark.model.encoder import Encoder, build_encoder, image_size
from benchmark.model.heads import MultiTaskClassifier, build_heads, choose_head_init
from benchmark.model.lp_init import LPInitPlugin
from benchmark.model.text import TextCache, zero_shot_weights
from benchmark.pipeline import TensorPipeline
from benchmark.plugin import declared
from benchmark.probe.features import FeaturePass
from benchmark.probe.splits import subsample
from benchmark.protocol import off_protocol
from benchmark.row0_cache import Row0Cache
from benchmark.strategy_api import Resolved, StrategyContext
from benchmark.streams import build_stream
from benchmark.trainer import Trainer, default_workers, resolve_device
from benchmark.vrf.evaluator import build_evaluator as build_vrf
from tasks import SequenceSpec, TaskData, load_task
from tasks.templates import template_records

# Settings that change where and how fast a run executes, not its numbers: a resumed run may
# change them. Everything else in config.json must match the checkpoint's run. ("sequence" is
# the name or path as typed; its content is compared as sequence_spec and the resolved settings.
# "strategy_args" are the arguments as typed; they are compared by effect, as strategy_config.)
# "source" only says where to look: the data itself is compared as config.json's "data".
EXECUTION_ONLY = (
    "out",
    "device",
    "data_root",
    "download",
    "source",
    "fresh",
    "keep_checkpoints",
    "sequence",
    "strategy_args",
    "cache",
    "run_name",
    "selection",
    "test_images",
    "off_protocol",
)
EXECUTION_ONLY_NESTED = (
    ("train", "workers"),
    ("train", "micro_batch"),
    ("train", "compile"),
    ("probe", "batch_size"),
)


def run_settings(config: dict) -> dict:
    """The part of ``config.json`` a resumed run must share with its checkpoint."""
    settings = {k: v for k, v in config.items() if k not in EXECUTION_ONLY}
    for group, key in EXECUTION_ONLY_NESTED:
        settings[group] = {k: v for k, v in settings[group].items() if k != key}
    return settings


@dataclass
class Setup:
    """Everything a run is built from, decided before anything is written (typed values; the
    ``config.json`` a run writes is made from them, ``config_json``)."""

    cfg: RunConfig
    sequence: SequenceSpec
    strategy: Resolved
    data: dict[str, TaskData]  # every task and control, by name
    encoder: Encoder
    head_init: str  # "zs" or "lp"
    device: torch.device
    pipeline: TensorPipeline | None  # None: Avalanche's loaders over the PIL transforms
    epochs: list[int]  # per task, in training order
    initial_weights: str  # the encoder's weights digest before any training

    @property
    def tasks(self) -> list[TaskData]:
        return [self.data[n] for n in self.sequence.tasks]

    @property
    def quick_gelu(self) -> bool:
        """The towers' activation (encoder.Activation); the weights digest cannot see it."""
        return bool(self.encoder.activation and self.encoder.activation.quick_gelu)

    @property
    def test_images(self) -> dict[str, int]:
        """Test images per dataset (the LP accuracies' sample sizes)."""
        limit = self.cfg.probe.max_test_samples
        return {n: len(subsample(len(d.test), limit)) for n, d in self.data.items()}

    @property
    def config(self) -> dict:
        """What config.json records, less the plugins' ``strategy_details`` (``config_json``)."""
        return config_json(self)


def prepare(cfg: RunConfig, sequence: SequenceSpec, strategy: Resolved, log) -> Setup:
    device = resolve_device(cfg.device)
    data = load_data(list(sequence.tasks) + list(sequence.controls), cfg, log)
    encoder = build_encoder(cfg.model, cfg.pretrained, cfg.data_root)
    if encoder.activation is not None:
        log(f"{cfg.model}: {encoder.activation.describe()}")
    head_init = choose_head_init(cfg.head_init, encoder, cfg.model)
    pipeline = choose_pipeline(cfg, encoder, data)
    epochs = [cfg.train.epochs or sequence.task_epochs(t) for t in sequence.tasks]
    weights = weights_digest(encoder.module)
    return Setup(
        cfg, sequence, strategy, data, encoder, head_init, device, pipeline, epochs, weights
    )


def config_json(setup: Setup, details: dict | None = None) -> dict:
    """What config.json records, made from the typed values (never read back); ``details``:
    the plugins' ``strategy_details`` (None: no plugin reports any)."""
    cfg, sequence, data = setup.cfg, setup.sequence, setup.data
    config = {
        **cfg.to_dict(),
        "strategy_config": setup.strategy.settings,
        "head_init": setup.head_init,
        "pipeline": "device" if setup.pipeline else "pil",
        "precision_used": "bf16" if autocast_dtype(cfg.train.precision, setup.device) else "fp32",
        "initial_weights": setup.initial_weights,
        "quick_gelu": setup.quick_gelu,
        "sequence_spec": {
            "name": sequence.name,
            "tasks": list(sequence.tasks),
            "controls": list(sequence.controls),
            "epochs": dict(zip(sequence.tasks, setup.epochs, strict=True)),
        },
        "data": {n: d.provenance for n, d in data.items()},
        # The prompt set of each zero-shot head (tasks/templates.py); None: no text tower.
        "templates": template_records(data) if setup.encoder.text is not None else None,
        "selection": selected_args(sequence, cfg),
        # Protocol settings this run changed (benchmark/protocol.py); the report marks it.
        "off_protocol": off_protocol(cfg, sequence.defaults),
        "test_images": setup.test_images,
    }
    if details is not None:
        config["strategy_details"] = details
    return config


def selected_args(sequence: SequenceSpec, cfg: RunConfig) -> dict | None:
    """How the run's strategy arguments were chosen on validation (tasks/selected.py), when the
    run uses the selected values (not when ``--strategy-arg`` replaced one)."""
    entry = sequence.selection.get(cfg.strategy)
    if not entry or any(cfg.strategy_args.get(k) != v for k, v in entry["args"].items()):
        return None
    return dict(entry)


@dataclass
class Session:
    """A run's live objects: the model, its strategy plugins, the evaluation, trainer, stream."""

    model: MultiTaskClassifier
    plugins: list  # the strategy's (and LP-init's); checkpointed in this order
    evaluation: MatrixEvaluation
    trainer: Trainer
    stream: object  # Avalanche benchmark with .train_stream
    cost: Cost  # images, FLOPs and seconds per stage (metrics.json "cost")
    details: dict | None  # what the plugins report (config.json strategy_details; None: none)


def text_cache(setup: Setup, cache: Row0Cache | None) -> TextCache | None:
    """Zero-shot class weights of earlier runs: ``text/`` in the pretrained-row cache's folder
    (off with it), keyed by the text tower's weights and activation (benchmark/model/text.py)."""
    text = setup.encoder.text
    if text is None or cache is None or cache.folder is None:
        return None
    context = {
        "model": setup.cfg.model,
        "text_weights": weights_digest(text.model),
        "quick_gelu": setup.quick_gelu,
        "device": setup.device.type,
        "torch": torch.__version__,
    }
    return TextCache(cache.folder / "text", context)


def build_model(setup: Setup, cost: Cost, cache: Row0Cache | None):
    """The classifier on the training device (zero-shot or LP-init heads) and the evaluation's
    datasets, with each dataset's zero-shot class weights (computed once; the text tower is on
    the device only meanwhile)."""
    encoder, device = setup.encoder, setup.device
    if encoder.text is not None:
        encoder.text.to(device)
    zero_shot = zero_shot_weights(encoder.text, setup.data, cost, text_cache(setup, cache))
    task_weights = [zero_shot.get(name) for name in setup.sequence.tasks]
    heads = build_heads(encoder, setup.tasks, setup.head_init, task_weights)
    # On the training device before the plugins are built: their copies (a pretrained anchor,
    # a restored LwF teacher) must live where the model trains.
    model = MultiTaskClassifier(encoder.module, heads).to(device)
    evals = eval_datasets(setup.sequence, setup.data, zero_shot, setup.head_init)
    if encoder.text is not None:
        encoder.text.to("cpu")  # only needed for the class weights: free the GPU for training
    return model, evals


def build_plugins(setup: Setup, context: StrategyContext) -> list:
    """The strategy's plugins, built from the pretrained model before any restore, with LP-init
    first when the heads start from a probe and the strategy does not fit them itself."""
    plugins = setup.strategy(context)
    lp_init = any(isinstance(p, LPInitPlugin) for p in plugins)  # LP-FT fits the heads itself
    if setup.head_init == "lp" and not lp_init:
        plugins.insert(0, LPInitPlugin(context))
    return plugins


def strategy_details(plugins: list) -> dict | None:
    """What the plugins report about themselves (LoRA, BitFit: trainable counts); None when no
    plugin has ``config_entries`` (then config.json has no ``strategy_details``)."""
    entries = [declared(p).config_entries for p in plugins]
    entries = [e for e in entries if e is not None]
    return {k: v for e in entries for k, v in e.items()} if entries else None


@dataclass
class _Late:
    """The trainer's clock for the device loader, which is built before the trainer it feeds
    (the loader reads the epoch when each epoch starts, after the trainer exists)."""

    trainer: Callable[[], Trainer]

    @property
    def clock(self):
        return self.trainer().clock


def build_session(setup: Setup, cache: Row0Cache | None) -> Session:
    cfg, encoder, device, tasks = setup.cfg, setup.encoder, setup.device, setup.tasks
    flops = flops_per_image(encoder.module.to(device), image_size(encoder), device)
    cost = Cost(device, flops=flops)  # its clock starts now: stage 0's wall includes the prompts
    model, evals = build_model(setup, cost, cache)
    features = FeaturePass(
        device,
        cfg.probe.batch_size or FeaturePass.default_batch(device),
        default_workers(cfg.train, device),
        setup.pipeline,
        autocast_dtype(cfg.train.precision, device),
        cost,
    )
    stream = build_stream(
        tasks, encoder.train_transform, encoder.eval_transform, cfg.train.max_train_images
    )
    context = StrategyContext(
        model,
        encoder,
        device,
        cfg.train,
        cfg.probe,
        tasks,
        features,
        [e.dataset for e in stream.train_stream],
        [setup.data[n] for n in setup.sequence.controls],
        partial(load_task, root=cfg.data_root, download=cfg.download, source=cfg.source),
    )
    plugins = build_plugins(setup, context)
    # VRF (the vrf strategy's plugin, or --vrf): a frozen copy of the still pretrained encoder
    vrf = build_vrf(cfg.vrf, plugins, encoder, features, list(setup.sequence.tasks), cfg.model)
    if cfg.train.compile:  # in place (parameter names stay), after the FLOP count (eager ops)
        encoder.module.compile()  # and the plugins' hooks (compiled at the first forward)
    task_names = list(setup.sequence.tasks)
    evaluation = MatrixEvaluation(
        evals,
        encoder.eval_transform,
        cfg.probe,
        device,
        task_names,
        features,
        cache,
        [vrf] if vrf else [],
    )
    trainer = build_trainer(setup, model, plugins, cost)
    details = strategy_details(plugins)
    return Session(model, plugins, evaluation, trainer, stream, cost, details)


def build_trainer(setup: Setup, model: MultiTaskClassifier, plugins: list, cost: Cost) -> Trainer:
    """The trainer, with the device loader of the prepared store when the run has a pipeline."""
    cfg, device, trainer = setup.cfg, setup.device, None
    loader = None
    if setup.pipeline is not None:
        late = _Late(lambda: trainer)
        loader = device_loaders(setup.tasks, cfg, setup.pipeline, device, late)
    trainer = Trainer(
        model=model,
        cfg=cfg.train,
        device=device,
        plugins=plugins,
        task_names=list(setup.sequence.tasks),
        cost=cost,
        device_loader=loader,
    )
    return trainer
