"""The ingredients of a soup: finished run folders, read and checked before anything is
built."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmark.checkpoint.state import Checkpoint, first_line
from benchmark.checkpoint.store import INDEX, CheckpointStore
from benchmark.errors import CFBenchError
from benchmark.report.runs import load_run
from benchmark.soup.average import _short, is_head_scale


@dataclass
class Ingredient:
    """One finished run folder and what the soup needs from it."""

    folder: Path
    config: dict  # its config.json
    index: dict  # its checkpoint.json

    @property
    def n_tasks(self) -> int:
        return len(self.config["sequence_spec"]["tasks"])

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    def stage_path(self, stage: int) -> Path:
        return CheckpointStore(self.folder, {}).path(stage)

    def final(self) -> Checkpoint:
        """The final stage's checkpoint, checked as a resume checks it (size, SHA-256, format)."""
        return CheckpointStore(self.folder, self.index.get("settings", {})).latest()

    def model_state(self, stage: int) -> dict[str, torch.Tensor]:
        """The model state dict of one stage (1..T) of this run."""
        if stage == self.n_tasks:
            return self.final().model
        path = self.stage_path(stage)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unpickling failure means unusable
            raise CFBenchError(
                f"checkpoint {path} cannot be loaded ({first_line(error)}); put back an intact "
                f"copy, or leave {self.folder} out"
            ) from None
        if not isinstance(state, dict) or state.get("stage") != stage or "model" not in state:
            raise CFBenchError(
                f"{path} is not the stage-{stage} checkpoint of a cfbench run; put back an "
                f"intact copy, or leave {self.folder} out"
            )
        return state["model"]

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {
            "folder": str(self.folder),
            "strategy": c.get("strategy"),
            "name": c.get("run_name") or c.get("strategy"),
            "seed": self.seed,
            "strategy_config": c.get("strategy_config"),
            "train": c.get("train"),
            "epochs": c["sequence_spec"].get("epochs"),
        }


def read_ingredients(folders: Sequence[Path], minimum: int = 2) -> list[Ingredient]:
    """Every run folder checked for a soup (or a merge, benchmark/merge/), in the order given.
    CFBenchError (one line naming the folder and the fix) for fewer than ``minimum``, a folder
    given twice, a folder that is not a finished cfbench run with its checkpoints, or runs of
    other sequences, other initial weights or other data than the first."""
    if len(folders) < minimum:
        raise CFBenchError(
            f"a soup needs at least {minimum} run folders, got {len(folders)}; give several runs "
            "of one sequence (e.g. other seeds or learning rates)"
        )
    out: list[Ingredient] = []
    seen: set[Path] = set()
    scales: dict[str, torch.Tensor] = {}
    for folder in map(Path, folders):
        if folder.resolve() in seen:
            raise CFBenchError(f"{folder} is given twice; give each run folder once")
        seen.add(folder.resolve())
        ingredient = _read_one(folder)
        # missing, truncated or corrupt: refused now, before anything is built
        final = ingredient.final().model
        if out:
            _check_same(out[0], ingredient)
            _check_heads(out[0], ingredient, scales, final)
        else:
            scales = {k: v for k, v in final.items() if is_head_scale(k)}
        out.append(ingredient)
    return out


def _check_heads(
    first: Ingredient,
    other: Ingredient,
    scales: Mapping[str, torch.Tensor],
    final: Mapping[str, torch.Tensor],
) -> None:
    """Task heads of one kind: the same initialisation (zero-shot or LP), and for state dicts
    written before the logit scale was folded into the head weights, the same form."""
    kind, other_kind = head_kind(first.config), head_kind(other.config)
    if kind != other_kind:
        raise CFBenchError(
            f"the task heads of {other.folder} are {HEAD_KINDS[other_kind]}, those of "
            f"{first.folder} {HEAD_KINDS[kind]} (e.g. ft and lp_ft), which cannot be averaged; "
            f"leave {other.folder} out"
        )
    legacy = {k for k in final if is_head_scale(k)}
    if legacy != set(scales):
        old = other.folder if legacy else first.folder
        raise CFBenchError(
            f"{old} was written by an earlier cfbench (heads with a separate logit scale, which "
            f"trained ~100x faster) and cannot be averaged with runs of this version; leave "
            f"{other.folder} out, or rerun {old} with --fresh"
        )
    for key, ref in scales.items():
        if not torch.equal(final[key], ref):
            raise CFBenchError(
                f"the task heads of {other.folder} have scale {_short(final[key])} ({key}), "
                f"those of {first.folder} {_short(ref)}, which cannot be averaged; leave "
                f"{other.folder} out"
            )


