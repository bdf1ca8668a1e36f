"""A soup's evaluation: the run config and sequence its first ingredient recorded, the
session built from them, the average of the ingredients' weights at a stage, and the greedy
selection on the final-stage models' validation accuracy."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmark.config import ProbeConfig, RunConfig, TrainConfig, validate
from benchmark.errors import CFBenchError
from benchmark.phases import phase, smaller_eval_batch
from benchmark.probe.features import Transformed, extract_features
from benchmark.probe.fit import top1
from benchmark.probe.splits import validation_split
from benchmark.rng import seed_everything
from benchmark.soup.average import StateMismatch, average_state_dicts
from benchmark.soup.greedy import GreedySoup, greedy_select
from benchmark.soup.ingredients import Ingredient, _other_data
from benchmark.strategy_api import Resolved
from tasks import SequenceSpec
from tasks.base import targets_of

if TYPE_CHECKING:  # make.py imports this module
    from benchmark.soup.make import SoupOptions


def run_config_from_json(config: Mapping[str, Any], **overrides: Any) -> RunConfig:
    """The RunConfig a run's config.json records (its resolved values: pipeline, head_init),
    with ``overrides`` (RunConfig fields); keys config.json has beyond RunConfig are ignored."""
    names = {f.name for f in dataclasses.fields(RunConfig)} - {"train", "probe"}
    run = {k: v for k, v in config.items() if k in names}
    run.update(overrides)
    for key in ("data_root", "out"):
        run[key] = Path(run[key]).expanduser()
    train = _fields(TrainConfig, config.get("train", {}))
    probe = _fields(ProbeConfig, config.get("probe", {}))
    probe["c_grid"] = tuple(probe.get("c_grid", ProbeConfig.c_grid))
    cfg = RunConfig(**run, train=TrainConfig(**train), probe=ProbeConfig(**probe))
    validate(cfg)
    return cfg


def _fields(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if k in names}


def sequence_from_json(spec: Mapping[str, Any]) -> SequenceSpec:
    """The sequence as config.json's sequence_spec records it (no YAML file needed)."""
    return SequenceSpec(
        spec["name"],
        tuple(spec["tasks"]),
        tuple(spec["controls"]),
        epochs=dict(spec.get("epochs", {})),
    )


NO_PLUGINS = Resolved(build=lambda context: [], settings={})  # a soup trains nothing


def validation_accuracy(model: torch.nn.Module, evaluation, features=None) -> float:
    """Mean over the sequence's tasks of the task head's accuracy (percent) on the task's
    validation split. ``evaluation``: the run's MatrixEvaluation (datasets, transform, device);
    ``features``: the FeaturePass to use (default: the evaluation's)."""
    features = features or evaluation.features
    accuracies = []
    for ds in evaluation.datasets:
        if ds.task_label is None:
            continue
        train = ds.data.train
        _, val_idx = validation_split(len(train))
        f = extract_features(
            model.encoder,
            [Transformed(train, evaluation.transform, val_idx)],
            desc=f"validation {ds.name}",
            **features.kwargs(),
        )
        y = torch.as_tensor(np.asarray(targets_of(train))[val_idx], device=evaluation.device)
        with torch.no_grad():
            accuracies.append(top1(model.heads[str(ds.task_label)](f), y))
    return 100.0 * float(np.mean(accuracies))


def average_of(ingredients: Sequence[Ingredient], stage: int) -> dict[str, torch.Tensor]:
    """The uniform mean of the ingredients' stage-``stage`` model state dicts (one in memory at
    a time), with a progress bar over the ingredients."""
    bar = tqdm(
        ingredients,
        desc=f"averaging stage {stage}",
        unit="run",
        leave=False,
        dynamic_ncols=True,
        disable=None,
    )
    states = (ing.model_state(stage) for ing in bar)
    try:
        return average_state_dicts(states)
    except StateMismatch as error:
        other = ingredients[error.index]
        raise CFBenchError(
            f"{other.folder} cannot be averaged with {ingredients[0].folder} at stage {stage} "
            f"({error}); leave it out (heads of one kind: the same head "
            "initialisation, zs or lp)"
        ) from None


