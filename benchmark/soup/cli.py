"""The options of ``run_benchmark.py soup`` and their help (the command is in command.py, the
work in make.py)."""

from __future__ import annotations

import argparse

SOUP_EPILOG = """Each RUN_DIR must be finished (every stage) and keep its checkpoints. Refused,
with one line and exit 2: fewer than 2 runs, runs of another sequence (tasks, controls), from
other initial weights (config.json initial_weights) or data, an unfinished run, a missing or
corrupt checkpoint, task heads of another kind (zero-shot and LP-initialised ones, e.g. ft with
lp_ft). Soup stage t averages the runs' stage-t checkpoints when every run was made
with --keep-checkpoints all; otherwise only the final stage is measured (row 0 is the first
run's, the pretrained row every run shares; rows 1..T-1 are absent, so forgetting, BWT and the
zero-shot Transfer and Avg are n/a). config.json lists the ingredients (folders, strategies,
seeds; for greedy, their validation accuracies and which were kept)."""


def soup_parser() -> argparse.ArgumentParser:
    """``run_benchmark.py soup``: average finished runs' weights (benchmark/soup/)."""
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


def output_options(a, made: str, same: str) -> None:
    """Where a model made from finished runs (``made``: "the soup", "the merged run") is written
    and how it is evaluated: the options ``soup`` and ``merge`` share."""
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
    a("--data-root", help="dataset folder (default: the first run's)")
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
    a("--debug", action="store_true", help="show full tracebacks for errors")
