"""The perf mode's measurements (``run_benchmark.py perf``): each a rate from one timed run of the
real code (device pipeline, trainer and strategy plugins, feature pass, probe), on synthetic uint8
images and random weights, after one untimed warm-up step."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from avalanche.training.plugins import SupervisedPlugin
from torch.utils.flop_counter import FlopCounterMode

from benchmark.config import ProbeConfig, TrainConfig
from benchmark.model.encoder import Encoder
from benchmark.model.heads import CosineHead, MultiTaskClassifier
from benchmark.pipeline import DeviceBatches, TensorPipeline, batches
from benchmark.probe.features import Transformed, extract_features
from benchmark.strategy_api import StrategyContext, resolve
from benchmark.streams import build_stream
from benchmark.trainer import Trainer
from tasks.base import TaskData
from tasks.synthetic import ArrayImages


@dataclass
class Bench:
    """What every measurement shares: the encoder and its tensor pipeline, where it runs, the
    training batch, the steps per measurement and the autocast dtype (None: fp32)."""

    encoder: Encoder
    pipeline: TensorPipeline
    device: torch.device
    batch_size: int
    steps: int
    autocast: torch.dtype | None
    strategies: Mapping  # the registry (strategies.STRATEGIES) the trainer rates build from
    compiled: bool = False  # the encoder was compiled in place

    def sync(self) -> None:
        if self.device.type == "cuda":  # the clock must not stop before the GPU has
            torch.cuda.synchronize(self.device)

    def amp(self):
        return torch.autocast(self.device.type, dtype=self.autocast, enabled=bool(self.autocast))


def rate(images: int, seconds: float, **extra) -> dict:
    return {"images": int(images), "seconds": seconds, "images_per_s": images / seconds, **extra}


def synthetic_images(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 [n, H, W, 3] noise: what the prepared store holds (grey images are stored as RGB)."""
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


def cycle_index(n: int, buffer: int, seed: int = 0) -> np.ndarray:
    """``n`` positions into a buffer of ``buffer`` images, shuffled, wrapping around as needed."""
    return np.random.default_rng(seed).permutation(n) % buffer


def pipeline_rate(bench: Bench, images: np.ndarray) -> dict:
    """Gather by index, send to the device, train transform there: images/s, after one batch."""
    b = bench.batch_size
    index = cycle_index((bench.steps + 1) * b, len(images))
    generator = torch.Generator().manual_seed(0)
    start = None
    for k, (_, batch) in enumerate(batches(images, index, b, bench.device)):
        bench.pipeline.train_batch(batch, generator)
        if k == 0:
            bench.sync()
            start = time.perf_counter()
    bench.sync()
    return rate(bench.steps * b, time.perf_counter() - start, transform="train")


def eval_rate(bench: Bench, images: np.ndarray, batch_size: int) -> dict:
    """``extract_features`` through the device pipeline: images/s after a one-batch warm-up."""
    labels = np.zeros(len(images), dtype=np.int64)
    store = ArrayImages(images, labels)
    n = bench.steps * batch_size

    def one_pass(count: int) -> None:
        part = Transformed(store, bench.encoder.eval_transform, cycle_index(count, len(images)))
        extract_features(
            bench.encoder.module,
            [part],
            device=bench.device,
            batch_size=batch_size,
            desc="perf eval",
            pipeline=bench.pipeline,
            autocast=bench.autocast,
        )

    one_pass(batch_size)
    bench.sync()
    start = time.perf_counter()
    one_pass(n)
    bench.sync()
    return rate(n, time.perf_counter() - start, batch_size=batch_size)


def classifier(bench: Bench, num_classes: int) -> MultiTaskClassifier:
    """The trained module of a run, with one head of random unit rows times CLIP's logit scale
    (as zero-shot heads are)."""
    weight = F.normalize(torch.randn(num_classes, bench.encoder.embed_dim), dim=1)
    scale = bench.encoder.text.logit_scale if bench.encoder.text is not None else 1.0
    return MultiTaskClassifier(bench.encoder.module, [CosineHead(weight, scale=scale)]).to(
        bench.device
    )


def device_batches(bench: Bench, images: np.ndarray, labels: np.ndarray) -> DeviceBatches:
    """One warm-up step and ``steps`` timed ones of the real training loader."""
    index = cycle_index((bench.steps + 1) * bench.batch_size, len(images))
    return DeviceBatches(
        images, labels, index, 0, bench.batch_size, bench.pipeline, bench.device, lambda: 0
    )


class StepClock(SupervisedPlugin):
    """Starts the clock after the first training step (the warm-up), stops it after the epoch."""

    def __init__(self, sync: Callable[[], None]):
        super().__init__()
        self.sync, self.start, self.stop, self.images = sync, None, None, 0

    def after_training_iteration(self, strategy, **kwargs):
        if self.start is None:
            self.sync()
            self.start = time.perf_counter()
        else:
            self.images += len(strategy.mb_x)

    def after_training_epoch(self, strategy, **kwargs):
        self.sync()
        self.stop = time.perf_counter()


