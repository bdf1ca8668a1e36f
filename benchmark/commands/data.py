"""``run_benchmark.py data list|prepare|verify``: what is on disk, fetch and prepare, check (the
work is in tasks/manage.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.commands.options import data_root_option, debug_option
from benchmark.config import default_data_root
from benchmark.errors import CFBenchError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_benchmark.py data",
        description="Datasets. list: the source a run would read each one from, whether it is "
        "on disk, its split sizes (and those of its fixed split) and its size on disk; nothing is "
        "downloaded. prepare: fetch what is missing and decode every split once into the "
        "prepared store DATA_ROOT/prepared/<name>/, which runs then read (resumable: a killed "
        "prepare continues); prepare --sequence offline instead builds that sequence's "
        "DATA_ROOT/<stem>.npz archives and its ResNet-20 checkpoint from public sources. "
        "verify: recompute a prepared store's split sizes, class counts and "
        "SHA-256 fingerprints and compare them with what prepare recorded and with the fixed "
        "splits; one line per mismatch on stderr, exit 2.",
    )
    a = p.add_argument
    a("action", choices=["list", "prepare", "verify"], help="what to do")
    a("names", nargs="*", metavar="NAME", help="datasets (default: those of --sequence)")
    a(
        "--sequence",
        help="every task and control of this sequence (default: 5tasks when no NAME is given)",
    )
    data_root_option(a)
    a(
        "--source",
        default="auto",
        choices=["auto", "torchvision", "hf", "folder"],
        help="read (and for prepare, fetch) only from this kind of source (default: auto: "
        "every source on disk first, then every source that can download)",
    )
    a(
        "--force",
        action="store_true",
        help="prepare: write the store again even when it is complete (the repair for a store "
        "that verify or a run reports broken; with --sequence offline: build the archives again)",
    )
    a(
        "--workers",
        type=int,
        default=0,
        help="prepare: image-decoding processes (default: 0, decode in this process)",
    )
    debug_option(a)
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_intermixed_args(argv)  # dataset names after the options too


def run(args: argparse.Namespace) -> int:
    from tasks import get_sequence, manage  # torch, numpy: not for --help

    root = Path(args.data_root).expanduser() if args.data_root else default_data_root()
    if args.names and args.sequence:
        raise CFBenchError("give dataset names or --sequence, not both")
    if args.action == "prepare" and args.sequence == "offline":
        from tasks.offline_build import prepare_offline  # public sources -> <stem>.npz

        prepare_offline(root, args.force)
        return 0
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