def build_soup_session(first: Ingredient, opts: SoupOptions, sequence: SequenceSpec, log):
    """prepare and build_session from the first ingredient's config.json, checked against it."""
    from benchmark.session import build_session, prepare

    overrides: dict[str, Any] = {"fresh": False, "cache": "none"}
    if opts.device is not None:
        overrides["device"] = opts.device
    if opts.data_root is not None:
        overrides["data_root"] = opts.data_root
    cfg = run_config_from_json(first.config, **overrides)
    train = dataclasses.replace(cfg.train, compile=False)  # a few evaluations: not worth it
    probe = cfg.probe
    if opts.eval_batch_size is not None:
        probe = dataclasses.replace(probe, batch_size=opts.eval_batch_size)
    cfg = dataclasses.replace(cfg, train=train, probe=probe)
    validate(cfg)
    # The seed the ingredient started with: a randomly initialised model (smoke's) and its text
    # tower are then rebuilt exactly, which the initial_weights digest below confirms.
    seed_everything(first.seed)
    setup = prepare(cfg, sequence, NO_PLUGINS, log)
    if setup.config["initial_weights"] != first.config["initial_weights"]:
        raise CFBenchError(
            f"the encoder built from {first.folder}/config.json ({cfg.model}, pretrained "
            f"{cfg.pretrained}) is not the one it was fine-tuned from (initial_weights differ); "
            "put back the pretrained weights it used"
        )
    if setup.config["quick_gelu"] != first.config.get("quick_gelu", False):  # older runs: GELU
        raise CFBenchError(
            f"{first.folder} was fine-tuned with other activations than the "
            f"{setup.encoder.activation.name} that {cfg.model}/{cfg.pretrained} now builds "
            "(config.json quick_gelu); rerun its ingredients"
        )
    name = _other_data(first.config.get("data", {}), setup.config["data"])
    if name:
        raise CFBenchError(
            f"dataset {name} under {cfg.data_root} is not the one {first.folder} was trained and "
            "evaluated on (other sizes or labels); give --data-root with the same data"
        )
    return setup, build_session(setup, None)


def select_greedy(
    ingredients: Sequence[Ingredient], session, n_tasks: int
) -> tuple[GreedySoup, dict]:
    """Greedy selection on the final-stage models' validation accuracy, and what it cost."""
    model, ev = session.model, session.evaluation
    # Its feature passes are not part of any stage's evaluation cost: a cost of their own.
    from benchmark.cost import Cost

    features = dataclasses.replace(ev.features, cost=Cost(ev.device))
    started = time.time()

    def accuracy(indices: tuple[int, ...]) -> float:
        model.load_state_dict(average_of([ingredients[i] for i in indices], n_tasks))
        with phase(smaller_eval_batch("scoring the validation splits", ev.batch_size)):
            value = validation_accuracy(model, ev, features)
        bar.update()
        return value

    bar = tqdm(
        total=2 * len(ingredients) - 1,
        desc="greedy soup",
        unit="soup",
        leave=False,
        dynamic_ncols=True,
        disable=None,
    )
    individual = [accuracy((i,)) for i in range(len(ingredients))]
    for ing, value in zip(ingredients, individual, strict=True):
        tqdm.write(f"validation accuracy {value:.2f}: {ing.folder}")
    greedy = greedy_select(individual, accuracy)
    bar.close()
    for step in greedy.steps:
        added = ingredients[step.candidate[-1]].folder
        verdict = "kept" if step.kept else "left out"
        tqdm.write(f"greedy soup + {added}: validation accuracy {step.accuracy:.2f} ({verdict})")
    tqdm.write(
        f"greedy soup: {len(greedy.kept)} of {len(ingredients)} runs kept, validation "
        f"accuracy {greedy.accuracy:.2f}"
    )
    spent = features.cost.current
    return greedy, {
        "images_encoded": spent["images_encoded"],
        "seconds": round(time.time() - started, 3),
    }
