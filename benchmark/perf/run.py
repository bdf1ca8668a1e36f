"""``run_benchmark.py perf``: how fast this machine runs a sequence, with nothing downloaded.

Datasets with the sequence's split sizes and stored resolutions (real, or shrunk on a CPU) hold
synthetic uint8 pixels, the encoder has random weights: the cost of every step does not depend on
either. Measured, each a rate from one timed run of the real code after a warm-up step: the
device pipeline, training through the Trainer for FT and LDIFS (and a bare torch loop beside it),
feature extraction, the linear probe (and sklearn's), FLOPs and MFU; then the projected wall time
of the whole sequence. Prints a table and writes every number, with its inputs, as JSON.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from benchmark.config import autocast_dtype, default_data_root
from benchmark.errors import CFBenchError
from benchmark.io import write_atomic
from benchmark.perf import measure as M
from benchmark.perf.plan import (
    SMALL_DIVISOR,
    SMALL_MAX_SIDE,
    DatasetShape,
    format_report,
    plan_datasets,
    project,
)
from benchmark.perf.probes import probe_runs, sklearn_run
from benchmark.probe.features import FeaturePass

STRATEGIES = ("ft", "ldifs")
TARGETS = {"ft_over_bare": 1.15, "ldifs_over_ft": 1.4}
BUFFER_IMAGES = 2048  # synthetic images held per resolution: the pipeline gathers from them
BUFFER_BYTES = 256 * 2**20


@dataclass(frozen=True)
class PerfConfig:
    sequence: str = "5tasks"
    size: str = "auto"  # auto (real on CUDA, small on CPU), small or real
    model: str | None = None  # None: ViT-B-32 at real size, cfbench-tiny-vit at small size
    steps: int | None = None  # timed training steps per measurement (None: 20 on CUDA, 5 on CPU)
    batch_size: int = 128
    eval_batch_size: int | None = None  # None: FeaturePass.default_batch
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    sklearn: bool = True
    data_root: str | None = None  # only read for datasets without registered sizes (.npz)
    out: str = "perf.json"


def validate(cfg: PerfConfig) -> None:
    for name in ("steps", "batch_size", "eval_batch_size"):
        value = getattr(cfg, name)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise CFBenchError(f"--{name.replace('_', '-')} must be an integer >= 1, got {value}")
    choices = {"size": ("auto", "small", "real"), "precision": ("auto", "bf16", "fp32")}
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            raise CFBenchError(f"--{name} must be one of {', '.join(allowed)}")
    if cfg.device not in ("auto", "cpu", "cuda") and not cfg.device.startswith("cuda:"):
        raise CFBenchError(f"--device must be auto, cpu, cuda or cuda:N, got '{cfg.device}'")


def resolved(cfg: PerfConfig, device: torch.device) -> PerfConfig:
    """The defaults that depend on the device and size filled in."""
    cuda = device.type == "cuda"
    size = cfg.size if cfg.size != "auto" else ("real" if cuda else "small")
    return replace(
        cfg,
        size=size,
        model=cfg.model or ("ViT-B-32" if size == "real" else "cfbench-tiny-vit"),
        steps=cfg.steps or (20 if cuda else 5),
        eval_batch_size=cfg.eval_batch_size or FeaturePass.default_batch(device),
    )


def run_perf(cfg: PerfConfig, strategies: Mapping, log=print) -> dict:
    """Measure, print the table, write the JSON to ``cfg.out``; returns what it wrote."""
    validate(cfg)
    started = time.perf_counter()
    path = Path(cfg.out).expanduser()
    if path.is_dir():  # said before minutes of measuring, not after
        raise CFBenchError(f"--out {path} is a folder; give the JSON file to write")
    cfg, plan, bench = setup(cfg, strategies)
    try:
        out = measure(cfg, bench, plan)
    except torch.cuda.OutOfMemoryError:
        raise CFBenchError(
            f"GPU out of memory at batch size {cfg.batch_size} (feature extraction "
            f"{cfg.eval_batch_size}); lower --batch-size or --eval-batch-size"
        ) from None
    out["seconds"] = time.perf_counter() - started
    try:
        write_atomic(path, json.dumps(out, indent=1))
    except OSError as error:
        raise CFBenchError(f"cannot write {path} ({error.strerror or error})") from None
    log(format_report(out))
    log(f"perf: {path}")
    return out


def setup(cfg: PerfConfig, strategies: Mapping) -> tuple[PerfConfig, list[DatasetShape], M.Bench]:
    """The config with its device-dependent defaults filled in, the sequence's datasets, and
    the Bench every measurement shares (the encoder with random weights on its device)."""
    from benchmark.model.encoder import build_encoder
    from benchmark.pipeline import TensorPipeline
    from benchmark.trainer import resolve_device
    from tasks import get_sequence

    sequence = get_sequence(cfg.sequence)
    device = resolve_device(cfg.device)
    cfg = resolved(cfg, device)
    root = Path(cfg.data_root).expanduser() if cfg.data_root else default_data_root()
    plan = plan_datasets(sequence, cfg.size, root)
    torch.manual_seed(0)
    encoder = build_encoder(cfg.model, "none")
    encoder.module.to(device)
    pipeline = TensorPipeline.from_transforms(encoder.train_transform, encoder.eval_transform)
    if pipeline is None:
        raise CFBenchError(f"perf: {cfg.model}'s transforms are not ones the device pipeline runs")
    autocast = autocast_dtype(cfg.precision, device)
    bench = M.Bench(encoder, pipeline, device, cfg.batch_size, cfg.steps, autocast, strategies)
    return cfg, plan, bench


def synthetic_buffers(plan: list[DatasetShape]) -> dict:
    """One synthetic image buffer per stored resolution, bounded in count and bytes."""
    out = {}
    for d in plan:
        if d.resolution not in out:
            n = max(1, min(BUFFER_IMAGES, BUFFER_BYTES // (d.height * d.width * 3)))
            out[d.resolution] = M.synthetic_images(n, d.height, d.width)
    return out


def measure(cfg: PerfConfig, bench: M.Bench, plan: list[DatasetShape]) -> dict:
    """Every measurement, in an order that keeps the compiled and hooked states apart."""
    tasks = [d for d in plan if d.role == "task"]
    first = tasks[0]
    flops = M.count_flops(bench, first.num_classes)  # before compiling: it counts eager ops
    if cfg.compile:  # in place, as a run does
        bench.encoder.module.compile()
        bench.compiled = True
    results = rates(cfg, bench, plan)
    probe, probes = probe_runs(plan, bench.encoder.embed_dim, bench.device)
    train_rates = {
        s: {r: v["images_per_s"] for r, v in t.items()} for s, t in results["train"].items()
    }
    eval_rates = {r: v["images_per_s"] for r, v in results["eval"].items()}
    projection = project(
        plan, train_rates, eval_rates, {n: p["seconds"] for n, p in probes.items()}
    )
    return {
        **header(cfg, bench, plan),
        **results,
        "ratios": ratios(results, first.resolution),
        "flops": flops,
        "throughput": throughput(bench, flops, results, first.resolution),
        "probe": {
            "settings": asdict(probe),
            "datasets": probes,
            "note": "random features of the dataset's shape (Gaussian class means plus "
            "noise, separated so that probes score like real ones); a real probe's "
            "iterations depend on its features",
        },
        "sklearn": sklearn_run(first, bench.encoder.embed_dim, bench.device, probe)
        if cfg.sklearn
        else {"skipped": "--no-sklearn"},
        "projection": projection,
        "projection_note": "stage 0 (the pretrained row, 1/stages of encode and probe) is the "
        "same for every strategy and seed: the pretrained-row cache computes it once",
    }


def rates(cfg: PerfConfig, bench: M.Bench, plan: list[DatasetShape]) -> dict:
    """Pipeline and feature-extraction rates per resolution of the sequence, the bare loops at
    the first task's, and trainer rates per strategy and resolution of its tasks."""
    tasks = [d for d in plan if d.role == "task"]
    first = tasks[0]
    buffers = synthetic_buffers(plan)
    task_res: dict = {}  # resolution -> the first task stored at it
    for d in tasks:
        task_res.setdefault(d.resolution, d)
    jobs = [("pipeline", r) for r in buffers] + [("eval", r) for r in buffers]
    jobs += [("bare", first.resolution), ("model_step", first.resolution)]
    jobs += [(s, r) for s in STRATEGIES for r in task_res]
    results: dict = {"pipeline": {}, "eval": {}, "train": {s: {} for s in STRATEGIES}}
    for kind, res in tqdm(jobs, desc="perf", unit="run", leave=False, disable=None):
        images = buffers[res]
        if kind == "pipeline":
            results["pipeline"][res] = M.pipeline_rate(bench, images)
        elif kind == "eval":
            results["eval"][res] = M.eval_rate(bench, images, cfg.eval_batch_size)
        elif kind in ("bare", "model_step"):
            results[kind] = {
                "resolution": res,
                **M.bare_rate(bench, images, first.num_classes, fixed=kind == "model_step"),
            }
        else:
            results["train"][kind][res] = M.trainer_rate(
                bench, kind, images, task_res[res].num_classes
            )
    return results


