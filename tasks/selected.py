"""Strategy arguments chosen on validation by ``run_benchmark.py select``, stored per sequence.

A registered sequence ``NAME`` keeps them in ``tasks/selected/NAME.yaml``; a sequence file
``path/x.yaml`` in ``path/x.selected.yaml`` beside it. The file maps a strategy name to::

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

``get_sequence`` merges ``args`` over the sequence's own ``strategy_args`` (a ``--strategy-arg``
on the command line still wins) and every run's ``config.json`` records the ``chosen_by`` of
its strategy ("selection").
"""

from __future__ import annotations

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
