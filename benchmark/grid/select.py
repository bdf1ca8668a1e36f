"""A strategy's weight chosen on validation, as the papers do: the work of ``run_benchmark.py
select`` (benchmark/commands/select.py).

The LDIFS paper (and L2SP's, EWC's, WiSE-FT's) fixes its weight by a grid search scored on
held-out validation data, then uses that one value. ``select`` runs that grid (one ordinary run
per value and seed, benchmark/grid/), scores every run on validation records only
(benchmark/report/selection.py ``SCORES``; never a test split), prints the table, and writes the
winner into the sequence's selected arguments (tasks/selected.py), which later runs of that
sequence use and record in their config.json.
"""

from __future__ import annotations

import argparse
import datetime
import math
from collections.abc import Sequence
from pathlib import Path

from benchmark.errors import CFBenchError
from benchmark.grid.spec import Cell, GridSpec, parse_values
from benchmark.report.scores import SCORES


def selection_grid(args: argparse.Namespace, run_options: Sequence[str]) -> GridSpec:
    """The grid: one strategy, its values, the seeds. A value needs 2+ entries to choose from."""
    values = parse_values([f"{args.strategy}.{item}" for item in args.grid])[args.strategy]
    if math.prod(len(v) for v in values.values()) < 2:
        raise CFBenchError(
            "--grid gives one value; give at least two to choose from (e.g. --grid lam=1,10,100)"
        )
    if any(len(set(map(str, v))) != len(v) for v in values.values()):
        raise CFBenchError("--grid repeats a value; give each value once")
    return GridSpec(
        (args.sequence,),
        (args.strategy,),
        tuple(args.seeds),
        {args.strategy: values},
        tuple(run_options),
    )


def score_runs(cells: Sequence[Cell], folders: Sequence[Path], score: str) -> dict[str, dict]:
    """value label -> {"args": the cell's arguments, "seeds": {seed: score}, "mean": float}."""
    from benchmark.report.runs import load_run
    from benchmark.report.selection import base_strategy, validation_score

    out: dict[str, dict] = {}
    for cell, folder in zip(cells, folders, strict=True):
        label = base_strategy(cell.name)[1]
        entry = out.setdefault(label, {"args": dict(cell.args), "seeds": {}})
        try:
            value = validation_score(load_run(folder), score)
        except CFBenchError:  # a failed run left no records
            value = math.nan
        entry["seeds"][cell.seed] = value
    for entry in out.values():
        seeds = list(entry["seeds"].values())
        entry["mean"] = math.nan if any(math.isnan(v) for v in seeds) else sum(seeds) / len(seeds)
    return out


def choose(scores: dict[str, dict]) -> str:
    """The label with the highest mean score (ties: the smallest value, as the report's Selection
    section: benchmark/report/selection.py ``choose_value``)."""
    from benchmark.report.selection import choose_value

    chosen = choose_value({k: v["mean"] for k, v in scores.items()})
    if chosen is None:
        raise CFBenchError(
            "no value could be scored on validation (every run failed or has no "
            "validation records); nothing was written"
        )
    return chosen


def score_table(scores: dict[str, dict], chosen: str, score: str) -> str:
    seeds = sorted({s for e in scores.values() for s in e["seeds"]})
    head = ["value", *(f"seed {s}" for s in seeds), "mean", ""]
    rows = [head]
    for label, e in scores.items():
        cells = [f"{e['seeds'].get(s, math.nan):.2f}" for s in seeds]
        rows.append([label, *cells, f"{e['mean']:.2f}", "<- chosen" if label == chosen else ""])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return f"validation score ({score}: {SCORES[score][2]}), %:\n" + "\n".join(lines)


def chosen_by(args: argparse.Namespace, grid: GridSpec, scores: dict, run_options) -> dict:
    """What tasks/selected.py records next to the chosen arguments."""
    values = grid.values[args.strategy]
    return {
        "score": args.score,
        "definition": SCORES[args.score][2],
        "grid": {k: list(v) for k, v in values.items()},
        "seeds": list(args.seeds),
        "scores": {k: round(e["mean"], 4) for k, e in scores.items()},
        "run_options": list(run_options),
        "date": datetime.date.today().isoformat(),
    }


def selected_markdown(selection: dict[str, dict]) -> str:
    """The selected arguments of a sequence (tasks/selected.py's entries) as a Markdown table:
    strategy, chosen value, the grid's validation scores, score and seeds."""
    lines = [
        "| strategy | chosen | validation score per value (%) | score | seeds |",
        "|---|---|---|---|---|",
    ]
    for strategy, entry in selection.items():
        by = entry.get("chosen_by", {})
        chosen = ",".join(f"{k}={v}" for k, v in entry["args"].items())
        tried = "; ".join(f"{k}: {v:.2f}" for k, v in by.get("scores", {}).items())
        seeds = " ".join(str(s) for s in by.get("seeds", []))
        lines.append(f"| `{strategy}` | `{chosen}` | {tried} | {by.get('score', '?')} | {seeds} |")
    return "\n".join(lines)
