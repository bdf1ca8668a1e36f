"""cfbench command line: fine-tune an image encoder on a task sequence and measure what it forgets.

python run_benchmark.py --sequence smoke            # offline, about 30 s on a laptop CPU
python run_benchmark.py --sequence 5tasks           # the real benchmark (GPU, datasets)
python run_benchmark.py --sequence smoke --seeds 0 1 2   # several seeds, one run folder each
python run_benchmark.py report results              # figures and tables from saved runs
python run_benchmark.py soup RUN_DIR... --mode greedy   # average finished runs' weights
python run_benchmark.py merge RUN_DIR... --method magmax  # merge their per-stage task vectors
python run_benchmark.py select --sequence offline --strategy ldifs --grid lam=1,10,100
                                                    # a weight chosen on validation
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from benchmark.cli import build_parser, build_report_parser
from benchmark.errors import print_user_error
from benchmark.soup.command import soup_command
from strategies import NAMES


def report_command(argv: list[str]) -> int:
    args = build_report_parser().parse_args(argv)
    from benchmark.errors import CFBenchError

    try:
        from benchmark.report.build import main_report

        folder = main_report(Path(args.results_dir))
        print(f"report: {folder / 'report.md'}")
        return 0
    except CFBenchError as error:
        return print_user_error(error, args.debug)


def perf_command(argv: list[str]) -> int:
    from benchmark.cli import build_perf_parser

    args = build_perf_parser().parse_args(argv)
    from benchmark.errors import CFBenchError

    try:
        if args.gpu_check or args.gpu_check_device:
            from benchmark.perf.gpu_check import gpu_check_command

            return gpu_check_command(args)
        from benchmark.perf.run import PerfConfig, run_perf
        from strategies import STRATEGIES

        skip = ("debug", "gpu_check", "gpu_check_device")
        run_perf(PerfConfig(**{k: v for k, v in vars(args).items() if k not in skip}), STRATEGIES)
        return 0
    except CFBenchError as error:
        return print_user_error(error, args.debug)


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
        from benchmark.data_cli import data_command

        return data_command(argv[1:])
    if argv[:1] == ["perf"]:
        return perf_command(argv[1:])
    if argv[:1] == ["soup"]:
        return soup_command(argv[1:])
    if argv[:1] == ["merge"]:
        from benchmark.merge.command import merge_command

        return merge_command(argv[1:])
    if argv[:1] == ["grid"]:
        return grid_command(argv[1:])
    if argv[:1] == ["select"]:
        from benchmark.grid.select import select_command

        return select_command(argv[1:], execute_cells)
    args = build_parser(NAMES).parse_args(argv)
    from benchmark.errors import CFBenchError, Terminated

    try:  # pre-emption (SIGTERM): stop as on Ctrl-C
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # main() called outside the main thread: leave signals alone
        previous = None
    try:
        run_all(args, *build_configs(args))
        return 0
    except CFBenchError as error:
        return print_user_error(error, args.debug)
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
    from benchmark.model.heads import lp_heads_for_all
    from benchmark.vrf.evaluator import skip_without_text_tower
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
    if args.strategy == "all" and args.run_name:
        raise CFBenchError(
            "--run-name names one run; with --strategy all each run is named by "
            "its strategy (use 'run_benchmark.py grid' for sweeps)"
        )
    seeds = args.seeds if args.seeds else [args.seed]  # [None]: the config's default seed
    cfgs = []
    for seed in seeds:
        for name in names:
            given = {**sequence.strategy_args.get(name, {}), **extra}
            layer = {"strategy": name, "strategy_args": given, "seed": seed}
            cfg = build_run_config(sequence.defaults, cli, layer)
            resolve(name, given)
            needs = getattr(STRATEGIES.get(name), "needs_text_tower", False)
            why = skip_without_text_tower(cfg, needs, args.strategy == "all")  # VRF; else raises
            if (
                args.strategy == "all"
                and name == "lp_ft"
                and lp_heads_for_all(cfg.head_init, cfg.model)
            ):
                why = "with LP-initialised heads for every strategy (--head-init lp, or no text "
                why += "tower) it is exactly ft; run --strategy lp_ft to have it anyway"
            if why:
                if seed == seeds[0]:
                    print(f"skipping {name}: {why}")
                continue
            cfgs.append(cfg)
    return sequence, cfgs


def run_all(args: argparse.Namespace, sequence, cfgs: list) -> None:
    from benchmark.report.compare import report_comparison
    from benchmark.runner import run
    from strategies import resolve

    folders: dict[int, dict[str, Path]] = {}
    for cfg in cfgs:
        folder = run(cfg, sequence, resolve(cfg.strategy, cfg.strategy_args))
        folders.setdefault(cfg.seed, {})[cfg.name] = folder
        if args.tensorboard:
            from benchmark.report.tensorboard import log_run

            log_run(folder)
    if args.strategy == "all":
        for by_strategy in folders.values():
            print(report_comparison(by_strategy))
    if len(cfgs) > 1:
        print(f"figures and mean +- std over seeds: python run_benchmark.py report {cfgs[0].out}")


def grid_command(argv: list[str]) -> int:
    """``run_benchmark.py grid``: expand the grid, check every cell, run them, print a summary;
    exit 0 when every cell succeeded, 1 when some failed, 2 on bad input (nothing run)."""
    from benchmark.cli import build_grid_parser
    from benchmark.errors import CFBenchError
    from benchmark.grid import executors, spec

    path = argv[0] if argv and not argv[0].startswith("-") else None
    args, run_options = build_grid_parser(with_file=False).parse_known_args(argv[bool(path) :])
    try:
        file = spec.load_grid_file(Path(path)) if path else None
        values = spec.parse_values(args.grid)
        grid = spec.build_grid(
            file, args.sequence, args.strategy, args.seeds, values, run_options, NAMES
        )
        cells = grid.cells()
        folders, results = execute_cells(cells, args)
    except CFBenchError as error:
        return print_user_error(error, args.debug)
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


def execute_cells(cells: list, args: argparse.Namespace) -> tuple[list[Path], list[dict]]:
    """Check every cell, then run them on ``args.executor``; their folders and results."""
    from benchmark.grid import executors

    folders = check_cells(cells)
    print(f"{len(cells)} runs ({args.executor})")
    if args.executor == "local":
        return folders, executors.run_local(cells, run_cell)
    options = executors.RayOptions(
        args.ray_address, args.gpus_per_run, args.cpus_per_run, args.max_retries
    )
    index = {id(c): folders[i] for i, c in enumerate(cells)}
    return folders, executors.run_ray(cells, run_cell, options, lambda c: index[id(c)] / "grid.log")


def check_cells(cells: list) -> list[Path]:
    """Every cell's command checked (its sequence, strategy and arguments) before anything runs;
    their run folders, which must differ."""
    from benchmark.errors import CFBenchError
    from benchmark.results import run_dir

    parser, folders = build_parser(NAMES), []
    for cell in cells:
        try:
            sequence, (cfg,) = build_configs(parser.parse_args(cell.argv()))
        except CFBenchError as error:
            raise CFBenchError(f"grid cell {cell.label}: {error}; no cell was run") from None
        folder = run_dir(cfg.out, sequence.name, cfg.name, cfg.seed)
        if folder in folders:
            raise CFBenchError(
                f"grid cells {cells[folders.index(folder)].label} and "
                f"{cell.label} would share {folder}"
            )
        folders.append(folder)
    return folders


def run_cell(argv: list[str], log_path: str | None = None) -> dict:
    """One grid cell: the run command with ``argv`` (resuming its folder if it has checkpoints),
    its output appended to ``log_path`` when given. Never raises for the run's own failures."""
    import contextlib
    import time

    from benchmark.errors import CFBenchError
    from benchmark.report.runs import is_complete
    from benchmark.results import run_dir
    from benchmark.runner import run
    from strategies import resolve

    started, status, error, folder = time.time(), "done", None, None
    with contextlib.ExitStack() as stack:
        if log_path:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            log = stack.enter_context(open(log_path, "a", buffering=1))
            stack.enter_context(contextlib.redirect_stdout(log))
            stack.enter_context(contextlib.redirect_stderr(log))
        try:
            sequence, (cfg,) = build_configs(build_parser(NAMES).parse_args(argv))
            folder = run_dir(cfg.out, sequence.name, cfg.name, cfg.seed)
            if not cfg.fresh and is_complete(folder):
                status = "skipped"
            else:
                run(cfg, sequence, resolve(cfg.strategy, cfg.strategy_args))
        except CFBenchError as failure:
            status, error = "failed", str(failure).splitlines()[0]
            print(f"error: {error}", file=sys.stderr)
    return {
        "status": status,
        "error": error,
        "seconds": time.time() - started,
        "folder": str(folder) if folder else None,
    }


def _terminate(signum, frame):
    from benchmark.errors import Terminated

    raise Terminated()


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
