"""``make_soup``: a soup's run folder, from its ingredients to its records."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.errors import CFBenchError
from benchmark.results import print_summary
from benchmark.soup.evaluate import average_of, build_soup_session, select_greedy
from benchmark.soup.greedy import GreedySoup
from benchmark.soup.ingredients import Ingredient, every_stage_kept, read_ingredients
from benchmark.soup.output import (
    Target,
    evaluate_stages,
    evaluation_settings,
    open_results,
    out_of_memory_hint,
    target,
)

MODES = ("uniform", "greedy")
PAPER = "Wortsman et al., Model soups, ICML 2022, arXiv 2203.05482"
VALIDATION = (
    "mean over the sequence's tasks of the task head's accuracy (percent) on the task's "
    "validation split (benchmark/probe/splits.py validation_split: 10 % of its train split, at "
    "most 20,000 images, seed 0, never trained on), measured on the final-stage models"
)


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
    at = target(opts, ingredients, f"soup-{opts.mode}", "another --out or --seed")
    setup, session = build_soup_session(first, opts, at.sequence, log)
    with out_of_memory_hint("the soup", session.evaluation.batch_size):
        if opts.mode == "greedy":
            greedy, selection_cost = select_greedy(ingredients, session, n_tasks)
            kept = [ingredients[i] for i in greedy.kept]
        else:
            greedy, selection_cost, kept = None, None, ingredients
        selection = (greedy, selection_cost)
        soup = _soup_config(
            setup.config, opts.mode, at, ingredients, kept, selection, [0, *stages], lacking is None
        )
        results = open_results(at, soup, setup.config.get("test_images"), first)
        evaluate_stages(session, stages, at.name, results, lambda stage: average_of(kept, stage))
    print_summary(results, log, time.time() - started, session.cost.summary())
    return at.folder


def _soup_config(
    base: Mapping[str, Any],
    mode: str,
    at: Target,
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
    return {"strategy": at.name, "seed": at.seed, "out": str(at.out), **config, "soup": soup}
