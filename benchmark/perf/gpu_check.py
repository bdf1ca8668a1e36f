"""``run_benchmark.py perf --gpu-check``: everything the project still has to measure on a GPU, in
one command of under 10 minutes, on a machine with one GPU and none of the real datasets.

Parts, each a process of its own stopped at its time cap (benchmark/perf/gpu_check_part.py for
perf, the run command for the offline runs):

1. perf at the ``5tasks`` sizes (ViT-B-32 at 224 px, random weights, synthetic images) in bf16:
   FT and LDIFS training, feature extraction and pipeline images/s, probe seconds;
2. the offline sequence (real .npz images, the CIFAR ResNet-20) for ft and ldifs, seed 0, in
   bf16 and in fp32, as real runs into OUT/offline-runs/ (skipped, with what to put where, when
   the data or the checkpoint is absent);
3. perf again with ``torch.compile``, last: it takes the time earlier parts left over.

Every part keeps its own cap even when an earlier one runs long; a part ending early gives its
spare time to the later ones (up to twice their cap on a GPU). Writes OUT/gpu-check.json (every
figure, the device, torch and the settings) and OUT/gpu-check.md (the table, also printed).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from benchmark.config import default_data_root
from benchmark.errors import CFBenchError
from benchmark.io import write_atomic
from benchmark.perf.gpu_check_report import part_figures, render_table
from benchmark.perf.run import PerfConfig

BUDGET_S = 580  # the whole check, parent process included: under one device call's 10 minutes
RESERVE_S = 20  # the check's own start (imports), summary and writing
# seconds each part is sure to get, per device kind: (perf eager, each offline run, compiled).
# cuda: measured on an H200 (torch 2.11, 2026-12-04): perf eager 47 s, each offline run 91-102 s
# (the probe is 90 % of it), perf compiled 103 s; results/gpu-check/README.md
CAPS = {"cuda": (55, 100, 105), "cpu": (90, 40, 4)}
OFFLINE_STRATEGIES = ("ft", "ldifs")
OFFLINE_PRECISIONS = ("bf16", "fp32")
# --gpu-check-device cpu (the tests): tiny sizes, so the whole orchestration runs in seconds
CPU_PERF = {
    "size": "small",
    "model": "cfbench-tiny-vit",
    "steps": 2,
    "batch_size": 16,
    "eval_batch_size": 32,
}
CPU_OFFLINE = (
    "--epochs",
    "1",
    "--max-train-images",
    "64",
    "--probe-max-train",
    "100",
    "--probe-max-test",
    "100",
)
RUN = "import sys; from benchmark.commands import main; sys.exit(main(sys.argv[1:]))"
# perf options the check sets itself; any other value of theirs is refused
FIXED = (
    "sequence",
    "size",
    "model",
    "steps",
    "batch_size",
    "eval_batch_size",
    "device",
    "precision",
    "compile",
    "sklearn",
)


@dataclass(frozen=True)
class Part:
    name: str  # file stem and table row
    kind: str  # "perf" or "offline"
    cap_s: float  # seconds it is sure to get
    max_s: float  # seconds it may take when earlier parts left time over
    argv: tuple[str, ...]  # after the Python executable
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    device: str  # "cuda" or "cpu" (tests only)
    out: Path
    data_root: Path
    budget_s: float = BUDGET_S
    reserve_s: float = RESERVE_S


def perf_config(device: str, compile: bool) -> PerfConfig:
    base = PerfConfig(sequence="5tasks", device=device, precision="bf16", sklearn=False)
    if device == "cpu":
        return replace(base, compile=compile, **CPU_PERF)
    return replace(base, size="real", model="ViT-B-32", steps=20, batch_size=128, compile=compile)


def offline_files(data_root: Path) -> tuple[list[str], str]:
    """The .npz files and the checkpoint the offline sequence reads."""
    from tasks import get_sequence
    from tasks.sequences import OFFLINE_DEFAULTS

    sequence = get_sequence("offline")
    names = [f"{n.removeprefix('npz:')}.npz" for n in (*sequence.tasks, *sequence.controls)]
    return names, OFFLINE_DEFAULTS["pretrained"]


def offline_missing(data_root: Path) -> str | None:
    """None when the offline data and checkpoint are there, else what to put where."""
    from benchmark.model.encoder import find_weights

    names, weights = offline_files(data_root)
    try:
        find_weights(weights, data_root)
        found = all((data_root / n).is_file() for n in names)
    except CFBenchError:
        found = False
    if found:
        return None
    return (
        f"put {', '.join(names)} in {data_root} (--data-root) and {weights} in "
        f"{data_root.resolve().parent / 'weights'} (or $CFBENCH_WEIGHTS), e.g. ../shared/data "
        "and ../shared/weights (the archives can also be built where their sources download: "
        "run_benchmark.py data prepare --sequence offline)"
    )


def plan(check: Check) -> tuple[list[Part], str | None]:
    """The parts in the order run, and why the offline runs are skipped (None: they run)."""
    perf_cap, run_cap, compile_cap = CAPS[check.device]
    stretch = 2 if check.device == "cuda" else 1
    parts = [_perf_part("perf-bf16-eager", check, False, perf_cap, stretch * perf_cap)]
    skipped = offline_missing(check.data_root)
    if skipped is None:
        for precision in OFFLINE_PRECISIONS:
            for strategy in OFFLINE_STRATEGIES:
                parts.append(_offline_part(check, strategy, precision, run_cap, stretch))
    last_max = check.budget_s if check.device == "cuda" else compile_cap
    parts.append(_perf_part("perf-bf16-compile", check, True, compile_cap, last_max))
    return parts, skipped


def _perf_part(name: str, check: Check, compile: bool, cap: float, most: float) -> Part:
    cfg = perf_config(check.device, compile)
    path = check.out / "parts" / f"{name}.json"
    argv = ["-m", "benchmark.perf.gpu_check_part", "--out", str(path)]
    argv += ["--config", json.dumps(asdict(cfg))]
    if not compile:  # the probe does not depend on compiling: timed once
        argv.append("--probes")
    return Part(name, "perf", cap, most, tuple(argv), {"compile": compile, "json": str(path)})


def _offline_part(check: Check, strategy: str, precision: str, cap: float, stretch: int) -> Part:
    name = f"offline-{strategy}-{precision}"
    runs = check.out / "offline-runs"
    argv = ["--sequence", "offline", "--strategy", strategy, "--seed", "0"]
    argv += ["--precision", precision, "--data-root", str(check.data_root), "--out", str(runs)]
    argv += ["--run-name", f"{strategy}-{precision}", "--fresh", "--cache-dir", "none"]
    argv += ["--device", check.device, *(CPU_OFFLINE if check.device == "cpu" else ())]
    meta = {"strategy": strategy, "precision": precision, "seed": 0, "out": str(runs)}
    return Part(name, "offline", cap, stretch * cap, ("-c", RUN, *argv), meta)


def timeout_for(part: Part, later: list[Part], deadline: float, now: float) -> float:
    """Seconds ``part`` may run: up to its max_s, leaving every later part its cap."""
    return min(part.max_s, deadline - now - sum(p.cap_s for p in later))


def run_child(argv: tuple[str, ...], timeout: float, log: Path) -> tuple[str, float]:
    """Run ``python argv`` (its output to ``log``) for at most ``timeout`` seconds: its status
    (done, over cap, failed) and wall seconds. Stopped at the cap with its whole process group,
    compile workers included."""
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "w") as stream:
        child = subprocess.Popen(
            [sys.executable, *argv],
            stdout=stream,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            code = child.wait(timeout=max(timeout, 0.1))
        except subprocess.TimeoutExpired:
            code = None
        finally:
            if child.poll() is None:  # over its cap, or the check was interrupted
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
    status = "done" if code == 0 else "over cap" if code is None else "failed"
    return status, time.perf_counter() - started


def last_line(log: Path) -> str:
    lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
    return lines[-1].strip() if lines else "no output"


def execute(check: Check, parts: list[Part], log=print) -> list[dict]:
    """Run the parts in order, each to its timeout; one line per part as it starts and ends."""
    deadline = time.perf_counter() + check.budget_s - check.reserve_s
    results, probes = [], None
    for k, part in enumerate(parts):
        timeout = timeout_for(part, parts[k + 1 :], deadline, time.perf_counter())
        head = f"[{k + 1}/{len(parts)}] {part.name}"
        entry = {
            "name": part.name,
            "kind": part.kind,
            "cap_s": part.cap_s,
            "max_s": part.max_s,
            "timeout_s": round(timeout, 1),
            "argv": list(part.argv),
            **part.meta,
        }
        if timeout < 1:
            entry.update(status="skipped", seconds=0.0, note="no time left in the budget")
            log(f"{head}: skipped, no time left in the budget")
            results.append(entry)
            continue
        log(f"{head}: at most {timeout:.0f} s ...", flush=True)
        logfile = check.out / "logs" / f"{part.name}.log"
        status, seconds = run_child(part.argv, timeout, logfile)
        entry.update(status=status, seconds=round(seconds, 2), log=str(logfile))
        if status == "over cap":
            entry["note"] = (
                f"stopped at its cap of {timeout:.0f} s; figures are what it had measured"
            )
        elif status == "failed":
            entry["note"] = last_line(logfile)
        entry["figures"] = part_figures(entry, probes)
        if part.kind == "perf":  # its raw record moves into the check's one JSON
            entry["record"] = _take(Path(entry.pop("json")))
        if part.name == "perf-bf16-eager":
            probes = entry["figures"].get("probe_seconds")
        log(f"{head}: {status} in {seconds:.0f} s{_brief(entry)}")
        results.append(entry)
    return results


def _take(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    path.unlink()
    return record


def _brief(entry: dict) -> str:
    f = entry.get("figures") or {}
    if entry["kind"] == "perf" and f.get("train_images_per_s"):
        rates = ", ".join(f"{s} {v:,.0f}" for s, v in f["train_images_per_s"].items() if v)
        return f": training images/s {rates}"
    if entry["kind"] == "offline" and f.get("final_avg_acc") is not None:
        acc, delta = f["final_avg_acc"], f["delta_lp_controls"]
        return f": final accuracy {acc:.2f} %, ΔLP controls {delta:+.2f}"
    return f" ({entry['note']})" if entry.get("note") else ""


def gpu_check_command(args: argparse.Namespace, defaults: dict, log=print) -> int:
    """``perf --gpu-check``: refuse other perf options (those differing from ``defaults``, the
    perf command's) and a machine without a GPU, run the parts, write the JSON and the table. 0
    when no part failed, 1 otherwise."""
    if not args.gpu_check:
        raise CFBenchError("--gpu-check-device goes with --gpu-check")
    given = [k for k in FIXED if getattr(args, k, None) != defaults.get(k)]
    if given:
        names = ", ".join(f"--{k.replace('_', '-')}" for k in given)
        raise CFBenchError(
            f"perf --gpu-check sets {names} itself; give only --out, --data-root "
            "and --gpu-check-device"
        )
    device = args.gpu_check_device or "cuda"
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise CFBenchError(
            "perf --gpu-check needs a CUDA GPU and torch sees none on this "
            "machine; run it on a GPU machine (--gpu-check-device cpu is for tests)"
        )
    out = Path(getattr(args, "out", None) or "results/gpu-check").expanduser()
    if out.is_file():
        raise CFBenchError(f"--out {out} is a file; perf --gpu-check writes into a folder")
    check = Check(device, out, _data_root(args.data_root))
    try:
        return run_check(check, log=log)
    except KeyboardInterrupt:  # the running part was stopped with its process group
        print(f"gpu-check: interrupted; nothing written to {out}/gpu-check.json", file=sys.stderr)
        return 130


def _data_root(given: str | None) -> Path:
    if given:
        return Path(given).expanduser()
    shared = Path(__file__).resolve().parents[3] / "shared" / "data"
    return shared if shared.is_dir() else default_data_root()


def run_check(check: Check, parts: list[Part] | None = None, log=print) -> int:
    """Plan (unless ``parts`` are given: the tests run a few), run, write; the exit code."""
    started = time.perf_counter()
    planned, skipped = plan(check)
    parts = planned if parts is None else parts
    check.out.mkdir(parents=True, exist_ok=True)
    log(f"gpu-check: {len(parts)} parts in at most {check.budget_s:.0f} s, into {check.out}")
    if skipped:
        log(f"offline runs: skipped; {skipped}")
    results = execute(check, parts, log)
    record = summary(check, results, skipped, time.perf_counter() - started)
    table = render_table(record)
    try:
        write_atomic(check.out / "gpu-check.json", json.dumps(record, indent=1))
        write_atomic(check.out / "gpu-check.md", table + "\n")
    except OSError as error:
        raise CFBenchError(f"cannot write into {check.out} ({error.strerror or error})") from None
    log(table)
    log(f"gpu-check: {check.out / 'gpu-check.json'}, {check.out / 'gpu-check.md'}")
    return 1 if any(r["status"] == "failed" for r in results) else 0


def summary(check: Check, results: list[dict], skipped: str | None, seconds: float) -> dict:
    import platform

    import torch

    cuda = check.device == "cuda" and torch.cuda.is_available()
    return {
        "version": 1,
        "device": {
            "type": check.device,
            "name": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
            "count": torch.cuda.device_count() if cuda else 0,
        },
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "settings": {
            "budget_s": check.budget_s,
            "reserve_s": check.reserve_s,
            "caps_s": {r["name"]: r["cap_s"] for r in results},
            "perf": {
                "eager": asdict(perf_config(check.device, False)),
                "compile": asdict(perf_config(check.device, True)),
            },
            "offline": {
                "data_root": str(check.data_root),
                "strategies": list(OFFLINE_STRATEGIES),
                "precisions": list(OFFLINE_PRECISIONS),
                "seed": 0,
                "extra_args": list(CPU_OFFLINE) if check.device == "cpu" else [],
                "cache": "none: every run computes its pretrained row",
                "skipped": skipped,
            },
        },
        "parts": results,
        "seconds": round(seconds, 2),
    }
