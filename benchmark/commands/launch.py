"""From the run command's arguments to runs: the sequence and one RunConfig per (seed, strategy),
every one checked before anything trains (``build_configs``), then the runs (``run_all``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from benchmark.config import build_run_config
from benchmark.errors import CFBenchError
from benchmark.model.heads import lp_heads_for_all
from benchmark.report.compare import report_comparison
from benchmark.runner import run
from benchmark.vrf.evaluator import skip_without_text_tower
from strategies import STRATEGIES, resolve
from tasks import SEQUENCES, get_sequence
from tasks.selected import apply_selection, load_selection, results_selection_path


def parse_strategy_args(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CFBenchError(f"--strategy-arg '{item}' is not KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value)  # numbers, booleans and strings as typed
    return out


def build_configs(args: argparse.Namespace) -> tuple:
    """The sequence and one RunConfig per (seed, strategy), every strategy's arguments checked
    before anything trains."""
    sequence = get_sequence(args.sequence)
    skip = ("strategy_arg", "debug", "seeds", "tensorboard")
    cli = {k: v for k, v in vars(args).items() if k not in skip}
    names = list(STRATEGIES) if args.strategy == "all" else [args.strategy]
    extra = parse_strategy_args(args.strategy_arg)
    if args.strategy == "all" and extra:
        raise CFBenchError(
            "--strategy-arg is for one strategy; with --strategy all, set values per "
            "strategy in the sequence YAML's strategy_args"
        )
    if args.strategy == "all" and args.run_name:
        raise CFBenchError(
            "--run-name names one run; with --strategy all each run is named by "
            "its strategy (use 'run_benchmark.py grid' for sweeps)"
        )
    if args.sequence in SEQUENCES:  # what select chose for it in this results folder
        out = build_run_config(sequence.defaults, cli).out
        sequence = apply_selection(
            sequence, load_selection(results_selection_path(out, args.sequence))
        )
    seeds = args.seeds if args.seeds else [args.seed]  # [None]: the config's default seed
    cfgs = []
    for seed in seeds:
        for name in names:
            given = {**sequence.strategy_args.get(name, {}), **extra}
            layer = {"strategy": name, "strategy_args": given, "seed": seed}
            cfg = build_run_config(sequence.defaults, cli, layer)
            resolve(name, given)
            why = _skipped(cfg, name, args.strategy == "all")
            if why:
                if seed == seeds[0]:
                    print(f"skipping {name}: {why}")
                continue
            cfgs.append(cfg)
    return sequence, cfgs


def _skipped(cfg, name: str, every: bool) -> str | None:
    """Why ``--strategy all`` leaves strategy ``name`` out (None: it runs); a strategy named
    alone that cannot run raises."""
    needs = getattr(STRATEGIES.get(name), "needs_text_tower", False)
    why = skip_without_text_tower(cfg, needs, every)  # VRF; else raises
    if every and name == "lp_ft" and lp_heads_for_all(cfg.head_init, cfg.model):
        why = "with LP-initialised heads for every strategy (--head-init lp, or no text "
        why += "tower) it is exactly ft; run --strategy lp_ft to have it anyway"
    return why


def run_all(args: argparse.Namespace, sequence, cfgs: list) -> None:
    folders: dict[int, dict[str, Path]] = {}
    for cfg in cfgs:
        folder = run(cfg, sequence, resolve(cfg.strategy, cfg.strategy_args))
        folders.setdefault(cfg.seed, {})[cfg.name] = folder
        if args.tensorboard:
            from benchmark.report.tensorboard import log_run  # avalanche's tensorboard: if asked

            log_run(folder)
    if args.strategy == "all":
        for by_strategy in folders.values():
            print(report_comparison(by_strategy))
    if len(cfgs) > 1:
        print(f"figures and mean +- std over seeds: python run_benchmark.py report {cfgs[0].out}")
