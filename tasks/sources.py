"""Where a dataset's images come from: torchvision, a Hugging Face copy, or a local folder.

A TaskSpec lists its sources in the order they are tried (docs/datasets in the README): first
every source that is already on disk, then every source that can download, in that order. Each
source returns the raw splits (``Raw``): train and test datasets yielding (PIL image, label) with
``.targets``, the source's own class names in label order, and where the data came from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from torch.utils.data import Dataset, Subset

from benchmark.errors import CFBenchError
from tasks.base import TargetsDataset, targets_of

KINDS = ("torchvision", "hf", "folder")


class SourceUnavailable(Exception):
    """This source cannot provide the dataset now; the message says why (one clause)."""


@dataclass
class Raw:
    train: Dataset
    test: Dataset
    names: list[str]  # the source's own class names, label order
    origin: str  # e.g. "hf:tanganke/resisc45" or "torchvision:DTD"
    revision: str | None = None  # the Hugging Face commit the data was read at


def seeded_split(dataset: Dataset, test: float, train: float | None = None, seed: int = 0):
    """Seeded random (train, test) of a dataset without an official split: ``test`` of the images
    for test, then ``train`` of them (default: the rest) for training."""
    targets = np.asarray(targets_of(dataset))
    perm = np.random.default_rng(seed).permutation(len(targets))
    n_test = int(round(len(targets) * test))
    n_train = len(targets) - n_test if train is None else int(round(len(targets) * train))
    test_idx, train_idx = np.sort(perm[:n_test]), np.sort(perm[n_test : n_test + n_train])
    return (
        TargetsDataset(Subset(dataset, train_idx), targets[train_idx]),
        TargetsDataset(Subset(dataset, test_idx), targets[test_idx]),
    )


@dataclass(frozen=True)
class TorchvisionSource:
    """A torchvision dataset class in ``<root>/<name>``; ``make(path, download)`` returns
    (train, test, class names). ``hint`` says how to fetch it by hand (``{path}``)."""

    make: Callable[[Path, bool], tuple[Dataset, Dataset, list[str]]]
    hint: str
    downloadable: bool = True
    origin: str = "torchvision"  # recorded as the data's origin, e.g. torchvision:DTD
    kind: ClassVar[str] = "torchvision"

    def describe(self, root: Path, name: str) -> str:
        return f"torchvision in {root / name}"

    def load(self, name: str, root: Path, download: bool) -> Raw:
        path = root / name
        try:
            train, test, names = self.make(path, False)
        except (RuntimeError, FileNotFoundError, OSError, ValueError) as error:
            if not (download and self.downloadable):
                raise SourceUnavailable(f"not in {path} ({type(error).__name__})") from None
            try:
                train, test, names = self.make(path, True)
            except Exception as error:  # noqa: BLE001 - any network failure: fetch it by hand
                raise SourceUnavailable(
                    f"download to {path} failed ({type(error).__name__}: {str(error)[:80]})"
                ) from None
        return Raw(train, test, list(names), self.origin)


class HFImages(Dataset):
    """Rows of Hugging Face datasets (one or several splits, concatenated) as (PIL RGB, label)."""

    def __init__(self, parts: Sequence, image: str, label: str):
        self.parts, self.image = list(parts), image
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        self.targets = [int(t) for p in self.parts for t in p[label]]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int):
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        row = self.parts[part][index - int(self.offsets[part])]
        return row[self.image].convert("RGB"), self.targets[index]


@dataclass(frozen=True)
class HFSource:
    """A Hugging Face ``datasets`` copy: ``repo`` on the hub (downloaded with ``load_dataset``), or
    the same files in ``<root>/<name>/hf/`` (a clone of the hub repository, parquet files, or a
    ``save_to_disk`` folder), read by the same code. ``train``/``test``: the copy's split names
    that make up our train and test splits."""

    repo: str
    config: str | None = None
    revision: str | None = None  # None: the hub's current commit, resolved and recorded
    train: tuple[str, ...] = ("train",)
    test: tuple[str, ...] = ("test",)
    image: str = "image"
    label: str = "label"
    note: str = ""  # what the user must do first (e.g. accept a gated licence)
    kind: ClassVar[str] = "hf"

    def local(self, root: Path, name: str) -> Path:
        return root / name / "hf"

    def describe(self, root: Path, name: str) -> str:
        return f"hf:{self.repo} (or a local copy in {self.local(root, name)})"

    def load(self, name: str, root: Path, download: bool) -> Raw:
        local = self.local(root, name)
        if local.is_dir():
            splits, revision = self._splits(str(local), None, name), _local_revision(local)
        elif not download:
            raise SourceUnavailable(f"no copy of hf:{self.repo} in {local}, downloads disabled")
        else:
            try:
                revision = self.revision or _hub_revision(self.repo)
                splits = self._splits(self.repo, revision, name)
            except CFBenchError:
                raise
            except Exception as error:  # noqa: BLE001 - hub unreachable, gated, renamed, ...
                extra = f"; {self.note}" if self.note else ""
                raise SourceUnavailable(
                    f"hf:{self.repo} failed ({type(error).__name__}: {str(error)[:80]}){extra}"
                ) from None
        features = splits[self.train[0]].features
        names = list(getattr(features.get(self.label), "names", None) or [])
        for split in (*self.train, *self.test):
            missing = {self.image, self.label} - set(splits[split].column_names)
            if missing:
                raise CFBenchError(
                    f"dataset '{name}': the hf:{self.repo} copy's split '{split}' has no column "
                    f"{', '.join(sorted(missing))} (it has {', '.join(splits[split].column_names)})"
                    f"; data prepare --force {name} after replacing the copy"
                )
        train = HFImages([splits[s] for s in self.train], self.image, self.label)
        test = HFImages([splits[s] for s in self.test], self.image, self.label)
        return Raw(train, test, names, f"hf:{self.repo}", revision)

    def _splits(self, path: str, revision: str | None, name: str) -> dict:
        """Only the splits we use (a hub copy may also hold corrupted variants)."""
        import datasets

        wanted = (*self.train, *self.test)
        folder = Path(path)
        if (folder / "dataset_dict.json").is_file():  # save_to_disk
            loaded = datasets.load_from_disk(str(folder))
            available = list(loaded)
        else:
            builder = datasets.load_dataset_builder(path, self.config, revision=revision)
            files = builder.config.data_files or {}
            available = list(files)
        missing = [s for s in wanted if s not in available]
        if missing:
            raise CFBenchError(
                f"dataset '{name}': the hf:{self.repo} copy in {path} has splits "
                f"{', '.join(available) or 'none'}, expected {', '.join(wanted)}; replace it with "
                f"the hub's copy and run data prepare --force {name}"
            )
        if (folder / "dataset_dict.json").is_file():
            return {s: loaded[s] for s in wanted}
        return datasets.load_dataset(
            path, self.config, revision=revision, data_files={s: files[s] for s in wanted},
            split=None,
        )  # fmt: skip


def _hub_revision(repo: str) -> str:
    """The hub's current commit of a dataset repository, so the data read is the data recorded."""
    from huggingface_hub import HfApi

    return HfApi().dataset_info(repo).sha


