"""``run_benchmark.py report RESULTS_DIR``: figures and tables from saved runs (the work is in
benchmark/report/)."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.commands.options import debug_option


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_benchmark.py report",
        description="Regenerate RESULTS_DIR/report/ (heatmaps, delta-LP bars, accuracy curves, "
        "comparison table as CSV/Markdown/LaTeX, report.md) from the run folders saved under "
        "RESULTS_DIR. Nothing is re-run.",
    )
    p.add_argument(
        "results_dir",
        metavar="RESULTS_DIR",
        help="folder holding <sequence>/<strategy>/seed<N>/ run folders",
    )
    debug_option(p.add_argument)
    return p


def run(args: argparse.Namespace) -> int:
    from benchmark.report.build import main_report  # pandas, matplotlib: not for --help

    folder = main_report(Path(args.results_dir))
    print(f"report: {folder / 'report.md'}")
    return 0
