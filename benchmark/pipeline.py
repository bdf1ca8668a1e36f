"""The device-side image pipeline: batches gathered from uint8 arrays (the prepared store, memory-
mapped), sent to the device as uint8 and transformed there.

``TensorPipeline.from_transforms`` reads the encoder's own torchvision transforms (open_clip's
RandomResizedCrop + Normalize for training, Resize + CenterCrop + Normalize for evaluation; the
CIFAR ResNet's Resize + RandomCrop(padding)) and runs the same operations on batched tensors:

- eval: ``torchvision.transforms.v2.functional`` resize (bicubic, antialiased, on uint8, which
  rounds like PIL: at most 2 of 255 levels apart, mean 0.004), centre crop, normalise;
- train: per-sample random resized crops with parameters drawn from a seeded ``torch.Generator``
  (torchvision's sampling rule), applied to the whole batch in one ``grid_sample`` (bicubic): the
  v2 op takes one box per call, which would cost a kernel launch per image on a GPU. The crops
  keep 90-100 % of the area, so the missing antialias of a <= 1.2x downscale does not matter.

The same code runs on CPU (the tests) and CUDA. ``--pipeline pil`` keeps the PIL path, the
reference (README "Speed").
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

MODES = ("auto", "device", "pil")


@dataclass(frozen=True)
class TrainCrop:
    kind: str  # "rrc" (random resized crop) or "pad" (random crop with zero padding)
    scale: tuple[float, float] = (0.9, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    padding: int = 0


@dataclass(frozen=True)
class TensorPipeline:
    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    eval_resize: str  # "shortest" (resize the shorter side, then centre crop) or "exact"
    interpolation: str  # "bicubic" or "bilinear"
    train: TrainCrop
    train_resize: bool = False  # "pad" crops resize to ``size`` first (the ResNet's Resize)

    @staticmethod
    def from_transforms(train_tf, eval_tf) -> TensorPipeline | None:
        """The tensor version of an encoder's torchvision transforms, or None when a transform
        is one this module does not know (the run then uses the PIL pipeline)."""
        from torchvision import transforms as T

        def steps(tf):
            return list(getattr(tf, "transforms", [tf]))

        skip = ("MaybeConvertMode", "MaybeToTensor", "ToTensor", "_convert_to_rgb")
        train = [t for t in steps(train_tf) if type(t).__name__ not in skip]
        evals = [t for t in steps(eval_tf) if type(t).__name__ not in skip]
        if not (train and evals and isinstance(evals[-1], T.Normalize)):
            return None
        norm = evals[-1]
        mean, std = tuple(float(v) for v in norm.mean), tuple(float(v) for v in norm.std)
        kinds = [type(t).__name__ for t in train]
        if kinds == ["RandomResizedCrop", "Normalize"]:
            rrc = train[0]
            crop = TrainCrop("rrc", tuple(rrc.scale), tuple(rrc.ratio))
            interp, resize = rrc.interpolation.value, False
        elif kinds == ["Resize", "RandomCrop", "Normalize"] and train[1].padding is not None:
            pad = train[1].padding
            if not isinstance(pad, int) or train[1].padding_mode != "constant":
                return None
            crop, interp, resize = TrainCrop("pad", padding=pad), train[0].interpolation.value, True
        else:
            return None
        ekinds = [type(t).__name__ for t in evals]
        if ekinds == ["Resize", "CenterCrop", "Normalize"]:
            eval_resize, size = "shortest", tuple(evals[1].size)
        elif ekinds == ["Resize", "Normalize"] and not isinstance(evals[0].size, int):
            eval_resize, size = "exact", tuple(evals[0].size)
        else:
            return None
        if interp not in ("bicubic", "bilinear"):
            return None
        return TensorPipeline(size, mean, std, eval_resize, interp, crop, resize)

    # -- on a batch [B, H, W, 3], [B, H, W, 1] or [B, H, W] uint8 on the device -------------------
    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = _constants(self.mean, self.std, x.device)
        return (x.float() / 255.0 - mean) / std

    def _mode(self):
        from torchvision.transforms.v2 import InterpolationMode

        return InterpolationMode(self.interpolation)

    def eval(self, batch: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as TF

        x = channels_first(batch)
        if self.eval_resize == "shortest":
            side = min(self.size)
            if min(x.shape[-2:]) != side:
                x = TF.resize(x, side, interpolation=self._mode(), antialias=True)
            x = TF.center_crop(x, list(self.size))
        elif tuple(x.shape[-2:]) != self.size:
            x = TF.resize(x, list(self.size), interpolation=self._mode(), antialias=True)
        return self._normalise(x)

    def train_batch(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as TF

        x = channels_first(batch)
        if self.train.kind == "pad":
            if self.train_resize and tuple(x.shape[-2:]) != self.size:
                x = TF.resize(x, list(self.size), interpolation=self._mode(), antialias=True)
            return self._normalise(pad_crop(x, self.size, self.train.padding, generator))
        boxes = rrc_boxes(
            len(x), x.shape[-2], x.shape[-1], self.train.scale, self.train.ratio, generator
        )
        return self._normalise(crop_resize(x, boxes, self.size, self.interpolation))


@functools.lru_cache(maxsize=16)
def _constants(mean: tuple, std: tuple, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std as [1, 3, 1, 1] tensors on ``device``, made once (a copy from the host per
    batch would wait for the GPU)."""
    return (
        torch.tensor(mean, device=device).view(1, -1, 1, 1),
        torch.tensor(std, device=device).view(1, -1, 1, 1),
    )