def _local_revision(folder: Path) -> str | None:
    """The commit of a local clone of the hub repository (``git clone``), if it is one."""
    head = folder / ".git" / "HEAD"
    if not head.is_file():
        return None
    ref = head.read_text().strip()
    if ref.startswith("ref: "):
        target = folder / ".git" / ref[5:]
        return target.read_text().strip() if target.is_file() else None
    return ref


@dataclass(frozen=True)
class FolderSource:
    """Image files in ``<root>/<name>/<layout>``: ``train/<class>/*`` and ``test/<class>/*``
    folders (``test_dir`` may name another folder, e.g. ImageNet's ``val``), or one folder of
    ``<class>/*`` split with ``holdout`` = (test fraction, train fraction) by a fixed seed."""

    layout: str = "folder"
    train_dir: str = "train"
    test_dir: str = "test"
    holdout: tuple[float, float | None] | None = None
    hint: str = ""
    kind: ClassVar[str] = "folder"

    def describe(self, root: Path, name: str) -> str:
        return f"a local folder {root / name / self.layout}"

    def load(self, name: str, root: Path, download: bool) -> Raw:
        from torchvision.datasets import ImageFolder

        base = root / name / self.layout
        if not base.is_dir():
            raise SourceUnavailable(f"no folder {base}")
        try:
            if self.holdout:
                full = ImageFolder(str(base))
                train, test = seeded_split(full, *self.holdout)
                names = full.classes
            else:
                train, test = (ImageFolder(str(base / d)) for d in (self.train_dir, self.test_dir))
                if train.classes != test.classes:
                    raise CFBenchError(
                        f"dataset '{name}': {base / self.train_dir} and {base / self.test_dir} "
                        "hold different class folders; give both the same classes"
                    )
                names = train.classes
        except (FileNotFoundError, OSError) as error:
            raise SourceUnavailable(f"unreadable folder {base} ({error})") from None
        return Raw(train, test, list(names), f"folder:{base}")
