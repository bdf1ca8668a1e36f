"""Strategy arguments chosen on validation by ``run_benchmark.py select``, stored per sequence.

A sequence file ``path/x.yaml`` keeps them in ``path/x.selected.yaml`` beside it. A registered
sequence ``NAME`` ships its selections as package data, ``tasks/selected/NAME.yaml``, which
``select`` never rewrites (an installed package is no place to write): ``select`` writes its
choice beside its runs, ``OUT/selected/NAME.yaml`` (``written_selection_path``), and a run of
``NAME`` with the same ``--out`` reads that file over the shipped one, strategy by strategy
(benchmark/commands/launch.py). The file maps a strategy name to::

    ldifs:
      args: {lam: 100}             # what the sequence now passes to the strategy
      chosen_by:                   # how: never edited by hand, rewritten by select
        score: tasks               # benchmark/report/selection.py SCORES
        definition: mean over tasks of ...
        grid: {lam: [1, 10, 100, 300, 1000]}
        seeds: [0, 1]
        scores: {lam=1: 71.3, lam=10: 72.0, ...}   # mean validation score per value
        run_options: [--epochs, '2']               # the grid's run options, if any
        date: '2026-12-01'

``apply_selection`` merges ``args`` over the sequence's own ``strategy_args`` (a
``--strategy-arg`` on the command line still wins) and every run's ``config.json`` records the
``chosen_by`` of its strategy ("selection").
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from benchmark.errors import CFBenchError
from benchmark.io import write_atomic

SELECTED_DIR = Path(__file__).resolve().parent / "selected"
HEADER = (
    "# Strategy arguments chosen on validation by `run_benchmark.py select` (tasks/selected.py).\n"
    "# Rewritten by that command; rerun it rather than editing values by hand.\n"
)


def selection_path(sequence: str, registered: bool) -> Path:
    """Where the selections of a sequence (a registered name or a .yaml path) live."""
    if registered:
        return SELECTED_DIR / f"{sequence}.yaml"
    path = Path(sequence)
    return path.with_name(path.stem + ".selected.yaml")


def written_selection_path(sequence: str, registered: bool, out: Path) -> Path:
    """Where ``select`` writes a sequence's choice: beside a sequence file, or for a registered
    sequence in the results folder ``out`` of its runs."""
    return results_selection_path(out, sequence) if registered else selection_path(sequence, False)


def results_selection_path(out: Path, sequence: str) -> Path:
    """The selections ``select`` wrote for the registered sequence ``sequence`` under ``out``."""
    return Path(out) / "selected" / f"{sequence}.yaml"


def apply_selection(spec, chosen: dict[str, dict[str, Any]]):
    """The SequenceSpec ``spec`` with the entries ``chosen`` (``load_selection``'s) merged in:
    their arguments over its ``strategy_args``, key by key, their ``chosen_by`` as its
    ``selection`` of their strategies."""
    if not chosen:
        return spec
    args = {k: dict(v) for k, v in spec.strategy_args.items()}
    for strategy, entry in chosen.items():
        args[strategy] = {**args.get(strategy, {}), **entry["args"]}
    selection = {s: {"args": e["args"], **e.get("chosen_by", {})} for s, e in chosen.items()}
    return replace(spec, strategy_args=args, selection={**spec.selection, **selection})


def load_selection(path: Path) -> dict[str, dict[str, Any]]:
    """strategy -> {"args": {...}, "chosen_by": {...}}; empty when the file does not exist."""
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise CFBenchError(
            f"{path} is not valid YAML ({error}); rerun run_benchmark.py select or delete it"
        ) from None
    ok = isinstance(data, dict) and all(
        isinstance(v, dict) and isinstance(v.get("args"), dict) for v in data.values()
    )
    if not ok:
        raise CFBenchError(
            f"{path}: expected 'strategy: {{args: {{...}}, chosen_by: {{...}}}}' "
            "entries; rerun run_benchmark.py select or delete it"
        )
    return data


def write_selection(path: Path, strategy: str, args: dict, chosen_by: dict) -> None:
    """Replace ``strategy``'s entry in ``path`` (other strategies' entries are kept)."""
    data = load_selection(path)
    data[strategy] = {"args": dict(args), "chosen_by": dict(chosen_by)}
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
    try:
        write_atomic(path, HEADER + text)
    except OSError as error:
        raise CFBenchError(
            f"cannot write the selection to {path}: {error.strerror or error}; "
            "copy the sequence to a .yaml file you can write beside and select "
            "on that"
        ) from None
