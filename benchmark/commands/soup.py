"""``run_benchmark.py soup RUN_DIR... --mode M``: average finished runs' weights and evaluate
the average like a run (the work is in benchmark/soup/)."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.commands.options import output_options, output_values, redone_with_force

SOUP_EPILOG = """Each RUN_DIR must be finished (every stage) and keep its checkpoints. Refused,
with one line and exit 2: fewer than 2 runs, runs of another sequence (tasks, controls), from
other initial weights (config.json initial_weights) or data, an unfinished run, a missing or
corrupt checkpoint, task heads of another kind (zero-shot and LP-initialised ones, e.g. ft with
lp_ft). Soup stage t averages the runs' stage-t checkpoints when every run was made
with --keep-checkpoints all; otherwise only the final stage is measured (row 0 is the first
run's, the pretrained row every run shares; rows 1..T-1 are absent, so forgetting, BWT and the
zero-shot Transfer and Avg are n/a). config.json lists the ingredients (folders, strategies,
seeds; for greedy, their validation accuracies and which were kept)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_benchmark.py soup",
        description="Model soups (Wortsman et al., ICML 2022, arXiv 2203.05482): average the "
        "encoder and head weights of runs of one sequence fine-tuned from the same pretrained "
        "weights (other seeds, learning rates or strategies), evaluate the average like a run "
        "(LP, zero-shot and head matrices, metrics.json) and write it as the run folder "
        "OUT/<sequence>/soup-<mode>/seed<N>/, which 'run_benchmark.py report OUT' includes.",
        epilog=SOUP_EPILOG,
    )
    a = p.add_argument
    a(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="finished run folders OUT/<sequence>/<strategy>/seed<N> (at least 2)",
    )
    a(
        "--mode",
        required=True,
        choices=["uniform", "greedy"],
        help="uniform: the mean of every run's weights; greedy: sort the runs by validation "
        "accuracy (mean over tasks of the task head's accuracy on the validation split each "
        "task's training never saw, final stage), start from the best, and add the next run "
        "only if the mean of the kept runs plus it scores strictly higher",
    )
    output_options(a, "the soup", "same mode and seed")
    return p


def run(args: argparse.Namespace) -> int:
    from benchmark.soup.make import SoupOptions, make_soup  # torch: not for --help

    options = SoupOptions(
        folders=tuple(Path(f) for f in args.run_dirs),
        mode=args.mode,
        **output_values(args),
    )
    return redone_with_force(lambda: make_soup(options), "make the soup again")