def upload(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor to ``device`` without waiting for it: through pinned memory on CUDA (a copy
    from pageable memory synchronises with the GPU)."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def channels_first(batch: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] from [B, H, W, C] or [B, H, W]; grey images become RGB by repeating their one
    channel, as PIL's ``convert("RGB")`` does."""
    x = batch[..., None] if batch.ndim == 3 else batch
    x = x.permute(0, 3, 1, 2)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def rrc_boxes(n: int, height: int, width: int, scale, ratio, generator: torch.Generator):
    """[n, 4] float (top, left, h, w) per sample, by torchvision's RandomResizedCrop rule: up to
    10 draws of (area fraction, log aspect ratio), the first that fits; else a centre crop with
    the ratio clamped to the allowed range."""
    area = height * width
    tries = 10
    target = area * torch.empty(n, tries).uniform_(scale[0], scale[1], generator=generator)
    log_r = torch.empty(n, tries).uniform_(
        math.log(ratio[0]), math.log(ratio[1]), generator=generator
    )
    aspect = torch.exp(log_r)
    w = torch.sqrt(target * aspect).round()
    h = torch.sqrt(target / aspect).round()
    ok = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    u = torch.rand(n, 2, generator=generator)
    found = ok.any(1)
    pick = ok.int().argmax(1)  # the first draw that fits
    rows = torch.arange(n)
    bh, bw = h[rows, pick], w[rows, pick]
    top = torch.floor(u[:, 0] * (height - bh + 1))
    left = torch.floor(u[:, 1] * (width - bw + 1))
    # No draw fits: torchvision's fallback, a centre crop with the ratio clamped.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fh, fw = height, round(height * ratio[1])
    else:
        fw, fh = width, height
    fallback = torch.tensor([(height - fh) // 2, (width - fw) // 2, fh, fw], dtype=torch.float)
    boxes = torch.stack([top, left, bh, bw], dim=1)
    return torch.where(found[:, None], boxes, fallback)


def crop_resize(x: torch.Tensor, boxes: torch.Tensor, size, interpolation: str) -> torch.Tensor:
    """Crop box i of image i and resize it to ``size``, for the whole batch in one grid_sample.
    Returns float in [0, 255] (rounded and clamped like an 8-bit image)."""
    n, _, height, width = x.shape
    boxes = upload(boxes, x.device)
    top, left, bh, bw = boxes.unbind(1)
    # Affine map from output coordinates in [-1, 1] to input coordinates in [-1, 1]
    # (align_corners=False: pixel centres at (2k + 1) / side - 1).
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0] = bw / width
    theta[:, 0, 2] = (2 * left + bw) / width - 1
    theta[:, 1, 1] = bh / height
    theta[:, 1, 2] = (2 * top + bh) / height - 1
    grid = F.affine_grid(theta, [n, x.shape[1], *size], align_corners=False)
    out = F.grid_sample(
        x.float(), grid, mode=interpolation, padding_mode="border", align_corners=False
    )
    return out.round().clamp(0, 255)


def pad_crop(x: torch.Tensor, size, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random crop of ``size`` from the zero-padded images (torchvision RandomCrop)."""
    n = len(x)
    padded = F.pad(x, (padding, padding, padding, padding))
    ph, pw = padded.shape[-2:]
    oy = upload(torch.randint(0, ph - size[0] + 1, (n,), generator=generator), x.device)
    ox = upload(torch.randint(0, pw - size[1] + 1, (n,), generator=generator), x.device)
    rows = (oy[:, None] + torch.arange(size[0], device=x.device))[:, :, None]
    cols = (ox[:, None] + torch.arange(size[1], device=x.device))[:, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def gather(images: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Rows ``index`` of a (memory-mapped) array, read in ascending order for locality."""
    order = np.argsort(index, kind="stable")
    rows = np.asarray(images[index[order]])
    out = np.empty_like(rows)
    out[order] = rows
    return out


def to_device(rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 rows to the device: through pinned memory, without blocking, on CUDA."""
    tensor = torch.from_numpy(rows)
    return upload(tensor, device) if device.type == "cuda" else tensor


def batches(
    images: np.ndarray, index: np.ndarray, size: int, device: torch.device
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """(positions, uint8 batch on the device) in order, the next batch read (and sent) while the
    caller works on this one."""
    chunks = [index[i : i + size] for i in range(0, len(index), size)]
    if not chunks:
        return
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(lambda c: to_device(gather(images, c), device), chunks[0])
        for k, chunk in enumerate(chunks):
            batch = future.result()
            if k + 1 < len(chunks):
                future = pool.submit(lambda c: to_device(gather(images, c), device), chunks[k + 1])
            yield chunk, batch


class DeviceBatches:
    """Avalanche's training dataloader for one experience, from a uint8 array: every epoch a
    shuffled order and random crops drawn from ``torch.Generator(seed_of_epoch())``, so a resumed
    run draws what an uninterrupted one does. Yields [x, y, task labels]: x and y on the device,
    the task labels on the CPU (where the trainer keeps them)."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        index: np.ndarray,
        task_label: int,
        batch_size: int,
        pipeline: TensorPipeline,
        device: torch.device,
        seed_of_epoch: Callable[[], int],
    ):
        # images and labels: the whole stored split; index: the positions this experience uses
        self.images, self.index = images, np.asarray(index)
        self.labels = np.asarray(labels, dtype=np.int64)  # cross-entropy takes int64 targets
        self.task_label, self.batch_size, self.pipeline = task_label, batch_size, pipeline
        self.device, self.seed_of_epoch = device, seed_of_epoch

    def __len__(self) -> int:
        return math.ceil(len(self.index) / self.batch_size)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed_of_epoch())
        order = torch.randperm(len(self.index), generator=generator).numpy()
        for positions, batch in batches(
            self.images, self.index[order], self.batch_size, self.device
        ):
            x = self.pipeline.train_batch(batch, generator)
            y = upload(torch.from_numpy(self.labels[positions]), self.device)
            t = torch.full((len(y),), self.task_label)  # on the CPU, as the trainer keeps them
            yield [x, y, t]


def epoch_seed(run_seed: int, task: int, epoch: int) -> int:
    """A seed per (run seed, task, epoch): independent streams, reproducible on resume."""
    return int(np.random.SeedSequence([run_seed, task, epoch]).generate_state(1)[0])
