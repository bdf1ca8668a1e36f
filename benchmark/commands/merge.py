"""``run_benchmark.py merge RUN_DIR... --method M``: merge finished runs' per-stage task vectors
and evaluate the merged model like a run (the work is in benchmark/merge/)."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.commands.options import output_options, output_values, redone_with_force
from benchmark.merge import METHOD_NAMES

MERGE_EPILOG = """Each RUN_DIR must be finished and made with --keep-checkpoints all (one checkpoint
per stage). Stage t of the merged run combines the task vectors tau = theta(s) - theta_0 of
stages s = 1..t of every RUN_DIR (MagMax's definition; theta_0 = the pretrained encoder), so the
merged run has every row 0..T and is evaluated like a run (LP, zero-shot and head matrices,
metrics.json). lines scales each stage's own task vector (the mean over RUN_DIRs) post hoc.
Only the encoder is merged; the task heads are the runs' stage-t heads (their mean over
RUN_DIRs, as a uniform soup has them). Refused, with one line and exit 2: an unknown method,
an option of another method, a run without per-stage checkpoints, runs of other sequences,
initial weights, data or head kinds, an unfinished run, a missing or corrupt checkpoint.
Defaults: task_arithmetic lambda = 1/n (n task vectors: their mean, as MagMax's code uses it);
ties k = 20, lambda = 0.55 (MagMax's code); magmax lambda = 0.5 (official); lines alpha = 0.5,
beta = 1 - alpha (the official code picks alpha on validation in 0..1, beta = 1 - alpha);
--lines alpha = ||sum tau||_1 / (n ||merged||_1) (official), beta = 0.5 (the official code picks
it on validation in 0.1..1)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_benchmark.py merge",
        description="Model merging after each task: task arithmetic (Ilharco et al., ICLR 2023), "
        "TIES (Yadav et al., NeurIPS 2023), MagMax (Marczak et al., ECCV 2024) and LiNeS (Wang "
        "et al., ICLR 2025) over finished sequential runs' per-stage checkpoints, written as the "
        "run folder OUT/<sequence>/<name>/seed<N>/, which 'run_benchmark.py report OUT' "
        "includes.",
        epilog=MERGE_EPILOG,
    )
    a = p.add_argument
    a(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="finished run folders OUT/<sequence>/<strategy>/seed<N> kept with "
        "--keep-checkpoints all (one or more)",
    )
    a("--method", required=True, metavar="METHOD", help=f"one of {', '.join(METHOD_NAMES)}")
    a(
        "--lam",
        type=float,
        metavar="LAMBDA",
        help="theta = theta_0 + LAMBDA * merged (task_arithmetic, ties, magmax; defaults above)",
    )
    a(
        "--k",
        type=float,
        metavar="PERCENT",
        help="ties: keep the top PERCENT %% of each task vector's entries by magnitude (20)",
    )
    a(
        "--alpha",
        type=float,
        help="LiNeS: the scale of the first block and of the tensors "
        "outside the blocks (lines, or with --lines)",
    )
    a(
        "--beta",
        type=float,
        help="LiNeS: the last block's scale minus alpha; block l of L gets "
        "alpha + beta (l-1)/(L-1)",
    )
    a(
        "--lines",
        action="store_true",
        help="scale the merged task vector of task_arithmetic, ties or magmax by LiNeS' "
        "per-block alpha + beta (l-1)/(L-1) instead of a single LAMBDA",
    )
    a("--name", help="the merged run's folder name (default: METHOD, METHOD-lines with --lines)")
    output_options(a, "the merged run", "same name and seed")
    return p


def run(args: argparse.Namespace) -> int:
    from benchmark.merge.make import MergeOptions, make_merge  # torch: not for --help

    options = MergeOptions(
        folders=tuple(Path(f) for f in args.run_dirs),
        method=args.method,
        lam=args.lam,
        k=args.k,
        alpha=args.alpha,
        beta=args.beta,
        lines=args.lines,
        name=args.name,
        **output_values(args),
    )
    return redone_with_force(lambda: make_merge(options), "merge again")
