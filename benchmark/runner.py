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
from benchmark.evaluation import EvalDataset, MatrixEvaluation
from benchmark.model import CosineHead, MultiTaskClassifier, build_encoder
from benchmark.results import RunResults, matrix, run_dir
from benchmark.streams import build_stream
from benchmark.trainer import Trainer, default_workers, resolve_device
from strategies import StrategyContext, resolve
from tasks import SequenceSpec, load_task


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_heads(encoder, tasks) -> list[CosineHead]:
    """Zero-shot heads from the text tower; without one, zero heads for the LP-init plugin."""
    heads = []
    for data in tasks:
        if encoder.text is not None:
            w = encoder.text.class_weights(data.classnames, data.templates).cpu()
            heads.append(CosineHead(w, scale=encoder.text.logit_scale))
        else:
            heads.append(CosineHead(torch.zeros(data.num_classes, encoder.embed_dim)))
    return heads


def run(cfg: RunConfig, sequence: SequenceSpec, log=print) -> Path:
    """Execute one (sequence, strategy, seed) run and return its folder."""
    started = time.time()
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    names = list(sequence.tasks) + list(sequence.controls)
    data = {n: load_task(n, cfg.data_root, cfg.download) for n in names}  # fail before training
    folder = run_dir(cfg.out, sequence.name, cfg.strategy, cfg.seed)
    results = RunResults(
        folder,
        {"sequence": sequence.name, "strategy": cfg.strategy, "seed": cfg.seed},
        list(sequence.tasks),
        list(sequence.controls),
    )
    make_plugins = resolve(cfg.strategy, cfg.strategy_args)

    encoder = build_encoder(cfg.model, cfg.pretrained)
    if encoder.text is not None:
        encoder.text.to(device)
    tasks = [data[n] for n in sequence.tasks]
    model = MultiTaskClassifier(encoder.module, build_heads(encoder, tasks))
    evals = [
        EvalDataset(
            n,
            "task" if n in sequence.tasks else "control",
            sequence.tasks.index(n) if n in sequence.tasks else None,
            data[n],
            encoder.text.class_weights(data[n].classnames, data[n].templates)
            if encoder.text is not None
            else None,
        )
        for n in names
    ]
    if encoder.text is not None:
        encoder.text.to("cpu")  # only needed for the heads: free the GPU for training

    results.write_config(
        {
            **cfg.to_dict(),
            "sequence_spec": {
                "name": sequence.name,
                "tasks": list(sequence.tasks),
                "controls": list(sequence.controls),
                "epochs": {t: cfg.train.epochs or sequence.task_epochs(t) for t in sequence.tasks},
            },
        }
    )

    def on_stage(stage: int, records: list[dict]) -> None:
        results.add_stage(stage, records)
        lp = {r["dataset"]: r["accuracy"] for r in records if r["kind"] == "lp"}
        tqdm.write(
            f"stage {stage} ({records[0]['stage_task']}): LP "
            + "  ".join(f"{k} {v:.1f}" for k, v in lp.items())
        )

    context = StrategyContext(model, encoder, device, cfg.train, cfg.probe, tasks)
    evaluation = MatrixEvaluation(
        evals,
        encoder.eval_transform,
        cfg.probe,
        device,
        list(sequence.tasks),
        on_stage,
        workers=default_workers(cfg.train, device),
    )
    # The evaluation plugin goes last so it sees what every strategy plugin did after a task.
    trainer = Trainer(
        model=model,
        cfg=cfg.train,
        device=device,
        plugins=make_plugins(context) + [evaluation],
        task_names=list(sequence.tasks),
    )
    stream = build_stream(tasks, encoder.train_transform, encoder.eval_transform)
    for t, experience in enumerate(stream.train_stream):
        trainer.train_task(experience, cfg.train.epochs or sequence.task_epochs(sequence.tasks[t]))
    summary = results.finish()
    lp = matrix(results.frame(), "lp", results.columns)
    with pd.option_context("display.width", 200, "display.float_format", "{:.1f}".format):
        log(f"LP accuracy (%), rows = stage (0 = pretrained):\n{lp.to_string()}")
    head = summary.get("lp", {})
    log(
        f"final avg acc {head.get('final_avg_acc', float('nan')):.2f}  "
        f"delta-LP controls {head.get('delta_lp_controls', float('nan')):.2f}  "
        f"forgetting {head.get('forgetting', float('nan')):.2f}  "
        f"({time.time() - started:.1f} s)"
    )
    log(f"run folder: {folder}")
    return folder
