"""Where a run made from finished runs (a soup, a merge) is written, and how it is evaluated: its
folder (checked before any work), its RunResults opened with the first run's row 0, its stages
evaluated one by one, and the one-line hint when the GPU runs out of memory."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from benchmark.errors import CFBenchError
from benchmark.phases import OutOfMemory
from benchmark.results import RunResults, run_dir
from benchmark.soup.evaluate import sequence_from_json
from benchmark.soup.ingredients import Ingredient
from tasks.sequences import SequenceSpec

RECORD_KEYS = ("stage", "stage_task", "dataset", "role", "kind", "accuracy")


@dataclass(frozen=True)
class Target:
    """The run folder OUT/<sequence>/<name>/seed<N> being written."""

    folder: Path
    out: Path
    name: str
    seed: int
    sequence: SequenceSpec


def default_out(folder: Path) -> Path:
    """OUT of a run folder OUT/<sequence>/<strategy>/seed<N>."""
    parents = Path(folder).resolve().parents
    if len(parents) < 4:
        raise CFBenchError(f"cannot tell the results folder of {folder}; give --out")
    return parents[2]


def target(opts: Any, runs: list[Ingredient], name: str, choose: str) -> Target:
    """The folder ``opts`` (out, seed, force) asks for; an existing one is refused without
    --force (``choose``: the options that would name another)."""
    seed = opts.seed if opts.seed is not None else min(r.seed for r in runs)
    out = Path(opts.out) if opts.out is not None else default_out(runs[0].folder)
    sequence = sequence_from_json(runs[0].config["sequence_spec"])
    folder = run_dir(out, sequence.name, name, seed)
    if folder.exists() and any(folder.iterdir()) and not opts.force:
        raise CFBenchError(f"{folder} already exists; --force replaces it, or choose {choose}")
    return Target(folder, out, name, seed, sequence)


def open_results(
    at: Target, config: dict[str, Any], test_images: Mapping | None, first: Ingredient
) -> RunResults:
    """A fresh run folder (an old one removed: ``target`` let it through only with --force)
    with ``config`` and the first run's row 0 (the pretrained model's records)."""
    if at.folder.exists():
        shutil.rmtree(at.folder)
    identity = {"sequence": at.sequence.name, "strategy": at.name, "seed": at.seed}
    tasks, controls = list(at.sequence.tasks), list(at.sequence.controls)
    results = RunResults(at.folder, identity, tasks, controls)
    results.test_images = dict(test_images or {})
    results.write_config(config)
    row0 = [r for r in first.final().records if r["stage"] == 0]
    results.append([{k: r[k] for k in RECORD_KEYS} for r in row0])
    results.write()
    return results


@contextmanager
def out_of_memory_hint(what: str, batch_size: int) -> Iterator[None]:
    """GPU out of memory inside: one line saying to rerun at half the evaluation batch."""
    try:
        yield
    except OutOfMemory:
        half = max(1, batch_size // 2)
        raise CFBenchError(
            f"GPU out of memory while evaluating {what}; rerun with --force "
            f"--eval-batch-size {half}"
        ) from None


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
