"""Image embeddings of a dataset: one pass in dataset order, through the device pipeline where the
images are uint8 arrays (benchmark/pipeline.py), else the PIL transforms in a DataLoader.

Used by the evaluation (every stage), the LP-init probe and the perf mode; ``FeaturePass`` holds
a run's settings for it (device, batch, loader processes, pipeline, autocast dtype).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from tqdm.auto import tqdm

from benchmark.cost import Cost, timed
from benchmark.pipeline import TensorPipeline, batches


@dataclass(frozen=True)
class FeaturePass:
    device: torch.device
    batch_size: int
    workers: int = 0
    pipeline: TensorPipeline | None = None
    autocast: torch.dtype | None = None  # None: fp32
    cost: Cost | None = None  # counts the images encoded and times the passes

    @staticmethod
    def default_batch(device: torch.device) -> int:
        """Large on a GPU (it changes no number, only memory), moderate on CPU."""
        return 1024 if device.type == "cuda" else 256

    def kwargs(self) -> dict:
        return {
            "device": self.device,
            "batch_size": self.batch_size,
            "workers": self.workers,
            "pipeline": self.pipeline,
            "autocast": self.autocast,
            "cost": self.cost,
        }


class Transformed(Dataset):
    """Apply a transform to the images of a (PIL image, label) dataset, optionally on a subset."""

    def __init__(self, base: Dataset, transform: Callable, indices: np.ndarray | None = None):
        self.base, self.transform = base, transform
        self.indices = np.arange(len(base)) if indices is None else indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        image, label = self.base[int(self.indices[i])]
        return self.transform(image), label


def extract_features(
    encoder: torch.nn.Module,
    dataset: Dataset | Sequence[Transformed],
    device: torch.device,
    batch_size: int = 256,
    workers: int = 0,
    desc: str = "features",
    pipeline: TensorPipeline | None = None,
    autocast: torch.dtype | None = None,
    cost: Cost | None = None,
) -> torch.Tensor:
    """Embeddings [N, D] (float32, on ``device``) in dataset order, in one pass over one dataset
    or several ``Transformed`` parts (concatenated), in inference mode, under autocast to
    ``autocast`` (None: fp32).

    With a ``pipeline``, parts backed by uint8 arrays (the prepared store) are gathered by index
    and transformed on the device; otherwise images go through the PIL transforms in a
    DataLoader."""
    parts = list(dataset) if isinstance(dataset, (list, tuple)) else [dataset]
    arrays = pipeline is not None and all(
        isinstance(p, Transformed) and hasattr(p.base, "images") for p in parts
    )
    was_training = encoder.training
    encoder.eval()
    chunks = []
    amp = torch.autocast(device.type, dtype=autocast, enabled=autocast is not None)
    total = sum(len(p) for p in parts)
    bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, disable=None, unit="img")
    with timed(cost, "features"), torch.inference_mode(), amp:
        for images in (
            _device_batches(parts, pipeline, device, batch_size)
            if arrays
            else (_loader_batches(parts, device, batch_size, workers))
        ):
            chunks.append(encoder(images).float())
            bar.update(len(images))
    bar.close()
    if cost is not None:
        cost.count("images_encoded", total)
    encoder.train(was_training)
    return torch.cat(chunks).clone()  # a normal tensor: the probe's autograd may use it


def _loader_batches(parts, device, batch_size, workers):
    loader = DataLoader(
        parts[0] if len(parts) == 1 else ConcatDataset(parts),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    for images, _ in loader:
        yield images.to(device, non_blocking=True)


def _device_batches(parts, pipeline, device, batch_size):
    for part in parts:
        for _, batch in batches(part.base.images, part.indices, batch_size, device):
            yield pipeline.eval(batch)
