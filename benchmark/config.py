"""Run configuration: frozen dataclasses, resolved from protocol defaults, sequence defaults and
command-line overrides (in that order of increasing priority)."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.errors import CFBenchError


@dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning protocol per task (docs/design.md section 3)."""

    epochs: int | None = None  # None: the per-dataset paper value (or the sequence's)
    batch_size: int = 128
    lr: float = 1e-5
    weight_decay: float = 0.1
    warmup_steps: int = 500
    grad_clip: float = 1.0
    workers: int | None = None  # None: 0 on CPU, min(8, cores) on CUDA
    max_train_images: int | None = None  # fine-tune on a fixed subset per task (None: all)
    # "train": batch norms use batch statistics and update their running ones while fine-tuning;
    # "frozen": they keep the pretrained running statistics (affine weights still train).
    batchnorm: str = "train"
    # Split every batch into micro-batches of at most this many images and accumulate their
    # gradients before the one optimiser step: the same update in less GPU memory (None: off).
    micro_batch: int | None = None
    # Arithmetic of the training and feature passes: "bf16" (autocast to bfloat16), "fp32", or
    # "auto" (bf16 on CUDA, fp32 on CPU). LDIFS computes its tap outputs and distance in fp32
    # either way (strategies/ldifs.py).
    precision: str = "auto"
    compile: bool = False  # torch.compile the encoder (same numbers up to rounding; faster on GPU)


@dataclass(frozen=True)
class ProbeConfig:
    """Linear probe: multinomial logistic regression on L2-normalised embeddings.

    ``c_grid`` are inverse regularisation strengths (sklearn's C), swept on the validation split.
    """

    # C = 1e-6 ... 1e6 by decades (13 values): the range of the sklearn probe in
    # omegafragger/ldifs_code (7 values, C = 1/L for L = 1e-6, 1e-4, ..., 1e6), with every decade
    # between; on the offline sequence's features the best C reached the old grid's top (1e4) often.
    c_grid: tuple[float, ...] = tuple(10.0**k for k in range(-6, 7))
    # Each L-BFGS fit (warm-started along the C grid) stops when its estimated remaining decrease
    # is below ``tol`` relative to the weight-dependent part of the objective (benchmark/probe/
    # solver.py); every C of the default grid then matches sklearn at tol 1e-12
    # (tests/test_probe.py). ``max_iter`` caps the iterations of one fit, its float64 finish
    # included (ProbeResult.converged is False when a fit reached it): 5000, because at C = 1e6
    # the nearly unregularised fit needs more than 1000 (2,272 on the offline CIFAR-10 features).
    max_iter: int = 5000
    tol: float = 1e-5
    max_train_samples: int | None = None  # subsample the probe's train split (None: all)
    max_test_samples: int | None = None  # subsample every test split (None: all)
    batch_size: int | None = None  # feature-extraction batch (None: 1024 on CUDA, 256 on CPU)