HEAD_KINDS = {"zs": "zero-shot", "lp": "LP-initialised"}


def head_kind(config: Mapping[str, Any]) -> str:
    """How a run's task heads started, from its config.json: ``lp`` under ``--head-init lp`` (or
    no text tower) or for ``lp_ft``, else ``zs``."""
    return "lp" if config.get("head_init") == "lp" or config.get("strategy") == "lp_ft" else "zs"


def _read_one(folder: Path) -> Ingredient:
    fix = "give finished run folders OUT/<sequence>/<strategy>/seed<N>"
    try:
        config = json.loads((folder / "config.json").read_text())
        config["sequence_spec"]["tasks"], config["initial_weights"]  # noqa: B018 - key check
    except (OSError, ValueError, KeyError, TypeError):
        raise CFBenchError(
            f"{folder} is not a cfbench run folder (no readable config.json); {fix}"
        ) from None
    for made in ("soup", "merge"):  # made from other runs: not an ingredient
        if made in config:
            raise CFBenchError(f"{folder} is a {made}, not a fine-tuning run; {fix}")
    try:
        index = json.loads((folder / INDEX).read_text())
    except (OSError, ValueError):
        raise CFBenchError(
            f"{folder} has no readable {INDEX}, so no checkpoint to take its weights from; "
            f"rerun it (the same command resumes or reports it complete) or leave it out"
        ) from None
    ingredient = Ingredient(folder, config, index)
    done = index.get("stage") == ingredient.n_tasks
    try:
        done = done and load_run(folder).complete
    except CFBenchError:
        done = False
    if not done:
        raise CFBenchError(
            f"{folder} is not finished (stage {index.get('stage')} of {ingredient.n_tasks}); "
            "run its command again to finish it, or leave it out"
        )
    return ingredient


def _check_same(first: Ingredient, other: Ingredient) -> None:
    a, b = first.config, other.config
    fix = f"runs combine only within one sequence and set of weights: leave {other.folder} out"
    sa, sb = a["sequence_spec"], b["sequence_spec"]
    what = ("name", "tasks", "controls")
    if [sa.get(k) for k in what] != [sb.get(k) for k in what]:
        raise CFBenchError(
            f"{other.folder} is a run of sequence '{sb.get('name')}' (tasks {sb.get('tasks')}, "
            f"controls {sb.get('controls')}), {first.folder} of '{sa.get('name')}' (tasks "
            f"{sa.get('tasks')}, controls {sa.get('controls')}); {fix}"
        )
    if a["initial_weights"] != b["initial_weights"]:
        raise CFBenchError(
            f"{other.folder} was fine-tuned from other initial weights than {first.folder} "
            f"(initial_weights {b['initial_weights'][:12]}... vs {a['initial_weights'][:12]}...; "
            f"model {b.get('model')}/{b.get('pretrained')} vs {a.get('model')}/"
            f"{a.get('pretrained')}, seed {b.get('seed')} vs {a.get('seed')}); {fix}"
        )
    # the same weights under the other activation are another model (runs before QuickGELU was
    # chosen per weights recorded no quick_gelu: they were built with GELU)
    qa, qb = a.get("quick_gelu", False), b.get("quick_gelu", False)
    if qa != qb:
        raise CFBenchError(
            f"{other.folder} was built with {'QuickGELU' if qb else 'GELU'}, {first.folder} with "
            f"{'QuickGELU' if qa else 'GELU'} (config.json quick_gelu); {fix}"
        )
    name = _other_data(a.get("data", {}), b.get("data", {}))
    if name:
        raise CFBenchError(
            f"{other.folder} was trained and evaluated on other data than "
            f"{first.folder} (dataset {name}); {fix}"
        )


DATA_KEYS = ("train", "test", "labels_sha256")  # what a dataset is, wherever it was read from


def _other_data(a: Mapping, b: Mapping) -> str | None:
    """The first dataset whose split sizes or labels differ between two ``data`` records."""
    for name in sorted(set(a) | set(b)):
        da, db = a.get(name) or {}, b.get(name) or {}
        if [da.get(k) for k in DATA_KEYS] != [db.get(k) for k in DATA_KEYS]:
            return name
    return None


def every_stage_kept(ingredients: Sequence[Ingredient]) -> Ingredient | None:
    """None when every ingredient kept every stage's checkpoint, else the first that did not."""
    for ing in ingredients:
        if not all(ing.stage_path(s).is_file() for s in range(1, ing.n_tasks + 1)):
            return ing
    return None
