"""``run_benchmark.py perf``: how fast this machine runs a sequence, with nothing downloaded; with
--gpu-check, everything still to measure on a GPU (the work is in benchmark/perf/)."""

from __future__ import annotations

import argparse

from benchmark.commands.options import debug_option


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_benchmark.py perf",
        description="How fast this machine runs a sequence, with nothing downloaded: datasets of "
        "the sequence's split sizes and stored resolutions hold synthetic pixels, the encoder has "
        "random weights (the cost does not depend on either). Measures the device pipeline, "
        "training through the trainer (FT and LDIFS, beside a bare torch loop), feature "
        "extraction, the linear probe (and sklearn's), FLOPs and MFU, and projects the wall "
        "time of the whole sequence per strategy. Prints a table and writes every number as JSON.",
    )
    _measured(p.add_argument)
    _setup(p.add_argument)
    return p


def _measured(a) -> None:
    a("--sequence", default="5tasks", help="registered sequence or .yaml file (default: 5tasks)")
    a(
        "--size",
        default="auto",
        choices=["auto", "small", "real"],
        help="real: the sequence's split sizes and resolutions; small: splits divided by 50 "
        "and images at most 64 px (seconds to a minute on a laptop CPU); auto: real on CUDA, "
        "small on CPU (default: auto)",
    )
    a(
        "--model",
        help="encoder, built with random weights (default: ViT-B-32 at real size, "
        "cfbench-tiny-vit at small size)",
    )
    a(
        "--steps",
        type=int,
        help="timed training steps per measurement, after one warm-up step; feature extraction "
        "times as many batches (default: 20 on a GPU, 5 on CPU)",
    )


def _setup(a) -> None:
    a("--batch-size", type=int, default=128, help="training batch size (default: 128)")
    a(
        "--eval-batch-size",
        type=int,
        help="feature-extraction batch size (default: 1024 on a GPU, 256 on CPU)",
    )
    a(
        "--device",
        default="auto",
        help="auto (CUDA when available), cpu, cuda or cuda:N (default: auto)",
    )
    a(
        "--precision",
        default="auto",
        choices=["auto", "bf16", "fp32"],
        help="bf16 autocast or fp32; auto is bf16 on a GPU, fp32 on CPU (default: auto)",
    )
    a(
        "--compile",
        action="store_true",
        help="torch.compile the encoder in place, as a run does (default: off)",
    )
    a(
        "--no-sklearn",
        dest="sklearn",
        action="store_false",
        help="skip the comparison of the probe with sklearn's (default: run it)",
    )
    a(
        "--data-root",
        help="only for datasets whose split sizes are not registered (.npz files): the folder "
        "holding them (default: $CFBENCH_DATA, else ~/.cache/cfbench/data)",
    )
    a(
        "--out",
        default=argparse.SUPPRESS,  # perf's own default (perf.json) or --gpu-check's folder
        help="JSON file written; with --gpu-check, the folder written "
        "(default: perf.json; with --gpu-check, results/gpu-check)",
    )
    debug_option(a)
    _gpu_check(a)


def _gpu_check(a) -> None:
    a(
        "--gpu-check",
        action="store_true",
        help="on a machine with one GPU and no datasets, in under 10 minutes: this command at "
        "the 5tasks sizes in bf16 with torch.compile off and on, and the offline sequence's ft "
        "and ldifs runs (seed 0) in bf16 and fp32 when --data-root (default: ../shared/data "
        "beside the repository) holds its .npz files and ../weights its checkpoint; writes "
        "OUT/gpu-check.json and the table OUT/gpu-check.md. Takes only --out and --data-root",
    )
    a(
        "--gpu-check-device",
        choices=["cuda", "cpu"],
        help="for tests: cpu runs the whole --gpu-check on CPU at tiny sizes (default: cuda)",
    )


def run(args: argparse.Namespace) -> int:
    if args.gpu_check or args.gpu_check_device:
        from benchmark.perf.gpu_check import gpu_check_command  # torch: not for --help

        return gpu_check_command(args, vars(build_parser().parse_args([])))
    from benchmark.perf.run import PerfConfig, run_perf  # torch: not for --help
    from strategies import STRATEGIES

    skip = ("debug", "gpu_check", "gpu_check_device")
    run_perf(PerfConfig(**{k: v for k, v in vars(args).items() if k not in skip}), STRATEGIES)
    return 0
