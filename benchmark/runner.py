"""One benchmark run: sequence -> data -> model -> stream -> trainer + plugins -> run folder."""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from benchmark.config import RunConfig
from benchmark.errors import CFBenchError
from benchmark.evaluation import EvalDataset, MatrixEvaluation
from benchmark.model import CosineHead, Encoder, MultiTaskClassifier, build_encoder
from benchmark.results import RunResults, matrix, run_dir
from benchmark.streams import build_stream
from benchmark.trainer import Trainer, default_workers, resolve_device
from strategies import StrategyContext, resolve
from strategies.lp_ft import LPInitPlugin
from tasks import SequenceSpec, TaskData, load_task


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def choose_head_init(cfg: RunConfig, encoder: Encoder) -> str:
    """``zs`` for models with a text tower, else ``lp``; an explicit choice must be possible."""
    head_init = cfg.head_init or ("zs" if encoder.text is not None else "lp")
    if head_init == "zs" and encoder.text is None:
        raise CFBenchError(
            f"--head-init zs needs a text tower and {cfg.model} has none; use --head-init lp"
        )
    return head_init


def build_heads(encoder: Encoder, tasks: list[TaskData], head_init: str) -> list[CosineHead]:
    """Zero-shot heads from the text tower, or all-zero heads that LPInitPlugin fits per task."""
    if head_init == "zs":
        return [
            CosineHead(encoder.text.class_weights(d.classnames, d.templates).cpu(),
                       scale=encoder.text.logit_scale)
            for d in tasks
        ]  # fmt: skip
    return [CosineHead(torch.zeros(d.num_classes, encoder.embed_dim)) for d in tasks]


def eval_datasets(sequence: SequenceSpec, data: dict[str, TaskData], encoder: Encoder):
    out = []
    for name in list(sequence.tasks) + list(sequence.controls):
        d, is_task = data[name], name in sequence.tasks
        zs = encoder.text.class_weights(d.classnames, d.templates) if encoder.text else None
        out.append(EvalDataset(name, "task" if is_task else "control",
                               sequence.tasks.index(name) if is_task else None, d, zs))  # fmt: skip
    return out


def run(cfg: RunConfig, sequence: SequenceSpec, log=print) -> Path:
    """Execute one (sequence, strategy, seed) run and return its folder."""
    started = time.time()
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    names = list(sequence.tasks) + list(sequence.controls)
    data = {n: load_task(n, cfg.data_root, cfg.download) for n in names}  # fail before training
    make_plugins = resolve(cfg.strategy, cfg.strategy_args)
    encoder = build_encoder(cfg.model, cfg.pretrained, cfg.data_root)
    head_init = choose_head_init(cfg, encoder)
    folder = run_dir(cfg.out, sequence.name, cfg.strategy, cfg.seed)
    identity = {"sequence": sequence.name, "strategy": cfg.strategy, "seed": cfg.seed}
    results = RunResults(folder, identity, list(sequence.tasks), list(sequence.controls))

    if encoder.text is not None:
        encoder.text.to(device)
    tasks = [data[n] for n in sequence.tasks]
    model = MultiTaskClassifier(encoder.module, build_heads(encoder, tasks, head_init))
    evals = eval_datasets(sequence, data, encoder)
    if encoder.text is not None:
        encoder.text.to("cpu")  # only needed for the heads: free the GPU for training
    epochs = [cfg.train.epochs or sequence.task_epochs(t) for t in sequence.tasks]
    results.write_config({**cfg.to_dict(), "head_init": head_init, "sequence_spec": {
        "name": sequence.name, "tasks": list(sequence.tasks), "controls": list(sequence.controls),
        "epochs": dict(zip(sequence.tasks, epochs, strict=True))}})  # fmt: skip

    def on_stage(stage: int, records: list[dict]) -> None:
        results.add_stage(stage, records)
        lp = "  ".join(f"{r['dataset']} {r['accuracy']:.1f}" for r in records if r["kind"] == "lp")
        tqdm.write(f"stage {stage} ({records[0]['stage_task']}): LP {lp}")

    context = StrategyContext(model, encoder, device, cfg.train, cfg.probe, tasks)
    plugins = make_plugins(context)
    if head_init == "lp" and cfg.strategy != "lp_ft":  # lp_ft initialises the heads itself
        plugins.insert(0, LPInitPlugin(context))
    workers = default_workers(cfg.train, device)
    # The evaluation plugin goes last so it sees what every strategy plugin did after a task.
    plugins.append(MatrixEvaluation(evals, encoder.eval_transform, cfg.probe, device,
                                    list(sequence.tasks), on_stage, workers=workers))  # fmt: skip
    trainer = Trainer(model=model, cfg=cfg.train, device=device, plugins=plugins,
                      task_names=list(sequence.tasks))  # fmt: skip
    stream = build_stream(
        tasks, encoder.train_transform, encoder.eval_transform, cfg.train.max_train_images
    )
    for experience, n_epochs in zip(stream.train_stream, epochs, strict=True):
        trainer.train_task(experience, n_epochs)
    print_summary(results, log, time.time() - started)
    return folder


def print_summary(results: RunResults, log, seconds: float) -> None:
    summary = results.finish().get("lp", {})
    lp = matrix(results.frame(), "lp", results.columns)
    with pd.option_context("display.width", 200, "display.float_format", "{:.1f}".format):
        log(f"LP accuracy (%), rows = stage (0 = pretrained):\n{lp.to_string()}")
    nan = float("nan")
    log(f"final avg acc {summary.get('final_avg_acc', nan):.2f}  "
        f"delta-LP controls {summary.get('delta_lp_controls', nan):.2f}  "
        f"forgetting {summary.get('forgetting', nan):.2f}  ({seconds:.1f} s)")  # fmt: skip
    log(f"run folder: {results.folder}")