def header(cfg: PerfConfig, bench: M.Bench, plan: list[DatasetShape]) -> dict:
    from tasks import get_sequence

    sequence = get_sequence(cfg.sequence)
    name, bf16, fp32, note = M.peak_tflops(bench.device)
    peak = bf16 if bench.autocast == torch.bfloat16 else fp32
    return {
        "version": 1,
        "size": cfg.size,
        "size_note": "real: the sequence's split sizes and stored resolutions"
        if cfg.size == "real"
        else f"small: splits / {SMALL_DIVISOR}, images at most {SMALL_MAX_SIDE} px",
        "device": {
            "type": bench.device.type,
            "name": name,
            "peak_flops": peak and peak * 1e12,
            "peak_tflops_bf16": bf16,
            "peak_tflops_fp32": fp32,
            "peak_note": note,
        },
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "model": cfg.model,
        "embed_dim": bench.encoder.embed_dim,
        "input_size": list(bench.pipeline.size),
        "precision": "bf16" if bench.autocast == torch.bfloat16 else "fp32",
        "precision_setting": cfg.precision,
        "batch_size": cfg.batch_size,
        "eval_batch_size": cfg.eval_batch_size,
        "steps": cfg.steps,
        "compile": cfg.compile,
        "sequence": {
            "name": sequence.name,
            "tasks": list(sequence.tasks),
            "controls": list(sequence.controls),
            "epochs": {d.name: d.epochs for d in plan if d.role == "task"},
            "stages": len(sequence.tasks) + 1,
        },
        "datasets": {d.name: d.to_dict() for d in plan},
    }


