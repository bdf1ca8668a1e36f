"""``make_soup``: a soup's run folder, from its ingredients to its records."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from benchmark.errors import CFBenchError
from benchmark.phases import OutOfMemory
from benchmark.results import RunResults, print_summary, run_dir
from benchmark.soup.evaluate import (
    average_of,
    build_soup_session,
    select_greedy,
    sequence_from_json,
)
from benchmark.soup.greedy import GreedySoup
from benchmark.soup.ingredients import Ingredient, every_stage_kept, read_ingredients

MODES = ("uniform", "greedy")
PAPER = "Wortsman et al., Model soups, ICML 2022, arXiv 2203.05482"
VALIDATION = (
    "mean over the sequence's tasks of the task head's accuracy (percent) on the task's "
    "validation split (benchmark/probe/splits.py validation_split: 10 % of its train split, at "
    "most 20,000 images, seed 0, never trained on), measured on the final-stage models"
)
RECORD_KEYS = ("stage", "stage_task", "dataset", "role", "kind", "accuracy")


@dataclass(frozen=True)
class SoupOptions:
    folders: tuple[Path, ...]
    mode: str  # uniform or greedy
    out: Path | None = None  # None: the results folder holding the first ingredient
    seed: int | None = None  # the N of seed<N>; None: the smallest ingredient seed
    device: str | None = None  # None: the first ingredient's
    data_root: Path | None = None  # None: the first ingredient's
    eval_batch_size: int | None = None  # None: the first ingredient's
    force: bool = False  # replace an existing soup folder


def default_out(folder: Path) -> Path:
    """OUT of a run folder OUT/<sequence>/<strategy>/seed<N>."""
    parents = Path(folder).resolve().parents
    if len(parents) < 4:
        raise CFBenchError(f"cannot tell the results folder of {folder}; give --out")
    return parents[2]


def make_soup(opts: SoupOptions, log=print) -> Path:
    """Read and check the ingredients, average them, evaluate the soup stage by stage and write
    its run folder; returns the folder."""
    if opts.mode not in MODES:
        raise CFBenchError(f"--mode must be one of {', '.join(MODES)}, got {opts.mode!r}")
    started = time.time()
    ingredients = read_ingredients(list(opts.folders))
    first = ingredients[0]
    n_tasks = first.n_tasks
    lacking = every_stage_kept(ingredients)
    stages = list(range(1, n_tasks + 1)) if lacking is None else [n_tasks]
    if lacking is not None:
        log(
            f"note: {lacking.folder} kept only its last checkpoint (a per-stage soup needs runs "
            "made with --keep-checkpoints all): the soup is measured at the final stage only, "
            f"row 0 is {first.folder}'s, rows 1-{n_tasks - 1} are absent, so forgetting, BWT and "
            "the zero-shot Transfer and Avg are NaN"
        )
    seed = opts.seed if opts.seed is not None else min(i.seed for i in ingredients)
    out = Path(opts.out) if opts.out is not None else default_out(first.folder)
    sequence = sequence_from_json(first.config["sequence_spec"])
    name = f"soup-{opts.mode}"
    folder = run_dir(out, sequence.name, name, seed)
    if folder.exists() and any(folder.iterdir()) and not opts.force:
        raise CFBenchError(
            f"{folder} already exists; --force replaces it, or choose another --out or --seed"
        )

    setup, session = build_soup_session(first, opts, sequence, log)
    ev = session.evaluation
    try:
        if opts.mode == "greedy":
            greedy, selection_cost = select_greedy(ingredients, session, n_tasks)
            kept = [ingredients[i] for i in greedy.kept]
        else:
            greedy, selection_cost, kept = None, None, ingredients
        if opts.force and folder.exists():
            shutil.rmtree(folder)
        identity = {"sequence": sequence.name, "strategy": name, "seed": seed}
        results = RunResults(folder, identity, list(sequence.tasks), list(sequence.controls))
        results.test_images = dict(setup.config.get("test_images") or {})
        selection = (greedy, selection_cost)
        soup = _soup_config(
            setup.config,
            opts.mode,
            out,
            name,
            seed,
            ingredients,
            kept,
            selection,
            [0, *stages],
            lacking is None,
        )
        results.write_config(soup)
        row0 = [r for r in first.final().records if r["stage"] == 0]
        results.append([{k: r[k] for k in RECORD_KEYS} for r in row0])
        results.write()
        evaluate_stages(session, stages, name, results, lambda stage: average_of(kept, stage))
    except OutOfMemory:
        half = max(1, ev.batch_size // 2)
        raise CFBenchError(
            f"GPU out of memory while evaluating the soup; rerun with --force "
            f"--eval-batch-size {half}"
        ) from None
    print_summary(results, log, time.time() - started, session.cost.summary())
    return folder


def evaluate_stages(
    session, stages: list[int], name: str, results: RunResults, state_of: Callable[[int], dict]
) -> None:
    """Stage by stage (a soup, a merge): the model state ``state_of(stage)`` loaded, evaluated,
    its records written."""
    ev = session.evaluation
    session.cost.start()
    bar = tqdm(stages, desc=name, unit="stage", leave=False, dynamic_ncols=True, disable=None)
    for stage in bar:
        state = state_of(stage)
        session.model.load_state_dict(state)
        records = ev.evaluate(session.model, stage)
        lp = "  ".join(f"{r['dataset']} {r['accuracy']:.1f}" for r in records if r["kind"] == "lp")
        tqdm.write(f"{name} stage {stage} ({records[0]['stage_task']}): LP {lp}")
        results.append(records)
        session.cost.close_stage(stage)
        results.write()
    bar.close()


def evaluation_settings(base: Mapping[str, Any]) -> dict[str, Any]:
    """A run's config.json without what only its training had (a soup's, a merge's base)."""
    drop = (
        "train",
        "strategy",
        "strategy_args",
        "strategy_config",
        "fresh",
        "keep_checkpoints",
        "run_name",
        "out",
        "seed",
        "cache",
        "resumed",
    )
    config = {k: v for k, v in base.items() if k not in drop}
    spec = base["sequence_spec"]
    config["sequence_spec"] = {k: spec[k] for k in ("name", "tasks", "controls")}
    return config


