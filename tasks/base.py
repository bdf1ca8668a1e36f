"""TaskSpec: how to build one classification dataset; TaskData: the built splits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset


@dataclass
class TaskData:
    """A loaded dataset: train and test splits yielding (PIL image, int label), plus class names.

    ``train.targets`` and ``test.targets`` are plain int lists (Avalanche and the probe need them
    without decoding images).
    """

    name: str
    train: Dataset
    test: Dataset
    classnames: list[str]
    templates: tuple[str, ...]
    # Where the images came from and which ones they are (config.json records it): source,
    # origin, revision, format (raw or prepared), split sizes, SHA-256 of the labels (and of the
    # images, for a prepared store).
    provenance: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classnames)


@dataclass(frozen=True)
class Splits:
    """Split sizes: ``train`` (before our validation split is carved out of it) and ``test``."""

    train: int
    test: int

    def __str__(self) -> str:
        return f"{self.train:,} / {self.test:,}"


@dataclass(frozen=True)
class TaskSpec:
    """A registered dataset.

    Either ``build(root, download)`` makes the TaskData itself (synthetic and ``.npz`` data), or
    ``sources`` are tried in order (tasks/sources.py). ``splits`` are the sizes our fixed splits
    have (None: whatever the data holds), ``paper`` the LDIFS paper's, ``split_note`` why they
    differ. ``names`` turns a source's class names (label order) into the prompt names;
    ``store_size``: the prepared store's shorter side for datasets whose images differ in size
    (None: native size). ``epochs`` is the paper's number of fine-tuning epochs.
    """

    name: str
    title: str
    build: Callable[[Path, bool], TaskData] | None = field(default=None, repr=False)
    epochs: int = 10
    sources: tuple = ()
    num_classes: int | None = None
    splits: Splits | None = None
    paper: Splits | None = None
    split_note: str = ""
    names: Callable[[list[str]], list[str]] | None = field(default=None, repr=False)
    templates: tuple[str, ...] = ()
    store_size: int | None = None
    licence: str = ""


class TargetsDataset(Dataset):
    """Give a dataset without ``.targets`` (SVHN, GTSRB, DTD, StanfordCars) explicit labels."""

    def __init__(self, base: Dataset, targets: Sequence[int]):
        if len(base) != len(targets):
            raise ValueError(f"{len(targets)} targets for a dataset of {len(base)} items")
        self.base = base
        self.targets = [int(t) for t in targets]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image, _ = self.base[index]
        return image, self.targets[index]


class ConcatTargets(Dataset):
    """Concatenate datasets that all carry ``.targets`` (DTD train + val)."""

    def __init__(self, parts: Sequence[Dataset]):
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        self.targets = [int(t) for p in self.parts for t in p.targets]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int):
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.parts[part][index - int(self.offsets[part])]


def targets_of(dataset: Dataset) -> list[int]:
    """Labels of a dataset without decoding its images."""
    targets = getattr(dataset, "targets", None)
    if targets is None:
        raise TypeError(f"{type(dataset).__name__} has no .targets; wrap it in TargetsDataset")
    return [int(t) for t in targets]
