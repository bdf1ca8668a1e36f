"""What a run is built from (``prepare``) and its live objects (``build_session``).

``prepare`` decides everything before the run folder is touched: the data (loaded first, so a
missing dataset fails before any training), the encoder, the head initialisation, the pipeline and
the ``config.json`` the run records. ``build_session`` makes the model, the strategy's plugins,
the evaluation, the trainer and the stream (docs/design.md section 2).
"""

from __future__ import annotations

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
    """Everything a run is built from, decided before anything is written."""

    cfg: RunConfig
    sequence: SequenceSpec
    strategy: Resolved
    data: dict[str, TaskData]  # every task and control, by name
    encoder: Encoder
    head_init: str  # "zs" or "lp"
    device: torch.device
    pipeline: TensorPipeline | None  # None: Avalanche's loaders over the PIL transforms
    epochs: list[int]  # per task, in training order
    config: dict  # what config.json records

    @property
    def tasks(self) -> list[TaskData]:
        return [self.data[n] for n in self.sequence.tasks]


def prepare(cfg: RunConfig, sequence: SequenceSpec, strategy: Resolved, log) -> Setup:
    device = resolve_device(cfg.device)
    data = load_data(list(sequence.tasks) + list(sequence.controls), cfg, log)
    encoder = build_encoder(cfg.model, cfg.pretrained, cfg.data_root)
    if encoder.activation is not None:
        log(f"{cfg.model}: {encoder.activation.describe()}")
    head_init = choose_head_init(cfg.head_init, encoder, cfg.model)
    pipeline = choose_pipeline(cfg, encoder, data)
    epochs = [cfg.train.epochs or sequence.task_epochs(t) for t in sequence.tasks]
    config = {
        **cfg.to_dict(),
        "strategy_config": strategy.settings,
        "head_init": head_init,
        "pipeline": "device" if pipeline else "pil",
        "precision_used": "bf16" if autocast_dtype(cfg.train.precision, device) else "fp32",
        "initial_weights": weights_digest(encoder.module),
        # The towers' activation (encoder.Activation); the digest above cannot see it.
        "quick_gelu": bool(encoder.activation and encoder.activation.quick_gelu),
        "sequence_spec": {
            "name": sequence.name,
            "tasks": list(sequence.tasks),
            "controls": list(sequence.controls),
            "epochs": dict(zip(sequence.tasks, epochs, strict=True)),
        },
        "data": {n: d.provenance for n, d in data.items()},
        # The prompt set of each zero-shot head (tasks/templates.py); None: no text tower.
        "templates": template_records(data) if encoder.text is not None else None,
        "selection": selected_args(sequence, cfg),
        # Protocol settings this run changed (benchmark/protocol.py); the report marks it.
        "off_protocol": off_protocol(cfg, sequence.defaults),
        "test_images": {
            n: len(subsample(len(d.test), cfg.probe.max_test_samples)) for n, d in data.items()
        },
    }
    return Setup(
        cfg, sequence, strategy, data, encoder, head_init, device, pipeline, epochs, config
    )


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


def text_cache(setup: Setup, cache: Row0Cache | None) -> TextCache | None:
    """Zero-shot class weights of earlier runs: ``text/`` in the pretrained-row cache's folder
    (off with it), keyed by the text tower's weights and activation (benchmark/model/text.py)."""
    text = setup.encoder.text
    if text is None or cache is None or cache.folder is None:
        return None
    context = {
        "model": setup.cfg.model,
        "text_weights": weights_digest(text.model),
        "quick_gelu": setup.config["quick_gelu"],
        "device": setup.device.type,
        "torch": torch.__version__,
    }
    return TextCache(cache.folder / "text", context)


def build_session(setup: Setup, cache: Row0Cache | None) -> Session:
    cfg, encoder, device, tasks = setup.cfg, setup.encoder, setup.device, setup.tasks
    if encoder.text is not None:
        encoder.text.to(device)
    # On the training device before the plugins are built: their copies (a pretrained anchor,
    # a restored LwF teacher) must live where the model trains.
    cost = Cost(device)  # its clock starts now: stage 0's wall includes the prompts
    texts = text_cache(setup, cache)
    zero_shot = zero_shot_weights(encoder.text, setup.data, cost, texts)  # each dataset's, once
    task_weights = [zero_shot.get(name) for name in setup.sequence.tasks]
    heads = build_heads(encoder, tasks, setup.head_init, task_weights)
    model = MultiTaskClassifier(encoder.module, heads).to(device)
    evals = eval_datasets(setup.sequence, setup.data, zero_shot, setup.head_init)
    if encoder.text is not None:
        encoder.text.to("cpu")  # only needed for the class weights: free the GPU for training
    cost.flops = flops_per_image(encoder.module, image_size(encoder), device)
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
    train_datasets = [e.dataset for e in stream.train_stream]
    context = StrategyContext(
        model,
        encoder,
        device,
        cfg.train,
        cfg.probe,
        tasks,
        features,
        train_datasets,
        [setup.data[n] for n in setup.sequence.controls],
        partial(load_task, root=cfg.data_root, download=cfg.download, source=cfg.source),
    )
    plugins = setup.strategy(context)  # built from the pretrained model, before any restore
    lp_init = any(isinstance(p, LPInitPlugin) for p in plugins)  # LP-FT fits the heads itself
    if setup.head_init == "lp" and not lp_init:
        plugins.insert(0, LPInitPlugin(context))
    for plugin in plugins:  # what a plugin reports about itself (LoRA, BitFit: trainable counts)
        if hasattr(plugin, "config_entries"):
            setup.config.setdefault("strategy_details", {}).update(plugin.config_entries())
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
    trainer = Trainer(
        model=model, cfg=cfg.train, device=device, plugins=plugins, task_names=task_names
    )
    trainer.cost = cost
    if setup.pipeline is not None:
        trainer.device_loader = device_loaders(tasks, cfg, setup.pipeline, device, trainer)
    return Session(model, plugins, evaluation, trainer, stream, cost)
