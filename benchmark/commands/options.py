"""The options several commands share, defined once: --debug (every command), --data-root (run,
data, soup, merge), where a grid's runs go (grid, select) and where a model made from finished
runs is written (soup, merge)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_DATA_ROOT = "$CFBENCH_DATA, else ~/.cache/cfbench/data"


def debug_option(a) -> None:
    a("--debug", action="store_true", help="show full tracebacks for errors")


def data_root_option(a, default: str = DEFAULT_DATA_ROOT) -> None:
    a("--data-root", help=f"folder holding one sub-folder per dataset (default: {default})")


def executor_options(a) -> None:
    """Where the runs go (grid and select)."""
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
    debug_option(a)


def output_options(a, made: str, same: str) -> None:
    """Where a model made from finished runs (``made``: "the soup", "the merged run") is written
    and how it is evaluated (soup and merge)."""
    a(
        "--out",
        help=f"results folder {made} is written into (default: the one holding the first "
        "RUN_DIR, so a report there shows it next to its runs)",
    )
    a(
        "--seed",
        type=int,
        help=f"the N of the folder seed<N> of {made}; it trains nothing, so this only names the "
        "folder (default: the smallest seed of the runs)",
    )
    a("--device", help="auto, cpu, cuda or cuda:N (default: the first run's)")
    data_root_option(a, "the first run's")
    a(
        "--eval-batch-size",
        type=int,
        metavar="N",
        help="images per batch of the feature passes; lower it after running out of GPU memory "
        "(default: the first run's)",
    )
    a(
        "--force",
        action="store_true",
        help=f"replace an existing folder of {made} of the {same} (default: refuse)",
    )
    debug_option(a)


def output_values(args: argparse.Namespace) -> dict[str, Any]:
    """What ``output_options`` and --data-root gave, as SoupOptions / MergeOptions fields."""
    return {
        "out": Path(args.out) if args.out else None,
        "seed": args.seed,
        "device": args.device,
        "data_root": Path(args.data_root) if args.data_root else None,
        "eval_batch_size": args.eval_batch_size,
        "force": args.force,
    }


def redone_with_force(make: Callable[[], object], again: str) -> int:
    """``make()`` (a soup, a merge); Ctrl-C exits 130: there is nothing to resume, the command
    is rerun with --force ``again``."""
    try:
        make()
    except KeyboardInterrupt:
        print(f"interrupted; run the same command with --force to {again}", file=sys.stderr)
        return 130
    return 0


def raw_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """A parser whose description and epilog keep their line breaks (run, grid, select)."""
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