def trainer_rate(bench: Bench, strategy: str, images: np.ndarray, num_classes: int) -> dict:
    """Train images/s of ``strategy`` through the run's own Trainer, plugins and device loader
    (as benchmark/runner.py builds them), on one task of synthetic images."""
    labels = np.arange(len(images)) % num_classes
    task = TaskData(
        f"perf-{strategy}",
        ArrayImages(images, labels),
        ArrayImages(images[:num_classes], labels[:num_classes]),
        [f"class {k}" for k in range(num_classes)],
        ("a photo of a {}.",),
    )
    model = classifier(bench, num_classes)
    cfg = TrainConfig(batch_size=bench.batch_size, precision=_precision(bench), workers=0)
    context = StrategyContext(model, bench.encoder, bench.device, cfg, ProbeConfig(), [task])
    plugins = resolve(strategy, {}, bench.strategies)(context)
    if bench.compiled and plugins:
        # Dynamo does not guard on forward hooks added to submodules after a compile (LDIFS's
        # taps): compile afresh so the graph calls this measurement's hooks. A run builds its
        # plugins before its first forward, so it never needs this.
        torch._dynamo.reset()
    clock = StepClock(bench.sync)
    trainer = Trainer(
        model=model, cfg=cfg, device=bench.device, plugins=[*plugins, clock], task_names=[task.name]
    )
    trainer.device_loader = lambda t: device_batches(bench, images, labels)
    enc = bench.encoder
    stream = build_stream([task], enc.train_transform, enc.eval_transform, bench.batch_size)
    try:
        trainer.train_task(stream.train_stream[0], epochs=1)
    finally:
        for plugin in plugins:  # LDIFS's hooks stay on the shared encoder otherwise
            recorder = getattr(plugin, "student", None)
            if recorder is not None and hasattr(recorder, "remove"):
                recorder.remove()
    fp32 = trainer.autocast is None
    return rate(clock.images, clock.stop - clock.start, arithmetic="fp32" if fp32 else "bf16")


def _precision(bench: Bench) -> str:
    return "bf16" if bench.autocast == torch.bfloat16 else "fp32"


def bare_rate(bench: Bench, images: np.ndarray, num_classes: int, fixed: bool) -> dict:
    """The loop without Avalanche: forward, cross-entropy, backward, grad clip, AdamW step, on
    the same model and batches (``fixed``: one transformed batch again and again, so the rate is
    the model's alone)."""
    labels = np.arange(len(images)) % num_classes
    model = classifier(bench, num_classes).train()
    cuda = bench.device.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.1, fused=cuda)
    loader = device_batches(bench, images, labels)
    if fixed:
        x, y, _ = next(iter(loader))
        loader = [(x, y, None)] * (bench.steps + 1)
    start = None
    for k, (x, y, _) in enumerate(loader):
        with bench.amp():
            loss = F.cross_entropy(model.forward_single_task(x, 0), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if k == 0:
            bench.sync()
            start = time.perf_counter()
    bench.sync()
    return rate(bench.steps * bench.batch_size, time.perf_counter() - start)


def count_flops(bench: Bench, num_classes: int, batch: int = 2) -> dict:
    """FLOPs per image counted by FlopCounterMode (matmuls and convolutions; attention where it
    runs as a counted op): the encoder's forward, and forward + backward of the classifier."""
    model = classifier(bench, num_classes).train()
    side = bench.pipeline.size
    x = torch.randn(batch, 3, *side, device=bench.device)
    y = torch.zeros(batch, dtype=torch.long, device=bench.device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.encoder(x)
    forward = counter.get_total_flops() / batch
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model.forward_single_task(x, 0), y).backward()
    train = counter.get_total_flops() / batch
    model.zero_grad(set_to_none=True)
    return {
        "forward_per_image": forward,
        "train_per_image": train,
        # LDIFS adds one forward of its frozen reference on the same batch
        "ldifs_train_per_image": train + forward,
        "input_size": list(side),
    }


# bf16 dense and fp32 (no tensor cores) peaks, TFLOP/s, by a part of the CUDA device's name
PEAKS = (
    (("H200",), 989.0, 67.0),
    (("H100", "HBM3"), 989.0, 67.0),  # the SXM part reports "NVIDIA H100 80GB HBM3"
    (("H100", "SXM"), 989.0, 67.0),
    (("H100", "PCIe"), 756.0, 51.0),
    (("A100",), 312.0, 19.5),
)


def peak_tflops(device: torch.device) -> tuple[str, float | None, float | None, str]:
    """(device name, bf16 peak, fp32 peak, note); the peaks are None where unknown."""
    if device.type != "cuda":
        return "cpu", None, None, "no peak is known for a CPU: MFU is null"
    name = torch.cuda.get_device_name(device)
    for parts, bf16, fp32 in PEAKS:
        if all(p.lower() in name.lower() for p in parts):
            return name, bf16, fp32, "dense peaks from the vendor's data sheet"
    return name, None, None, f"no peak recorded for '{name}': MFU is null"