@dataclass(frozen=True)
class RunConfig:
    sequence: str = "smoke"
    strategy: str = "ft"
    model: str = "ViT-B-32"
    pretrained: str = "openai"  # open_clip tag, a checkpoint path, or "none" (random init)
    seed: int = 0
    data_root: Path = field(default_factory=lambda: default_data_root())
    out: Path = Path("results")
    device: str = "auto"
    download: bool = True
    source: str = "auto"  # datasets: auto, torchvision, hf or folder (tasks/data.py)
    # Images: "device" (uint8 arrays of the prepared store, transformed on the training device),
    # "pil" (PIL transforms in loader workers, the reference) or "auto" (device when every
    # dataset of the run is prepared and the encoder's transforms are known, else pil).
    pipeline: str = "auto"
    # Folder of the pretrained-row cache (None: <data-root>/cache/row0; "none": no cache).
    cache: str | None = None
    head_init: str | None = None  # "zs" (text tower) or "lp" (probe); None: zs when possible
    # Also record the VRF and OSE accuracies of every trained task (benchmark/vrf/; needs a
    # text tower). The ``vrf`` strategy turns them on by itself.
    vrf: bool = False
    train: TrainConfig = field(default_factory=TrainConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    strategy_args: Mapping[str, Any] = field(default_factory=dict)
    fresh: bool = False  # discard the run folder's checkpoints and results instead of resuming
    keep_checkpoints: str = "last"  # "last": only the latest stage's checkpoint; "all": every one
    # The run's name: its folder OUT/<sequence>/<name>/seed<N> and its rows in the report
    # (None: the strategy). A grid names a cell by its varying strategy arguments.
    run_name: str | None = None

    @property
    def name(self) -> str:
        return self.run_name or self.strategy

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["data_root"], d["out"] = str(self.data_root), str(self.out)
        return d


def autocast_dtype(precision: str, device):
    """The dtype autocast runs in (None: full fp32) for a ``precision`` setting on ``device``."""
    import torch

    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def default_data_root() -> Path:
    return Path(os.environ.get("CFBENCH_DATA", "~/.cache/cfbench/data")).expanduser()


_TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
_PROBE_FIELDS = {"probe_" + f.name: f.name for f in dataclasses.fields(ProbeConfig)}
_RUN_FIELDS = {f.name for f in dataclasses.fields(RunConfig)} - {"train", "probe"}


def build_run_config(*layers: Mapping[str, Any]) -> RunConfig:
    """Merge flat settings (later layers win; ``None`` values are ignored) into a RunConfig.

    Keys are RunConfig fields, TrainConfig fields, or ProbeConfig fields prefixed with ``probe_``.
    """
    run: dict[str, Any] = {}
    train: dict[str, Any] = {}
    probe: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if value is None:
                continue
            elif key in _RUN_FIELDS:
                run[key] = value
            elif key in _TRAIN_FIELDS:
                train[key] = value
            elif key in _PROBE_FIELDS:
                probe[_PROBE_FIELDS[key]] = value
            else:
                valid = sorted(_RUN_FIELDS | _TRAIN_FIELDS | set(_PROBE_FIELDS))
                raise CFBenchError(f"unknown setting '{key}'; valid settings: {', '.join(valid)}")
    for key in ("data_root", "out"):
        if key in run:
            run[key] = Path(run[key]).expanduser()
    cfg = RunConfig(**run, train=TrainConfig(**train), probe=ProbeConfig(**probe))
    validate(cfg)
    return cfg


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise CFBenchError(message)


def validate(cfg: RunConfig) -> None:
    t = cfg.train
    _check(
        t.epochs is None or (isinstance(t.epochs, int) and t.epochs >= 1),
        f"--epochs must be an integer >= 1, got {t.epochs}",
    )
    _check(
        isinstance(t.batch_size, int) and t.batch_size >= 1,
        f"--batch-size must be an integer >= 1, got {t.batch_size}",
    )
    for name in ("lr", "weight_decay", "grad_clip"):
        value = getattr(t, name)
        _check(
            isinstance(value, (int, float)) and math.isfinite(value) and value >= 0,
            f"{name} must be a finite number >= 0, got {value}",
        )
    _check(t.lr > 0, f"--lr must be > 0, got {t.lr}")
    _check(
        isinstance(t.warmup_steps, int) and t.warmup_steps >= 0,
        f"warmup_steps must be an integer >= 0, got {t.warmup_steps}",
    )
    _check(
        cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:"),
        f"--device must be auto, cpu, cuda or cuda:N, got '{cfg.device}'",
    )
    _check(
        cfg.keep_checkpoints in ("last", "all"),
        f"--keep-checkpoints must be last or all, got '{cfg.keep_checkpoints}'",
    )
    _check(cfg.head_init in (None, "zs", "lp"), f"--head-init must be zs or lp: {cfg.head_init}")
    _check(isinstance(cfg.vrf, bool), f"vrf must be true or false, got {cfg.vrf!r}")
    _check(
        cfg.pipeline in ("auto", "device", "pil"),
        f"--pipeline must be auto, device or pil, got '{cfg.pipeline}'",
    )
    _check(
        cfg.source in ("auto", "torchvision", "hf", "folder"),
        f"--source must be auto, torchvision, hf or folder, got '{cfg.source}'",
    )
    _check(
        t.precision in ("auto", "bf16", "fp32"),
        f"--precision must be auto, bf16 or fp32, got '{t.precision}'",
    )
    _check(
        t.batchnorm in ("train", "frozen"), f"--batchnorm must be train or frozen: {t.batchnorm}"
    )
    _validate_probe(cfg.probe)
    _check(
        t.micro_batch is None or (isinstance(t.micro_batch, int) and t.micro_batch >= 1),
        f"--micro-batch must be an integer >= 1, got {t.micro_batch}",
    )
    _check(
        t.max_train_images is None or t.max_train_images >= 1,
        f"--max-train-images must be >= 1, got {t.max_train_images}",
    )


def _validate_probe(p: ProbeConfig) -> None:
    _check(
        p.batch_size is None or (isinstance(p.batch_size, int) and p.batch_size >= 1),
        f"--eval-batch-size must be an integer >= 1, got {p.batch_size}",
    )
    _check(len(p.c_grid) > 0 and all(c > 0 for c in p.c_grid), "probe C grid must be positive")
    _check(
        p.max_train_samples is None or p.max_train_samples >= 10,
        f"--probe-max-train must be >= 10, got {p.max_train_samples}",
    )
    _check(
        p.max_test_samples is None or p.max_test_samples >= 10,
        f"--probe-max-test must be >= 10, got {p.max_test_samples}",
    )
    _check(p.tol >= 0 and p.max_iter >= 1, f"probe tol must be >= 0 and max_iter >= 1: {p}")
