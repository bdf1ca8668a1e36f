"""The runs of a grid (``grid`` and ``select``): every cell's run command checked before any
runs (``check_cells``), then the cells run one after another or as Ray tasks
(``execute_cells``); ``run_cell`` is one cell, the function a Ray task runs (Ray pickles it by
reference: it stays a module-level function)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

from benchmark.commands.launch import build_configs
from benchmark.commands.run import build_parser
from benchmark.errors import CFBenchError
from benchmark.grid import executors
from benchmark.report.runs import is_complete
from benchmark.results import run_dir
from benchmark.runner import run
from strategies import resolve


def execute_cells(cells: list, args: argparse.Namespace) -> tuple[list[Path], list[dict]]:
    """Check every cell, then run them on ``args.executor``; their folders and results."""
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
    parser, folders = build_parser(), []
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
    started, status, error, folder = time.time(), "done", None, None
    with contextlib.ExitStack() as stack:
        if log_path:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            log = stack.enter_context(open(log_path, "a", buffering=1))
            stack.enter_context(contextlib.redirect_stdout(log))
            stack.enter_context(contextlib.redirect_stderr(log))
        try:
            sequence, (cfg,) = build_configs(build_parser().parse_args(argv))
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
