"""``run_benchmark.py select``: a strategy's weight chosen on validation, as the papers do.

The LDIFS paper (and L2SP's, EWC's, WiSE-FT's) fixes its weight by a grid search scored on
held-out validation data, then uses that one value. ``select`` runs that grid (one ordinary run
per value and seed, benchmark/grid/), scores every run on validation records only
(benchmark/report/selection.py ``SCORES``; never a test split), prints the table, and writes the
winner into the sequence's selected arguments (tasks/selected.py), which every later run of that
sequence uses and records in its config.json.
"""

from __future__ import annotations

import argparse
import datetime
import math
from collections.abc import Sequence
from pathlib import Path

from benchmark.errors import CFBenchError
from benchmark.grid.cli import executor_options
from benchmark.grid.spec import Cell, GridSpec, parse_values
from benchmark.report.scores import DEFAULT_SCORE, SCORES

DESCRIPTION = """\
Choose a strategy argument by validation: run the strategy once per value of --grid (and per
seed), score every run on the validation splits only (never a test split), print the scores,
and write the best value into the sequence's selected arguments (a registered sequence NAME:
tasks/selected/NAME.yaml; a sequence file x.yaml: x.selected.yaml beside it), which later runs
of the sequence use and record in config.json. The runs are ordinary runs under --out: they
resume, and a rerun skips the finished ones. Options this command does not know (e.g. --epochs
1 --out DIR) are run options passed to every run."""

EPILOG = (
    """\
scores (--score):
"""
    + "\n".join(f"  {k:6s} {v[2]}" for k, v in SCORES.items())
    + """

examples:
  run_benchmark.py select --sequence offline --strategy ldifs --grid lam=1,10,100,300,1000
  run_benchmark.py select --sequence offline --strategy l2sp --grid alpha=0.01,0.1,1 --seeds 0 1

exit codes: 0 chosen (and written unless --no-write), 1 some run failed or no value could be
scored (nothing written), 2 bad input (nothing was run)."""
)


def select_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_benchmark.py select",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a = p.add_argument
    a("--sequence", required=True, metavar="NAME", help="the sequence (name or .yaml path)")
    a("--strategy", required=True, metavar="NAME", help="the strategy whose argument is chosen")
    a(
        "--grid",
        action="append",
        required=True,
        metavar="KEY=V1,V2",
        help="values of one of its arguments, repeatable (several keys: every combination)",
    )
    a(
        "--seeds",
        nargs="+",
        type=int,
        default=[0],
        metavar="N",
        help="seeds per value; a value's score is its mean over them (default: 0)",
    )
    a(
        "--score",
        choices=tuple(SCORES),
        default=DEFAULT_SCORE,
        help=f"validation score to maximise (default: {DEFAULT_SCORE}; see below)",
    )
    a("--no-write", action="store_true", help="print the choice, write nothing")
    executor_options(p)
    return p


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


def select_command(argv: list[str], execute_cells) -> int:
    """``run_benchmark.py select``: run a strategy's grid, choose its value on validation, write
    it into the sequence's selected arguments. ``execute_cells(cells, args) -> (folders,
    results)`` checks and runs the cells (run_benchmark.py, shared with ``grid``)."""
    import sys

    args, run_options = select_parser().parse_known_args(argv)  # --help before torch loads
    from benchmark.errors import print_user_error
    from benchmark.grid import executors
    from tasks import SEQUENCES, get_sequence
    from tasks.selected import selection_path, write_selection

    try:
        get_sequence(args.sequence)  # a bad name fails before anything runs
        grid = selection_grid(args, run_options)
        cells = grid.cells()
        folders, results = execute_cells(cells, args)
        print(executors.summary(cells, results))
        if any(r["status"] == "failed" for r in results):
            print(
                "some runs failed: nothing was written; fix them and rerun (finished runs are "
                "skipped)",
                file=sys.stderr,
            )
            return 1
        scores = score_runs(cells, folders, args.score)
        chosen = choose(scores)
        print(score_table(scores, chosen, args.score))
        if not args.no_write:
            path = selection_path(args.sequence, args.sequence in SEQUENCES)
            write_selection(
                path,
                args.strategy,
                scores[chosen]["args"],
                chosen_by(args, grid, scores, run_options),
            )
            print(f"{args.strategy}: {chosen} written to {path}")
    except CFBenchError as error:
        return print_user_error(error, args.debug)
    except KeyboardInterrupt:
        print(
            "interrupted; rerun the same command to go on (finished runs are skipped)",
            file=sys.stderr,
        )
        return 130
    return 0


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