def _soup_config(
    base: Mapping[str, Any],
    mode: str,
    out: Path,
    name: str,
    seed: int,
    ingredients: Sequence[Ingredient],
    kept: Sequence[Ingredient],
    selection: tuple[GreedySoup | None, dict | None],
    stages: list[int],
    per_stage: bool,
) -> dict[str, Any]:
    """config.json of the soup: the evaluation settings (the first ingredient's), its name and
    seed, and the soup: mode, stages measured, ingredients (kept or not, validation accuracy)."""
    config = evaluation_settings(base)
    greedy, selection_cost = selection
    kept_folders = [str(i.folder) for i in kept]
    entries = []
    for i, ing in enumerate(ingredients):
        entry = {**ing.describe(), "kept": str(ing.folder) in kept_folders}
        if greedy is not None:
            entry["validation_accuracy"] = greedy.individual[i]
        entries.append(entry)
    soup: dict[str, Any] = {
        "mode": mode,
        "paper": PAPER,
        "stages": stages,
        "per_stage": per_stage,
        "rule": "stage t = the mean of the kept ingredients' stage-t checkpoints; row 0 is the "
        "first ingredient's (the pretrained model, the same for every ingredient)"
        if per_stage
        else "final stage only (an ingredient kept only its last checkpoint); row 0 is the first "
        "ingredient's, rows 1..T-1 are absent and the metrics reading them are NaN",
        "averaged": "every floating-point tensor of the model state dict (encoder and heads), "
        "in float64, cast back; integer tensors (BatchNorm num_batches_tracked) are the first "
        "ingredient's",
        "seed_note": "a soup trains nothing: N is --seed, by default the smallest ingredient "
        "seed; the evaluation was built with the first ingredient's seed",
        "ingredients": entries,
    }
    if greedy is not None:
        soup["greedy"] = {
            "validation": VALIDATION,
            "order": [str(ingredients[i].folder) for i in greedy.order],
            "steps": [
                {
                    "ingredients": [str(ingredients[i].folder) for i in s.candidate],
                    "validation_accuracy": s.accuracy,
                    "kept": s.kept,
                }
                for s in greedy.steps
            ],
            "validation_accuracy": greedy.accuracy,
            "cost": selection_cost,
        }
    return {"strategy": name, "seed": seed, "out": str(out), **config, "soup": soup}
