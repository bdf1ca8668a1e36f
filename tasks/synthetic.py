"""Deterministic synthetic image-classification tasks for offline runs and tests.

Each class has a smooth colour pattern (a random 4x4x3 grid, upsampled) as its prototype. An
image is its class prototype, randomly shifted, with contrast jitter and low-frequency noise
added, so the classes are learnable from structure (not separable by one pixel) and a fine-tuned
encoder beats a random one. Everything is derived from ``seed``: the same task is identical on
every machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from tasks.base import TaskData, TaskSpec

_COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "cyan", "pink", "brown", "grey")
_THINGS = ("waves", "stripes", "blobs", "rings", "dots", "clouds", "ripples", "swirls")
TEMPLATES = ("a picture of {}.", "an image showing {}.", "a synthetic pattern of {}.")


class ArrayImages(Dataset):
    """uint8 images [N, H, W, 3] or [N, H, W] and int labels, served as (PIL RGB image, label)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.targets = [int(y) for y in labels]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return Image.fromarray(self.images[index]).convert("RGB"), self.targets[index]


def _smooth(rng: np.random.Generator, n: int, size: int, grid: int = 4) -> np.ndarray:
    """n smooth random RGB fields in [-1, 1], shape [n, size, size, 3]."""
    coarse = rng.uniform(-1.0, 1.0, size=(n, grid, grid, 3))
    reps = size // grid
    fine = coarse.repeat(reps, axis=1).repeat(reps, axis=2)
    # Box-blur twice so the upsampled grid has no hard edges.
    for _ in range(2):
        fine = (fine + np.roll(fine, 1, 1) + np.roll(fine, -1, 1)) / 3
        fine = (fine + np.roll(fine, 1, 2) + np.roll(fine, -1, 2)) / 3
    return fine


def make_images(
    seed: int, num_classes: int, n_per_class: int, size: int = 32, noise: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Images [num_classes * n_per_class, size, size, 3] uint8 and labels, in shuffled order."""
    protos = _smooth(np.random.default_rng(seed), num_classes, size)
    rng = np.random.default_rng(seed + 10_000)
    labels = np.repeat(np.arange(num_classes), n_per_class)
    x = protos[labels]
    shifts = rng.integers(-size // 8, size // 8 + 1, size=(len(labels), 2))
    for i, (dy, dx) in enumerate(shifts):
        x[i] = np.roll(x[i], (dy, dx), axis=(0, 1))
    x = x * rng.uniform(0.6, 1.0, size=(len(labels), 1, 1, 1))
    x = x + noise * _smooth(rng, len(labels), size, grid=8)
    x = x + 0.1 * rng.standard_normal(x.shape)
    images = np.clip((x + 1.5) / 3.0 * 255, 0, 255).astype(np.uint8)
    order = rng.permutation(len(labels))
    return images[order], labels[order]


def synthetic_task(
    name: str, seed: int, num_classes: int = 8, n_train: int = 60, n_test: int = 40, size: int = 32
) -> TaskSpec:
    """A TaskSpec whose build ignores the data root: the images are generated."""
    classnames = [
        f"{_COLOURS[(seed + k) % len(_COLOURS)]} {_THINGS[(seed * 3 + k) % len(_THINGS)]}"
        for k in range(num_classes)
    ]

    def build(root: Path, download: bool) -> TaskData:
        x, y = make_images(seed, num_classes, n_train + n_test, size)
        # Stratified train/test split: first n_train of each class go to train.
        rank = np.zeros(len(y), dtype=int)
        for c in range(num_classes):
            rank[y == c] = np.arange(int((y == c).sum()))
        tr, te = rank < n_train, rank >= n_train
        return TaskData(
            name, ArrayImages(x[tr], y[tr]), ArrayImages(x[te], y[te]), classnames, TEMPLATES
        )

    return TaskSpec(
        name=name, title=f"Synthetic task (seed {seed})", build=build, epochs=3, templates=TEMPLATES
    )


SYNTHETIC_TASKS = {
    spec.name: spec
    for spec in (
        synthetic_task("synth_a", seed=1),
        synthetic_task("synth_b", seed=2),
        synthetic_task("synth_c", seed=3),
        synthetic_task("synth_control", seed=4),
    )
}
