"""``run_benchmark.py grid``'s options (benchmark/cli.py builds the other commands' parsers)."""

from __future__ import annotations

import argparse

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


def grid_parser(with_file: bool = True) -> argparse.ArgumentParser:
    """The parser; ``with_file=False`` leaves out the FILE positional, which the command takes
    off the front itself (otherwise a run option's value, as in --epochs 1, would land in it)."""
    p = argparse.ArgumentParser(
        prog="run_benchmark.py grid",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    executor_options(p)
    return p


def executor_options(p: argparse.ArgumentParser) -> None:
    """Where the runs go (grid and select share them)."""
    a = p.add_argument
    a(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: one run after another in this process (default); ray: every run a Ray task "
        '(needs pip install "cfbench[ray]")',
    )
    a(
        "--ray-address",
        metavar="ADDR",
        help="address of a running Ray cluster (default: start a local Ray on this machine)",
    )
    a(
        "--gpus-per-run",
        type=float,
        default=1.0,
        metavar="G",
        help="GPUs one run asks for when the cluster has GPUs; fractional for small models "
        "(default: 1)",
    )
    a(
        "--cpus-per-run",
        type=float,
        default=1.0,
        metavar="C",
        help="CPUs one run asks for when the cluster has no GPU (default: 1)",
    )
    a(
        "--max-retries",
        type=int,
        default=2,
        metavar="N",
        help="times Ray reruns a cell whose worker died (killed, node lost); the rerun resumes "
        "from the cell's last checkpoint (default: 2); a run's own failure is not",
    )
    a("--debug", action="store_true", help="show tracebacks for errors")
