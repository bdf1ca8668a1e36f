"""``run_benchmark.py select``: a strategy's weight chosen on validation, as the papers do (the
scoring is in benchmark/grid/select.py, the runs in cells.py)."""

from __future__ import annotations

import argparse
import sys

from benchmark.commands.options import executor_options, raw_parser
from benchmark.grid import executors, select
from benchmark.report.scores import DEFAULT_SCORE, SCORES

DESCRIPTION = """\
Choose a strategy argument by validation: run the strategy once per value of --grid (and per
seed), score every run on the validation splits only (never a test split), print the scores,
and write the best value into the sequence's selected arguments (a sequence file x.yaml:
x.selected.yaml beside it; a registered sequence NAME: OUT/selected/NAME.yaml in the results
folder of the runs, since the selections shipped in the package are not rewritten), which later
runs of the sequence (of NAME: those with the same --out) use and record in config.json. The
runs are ordinary runs under --out: they resume, and a rerun skips the finished ones. Options
this command does not know (e.g. --epochs 1 --out DIR) are run options passed to every run."""

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


def build_parser() -> argparse.ArgumentParser:
    p = raw_parser("run_benchmark.py select", DESCRIPTION, EPILOG)
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
    executor_options(a)
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The options; those select does not know are kept as ``run_options`` for every run."""
    args, args.run_options = build_parser().parse_known_args(argv)
    return args


def run(args: argparse.Namespace) -> int:
    """Run the strategy's grid, choose its value on validation, write it into the sequence's
    selected arguments: 0 chosen, 1 some run failed or nothing could be scored."""
    try:
        return _select(args)
    except KeyboardInterrupt:
        print(
            "interrupted; rerun the same command to go on (finished runs are skipped)",
            file=sys.stderr,
        )
        return 130


def _select(args: argparse.Namespace) -> int:
    from benchmark.commands.cells import execute_cells  # torch: not for --help
    from tasks import SEQUENCES, get_sequence
    from tasks.selected import write_selection, written_selection_path

    get_sequence(args.sequence)  # a bad name fails before anything runs
    grid = select.selection_grid(args, args.run_options)
    cells = grid.cells()
    folders, results = execute_cells(cells, args)
    print(executors.summary(cells, results))
    if any(r["status"] == "failed" for r in results):
        print(
            "some runs failed: nothing was written; fix them and rerun (finished runs are skipped)",
            file=sys.stderr,
        )
        return 1
    scores = select.score_runs(cells, folders, args.score)
    chosen = select.choose(scores)
    print(select.score_table(scores, chosen, args.score))
    if not args.no_write:
        out = folders[0].parents[2]  # the runs' OUT/<sequence>/<name>/seed<N>
        path = written_selection_path(args.sequence, args.sequence in SEQUENCES, out)
        by = select.chosen_by(args, grid, scores, args.run_options)
        write_selection(path, args.strategy, scores[chosen]["args"], by)
        print(f"{args.strategy}: {chosen} written to {path}")
    return 0
