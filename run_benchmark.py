"""cfbench command line: fine-tune an image encoder on a task sequence and measure what it forgets.

python run_benchmark.py --sequence smoke            # offline, about 30 s on a laptop CPU
python run_benchmark.py --sequence 5tasks           # the real benchmark (GPU, datasets)
python run_benchmark.py --sequence smoke --seeds 0 1 2   # several seeds, one run folder each
python run_benchmark.py report results              # figures and tables from saved runs
"""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from pathlib import Path

from benchmark.cli import build_parser, build_report_parser


def report_command(argv: list[str]) -> int:
    args = build_report_parser().parse_args(argv)
    from benchmark.errors import CFBenchError

    try:
        from benchmark.report.build import main_report

        folder = main_report(Path(args.results_dir))
        print(f"report: {folder / 'report.md'}")
        return 0
    except CFBenchError as error:
        return user_error(error, args.debug)


def data_command(argv: list[str]) -> int:
    from benchmark.cli import build_data_parser

    args = build_data_parser().parse_intermixed_args(argv)
    from benchmark.config import default_data_root
    from benchmark.errors import CFBenchError
    from tasks import get_sequence, manage

    try:
        root = Path(args.data_root).expanduser() if args.data_root else default_data_root()
        if args.names and args.sequence:
            raise CFBenchError("give dataset names or --sequence, not both")
        names = args.names
        if not names:
            sequence = get_sequence(args.sequence or "5tasks")
            names = [*sequence.tasks, *sequence.controls]
        if args.action == "list":
            print(manage.format_rows(manage.list_rows(names, root, args.source)))
            return 0
        if args.action == "prepare":
            for name in names:
                print(manage.prepare(name, root, args.source, args.force, args.workers))
            return 0
        problems = [line for name in names for line in manage.verify(name, root)]
        for line in problems:
            print(line, file=sys.stderr)
        if not problems:
            print(f"verified: {', '.join(names)} (prepared store in {root / 'prepared'})")
        return 2 if problems else 0
    except CFBenchError as error:
        return user_error(error, args.debug)


def perf_command(argv: list[str]) -> int:
    from benchmark.cli import build_perf_parser

    args = build_perf_parser().parse_args(argv)
    from benchmark.errors import CFBenchError

    try:
        from benchmark.perf import PerfConfig, run_perf
        from strategies import STRATEGIES

        run_perf(PerfConfig(**{k: v for k, v in vars(args).items() if k != "debug"}), STRATEGIES)
        return 0
    except CFBenchError as error:
        return user_error(error, args.debug)


def user_error(error: Exception, debug: bool) -> int:
    """A problem the user can fix: one line on stderr (traceback only with --debug), exit 2."""
    if debug:
        traceback.print_exc()
    print(f"error: {error}", file=sys.stderr)
    return 2


def parse_strategy_args(items: list[str]) -> dict:
    import yaml

    from benchmark.errors import CFBenchError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CFBenchError(f"--strategy-arg '{item}' is not KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value)  # numbers, booleans and strings as typed
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["report"]:
        return report_command(argv[1:])
    if argv[:1] == ["data"]:
        return data_command(argv[1:])
    if argv[:1] == ["perf"]:
        return perf_command(argv[1:])
    from strategies import STRATEGIES

    args = build_parser(list(STRATEGIES)).parse_args(argv)
    from benchmark.errors import CFBenchError, Terminated

    try:  # pre-emption (SIGTERM): stop as on Ctrl-C
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # main() called outside the main thread: leave signals alone
        previous = None
    try:
        run_all(args, *build_configs(args))
        return 0
    except CFBenchError as error:
        return user_error(error, args.debug)
    except KeyboardInterrupt as error:  # the runner's message says what is saved
        terminated = isinstance(error, Terminated)
        kind = "terminated" if terminated else "interrupted"
        print(f"{kind}; {error}" if str(error) else kind, file=sys.stderr)
        return 143 if terminated else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def build_configs(args: argparse.Namespace) -> tuple:
    """The sequence and one RunConfig per (seed, strategy), every strategy's arguments checked
    before anything trains."""
    from benchmark.config import build_run_config
    from benchmark.errors import CFBenchError
    from strategies import STRATEGIES, resolve
    from tasks import get_sequence

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
    seeds = args.seeds if args.seeds else [args.seed]  # [None]: the config's default seed
    cfgs = []
    for seed in seeds:
        for name in names:
            given = {**sequence.strategy_args.get(name, {}), **extra}
            layer = {"strategy": name, "strategy_args": given, "seed": seed}
            cfgs.append(build_run_config(sequence.defaults, cli, layer))
            resolve(name, given)
    return sequence, cfgs


def run_all(args: argparse.Namespace, sequence, cfgs: list) -> None:
    from benchmark.report.compare import report_comparison
    from benchmark.runner import run
    from strategies import resolve

    folders: dict[int, dict[str, Path]] = {}
    for cfg in cfgs:
        folder = run(cfg, sequence, resolve(cfg.strategy, cfg.strategy_args))
        folders.setdefault(cfg.seed, {})[cfg.strategy] = folder
        if args.tensorboard:
            from benchmark.report.tensorboard import log_run

            log_run(folder)
    if args.strategy == "all":
        for by_strategy in folders.values():
            print(report_comparison(by_strategy))
    if len(cfgs) > 1:
        print(f"figures and mean +- std over seeds: python run_benchmark.py report {cfgs[0].out}")


def _terminate(signum, frame):
    from benchmark.errors import Terminated

    raise Terminated()


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
