"""``run_benchmark.py grid``: a grid of runs (sequences x strategies x seeds x strategy-argument
values), each an ordinary run, checked first, then run here or on Ray (benchmark/grid/: the grid
as data and its executors; cells.py: the runs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.commands.options import executor_options, raw_parser
from benchmark.grid import executors, spec
from strategies import NAMES

DESCRIPTION = """\
Run a grid of benchmark runs: sequences x strategies x seeds x strategy-argument values. Every
cell is an ordinary run (run_benchmark.py with that sequence, strategy, seed and arguments), so it
resumes from its folder's checkpoints and writes its own run folder under --out; every cell is
checked before any runs. Options this command does not know (e.g. --epochs 1 --out DIR) are run
options passed to every cell."""

EPILOG = """\
examples:
  run_benchmark.py grid --sequence smoke --strategy ft ldifs --seeds 0 1 --grid ldifs.lam=1,10
  run_benchmark.py grid grid.yaml --executor ray               # a local Ray on this machine
  run_benchmark.py grid grid.yaml --executor ray --ray-address ray://head:10001   # a cluster
then: run_benchmark.py report OUT (mean +- std over seeds; one row per strategy and value)

exit codes: 0 every cell done or already complete, 1 some cell failed (see the summary),
2 bad input (nothing was run)."""


def build_parser(with_file: bool = True) -> argparse.ArgumentParser:
    """The parser; ``with_file=False`` leaves out the FILE positional, which the command takes
    off the front itself (otherwise a run option's value, as in --epochs 1, would land in it)."""
    p = raw_parser("run_benchmark.py grid", DESCRIPTION, EPILOG)
    a = p.add_argument
    if with_file:
        what = "grid YAML file: sequences, strategies, seeds, grid, options (documented in "
        a("file", nargs="?", help=what + "benchmark/grid/spec.py); flags below replace its axes")
    a("--sequence", nargs="+", metavar="NAME", help="sequences (names or .yaml paths)")
    a(
        "--strategy",
        nargs="+",
        metavar="NAME",
        help="strategies (registered names or package.module:factory)",
    )
    a("--seeds", nargs="+", type=int, metavar="N", help="seeds (default: the file's, else 0)")
    a(
        "--grid",
        action="append",
        default=[],
        metavar="STRATEGY.KEY=V1,V2",
        help="values of one strategy argument, repeatable (e.g. ldifs.lam=1,10,100); a "
        "strategy's values multiply; the values are part of the run's name",
    )
    executor_options(a)
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The grid's options; a FILE first is taken off the front here (in the parser, a run
    option's value, as in --epochs 1, would land in it), and the options the grid does not know
    are kept as ``run_options`` for every cell."""
    path = argv[0] if argv and not argv[0].startswith("-") else None
    args, run_options = build_parser(with_file=False).parse_known_args(argv[bool(path) :])
    args.file, args.run_options = path, run_options
    return args


def run(args: argparse.Namespace) -> int:
    """Expand the grid, check every cell, run them, print a summary; exit 0 when every cell
    succeeded, 1 when some failed, 2 on bad input (nothing run)."""
    from benchmark.commands.cells import execute_cells  # torch: not for --help

    try:
        file = spec.load_grid_file(Path(args.file)) if args.file else None
        values = spec.parse_values(args.grid)
        grid = spec.build_grid(
            file, args.sequence, args.strategy, args.seeds, values, args.run_options, NAMES
        )
        cells = grid.cells()
        folders, results = execute_cells(cells, args)
    except KeyboardInterrupt:  # the cells' folders hold what is saved; finished ones are skipped
        print(
            "interrupted; run the same grid command to go on (finished cells are skipped, "
            "the interrupted one resumes)",
            file=sys.stderr,
        )
        return 130
    print(executors.summary(cells, results))
    print(f"report: python run_benchmark.py report {folders[0].parents[2]}")
    return 0 if all(r["status"] != "failed" for r in results) else 1