def ratios(results: dict, res: str) -> dict:
    """Step-time ratios (the inverse of the rates') at the first task's resolution."""
    ft, ldifs = (results["train"][s][res]["images_per_s"] for s in STRATEGIES)
    return {
        "resolution": res,
        "ft_over_bare": results["bare"]["images_per_s"] / ft,
        "ft_over_bare_target": TARGETS["ft_over_bare"],
        "ldifs_over_ft": ft / ldifs,
        "ldifs_over_ft_target": TARGETS["ldifs_over_ft"],
        "bare_note": "the bare loop runs the same DeviceBatches and model: forward, "
        "cross-entropy, backward, grad clip, AdamW; no Avalanche",
    }


def throughput(bench: M.Bench, flops: dict, results: dict, res: str) -> dict:
    """Achieved FLOP/s (FLOPs per image x images/s) and MFU against the peak of the arithmetic
    each ran in (LDIFS trains in fp32 whatever the precision)."""
    _, bf16, fp32, _ = M.peak_tflops(bench.device)
    default = "bf16" if bench.autocast == torch.bfloat16 else "fp32"
    rows = {
        "model_step": (flops["train_per_image"], results["model_step"], default),
        "train_ft": (flops["train_per_image"], results["train"]["ft"][res], None),
        "train_ldifs": (flops["ldifs_train_per_image"], results["train"]["ldifs"][res], None),
        "eval": (flops["forward_per_image"], results["eval"][res], default),
    }
    out = {}
    for name, (per_image, measured, arithmetic) in rows.items():
        arithmetic = arithmetic or measured["arithmetic"]
        peak = bf16 if arithmetic == "bf16" else fp32
        achieved = per_image * measured["images_per_s"]
        out[name] = {
            "flops_per_s": achieved,
            "arithmetic": arithmetic,
            "resolution": res,
            "mfu": None if peak is None else achieved / (peak * 1e12),
        }
    return out
