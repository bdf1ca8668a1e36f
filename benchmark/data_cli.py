"""The options of ``run_benchmark.py data`` and their help (the program flow is in
run_benchmark.py, the work in tasks/manage.py)."""

from __future__ import annotations

import argparse


def data_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_benchmark.py data",
        description="Datasets. list: the source a run would read each one from, whether it is "
        "on disk, its split sizes (and those of its fixed split) and its size on disk; nothing is "
        "downloaded. prepare: fetch what is missing and decode every split once into the "
        "prepared store DATA_ROOT/prepared/<name>/, which runs then read (resumable: a killed "
        "prepare continues). verify: recompute a prepared store's split sizes, class counts and "
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
    a("--data-root", help="dataset folder (default: $CFBENCH_DATA, else ~/.cache/cfbench/data)")
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
        "that verify or a run reports broken)",
    )
    a(
        "--workers",
        type=int,
        default=0,
        help="prepare: image-decoding processes (default: 0, decode in this process)",
    )
    a("--debug", action="store_true", help="show full tracebacks for errors")
    return p
