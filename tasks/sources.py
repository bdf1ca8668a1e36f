"""Where a dataset's images come from: torchvision, a Hugging Face copy, or a local folder.

A TaskSpec lists its sources in the order they are tried (docs/datasets in the README): first
every source that is already on disk, then every source that can download, in that order. Each
source returns the raw splits (``Raw``): train and test datasets yielding (PIL image, label) with
``.targets``, the source's own class names in label order, and where the data came from.
"""

from __future__ import annotations

import re
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
    the same files in ``<root>/<name>/hf/`` (``hf download --repo-type dataset``, a clone of the
    hub repository, or a ``save_to_disk`` folder), read by the same code. ``train``/``test``: the
    copy's split names that make up our train and test splits. Class names come from the copy's
    card (README.md ``dataset_info``), else from ``names`` (cfbench's list in the copy's label
    order), never from metadata embedded in the data files."""

    repo: str
    config: str | None = None
    revision: str | None = None  # None: the hub's current commit, resolved and recorded
    train: tuple[str, ...] = ("train",)
    test: tuple[str, ...] = ("test",)
    image: str = "image"
    label: str = "label"
    note: str = ""  # what the user must do first (e.g. accept a gated licence)
    names: tuple[str, ...] | Callable[[], Sequence[str]] = ()  # where the card names none
    kind: ClassVar[str] = "hf"

    def local(self, root: Path, name: str) -> Path:
        return root / name / "hf"

    def describe(self, root: Path, name: str) -> str:
        return f"hf:{self.repo} (or a local copy in {self.local(root, name)})"

    @property
    def wanted(self) -> tuple[str, ...]:
        return (*self.train, *self.test)

    def download_fix(self, folder: Path) -> str:
        return f"'hf download --repo-type dataset {self.repo} --local-dir {folder}'"

    def load(self, name: str, root: Path, download: bool) -> Raw:
        local = self.local(root, name)
        if local.is_dir():
            (splits, names), revision = self._local_splits(local, name), _local_revision(local)
        elif not download:
            raise SourceUnavailable(f"no copy of hf:{self.repo} in {local}, downloads disabled")
        else:
            try:
                revision = self.revision or _hub_revision(self.repo)
                splits, names = self._splits(self.repo, revision, name, local=False)
            except CFBenchError:
                raise
            except Exception as error:  # noqa: BLE001 - hub unreachable, gated, renamed, ...
                extra = f"; {self.note}" if self.note else ""
                raise SourceUnavailable(
                    f"hf:{self.repo} failed ({type(error).__name__}: {_first_line(error)[:80]})"
                    f"{extra}"
                ) from None
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

    def _local_splits(self, folder: Path, name: str) -> tuple[dict, list[str]]:
        """A local copy's splits; an incomplete or unreadable copy is one line with the fix."""
        where = f"dataset '{name}': the hf:{self.repo} copy in {folder}"
        problem = _incomplete(folder) or _unmatched_card_files(folder, self.config, self.wanted)
        if problem:
            git = f"run 'git lfs pull' in {folder}, or " if "Git LFS" in problem else ""
            raise CFBenchError(
                f"{where} is incomplete ({problem}); {git}complete it with "
                f"{self.download_fix(folder)}"
            )
        try:
            return self._splits(str(folder), None, name, local=True)
        except CFBenchError:
            raise
        except Exception as error:  # noqa: BLE001 - truncated or foreign files: download again
            raise CFBenchError(
                f"{where} could not be read ({type(error).__name__}: {_first_line(error)[:100]}); "
                f"download it again with {self.download_fix(folder)}"
            ) from None

    def _splits(self, path: str, revision: str | None, name: str, local: bool):
        """(the splits we use, class names): only those splits (a hub copy may also hold
        corrupted variants), read with the card's class names, or cfbench's where it has none."""
        import datasets

        wanted, folder = self.wanted, Path(path)
        if local and (folder / "dataset_dict.json").is_file():  # save_to_disk
            loaded = datasets.load_from_disk(str(folder))
            self._check_splits(list(loaded), wanted, path, name, local)
            label = loaded[self.train[0]].features.get(self.label)
            return {s: loaded[s] for s in wanted}, list(getattr(label, "names", None) or [])
        builder = datasets.load_dataset_builder(path, self.config, revision=revision)
        files = builder.config.data_files or {}
        self._check_splits(list(files), wanted, path, name, local)
        if local:
            problem = _missing_shards({s: files[s] for s in wanted})
            if problem:
                raise CFBenchError(
                    f"dataset '{name}': the hf:{self.repo} copy in {path} is incomplete "
                    f"({problem}); complete it with {self.download_fix(folder)}"
                )
        names = self._class_names(builder, path, name, local)
        # ClassLabel wants unique names (CLIP's ImageNet list repeats two): only the count here
        label = datasets.ClassLabel(num_classes=len(names))
        features = datasets.Features({self.image: datasets.Image(), self.label: label})
        data_files = {s: files[s] for s in wanted}
        kwargs = {"revision": revision, "data_files": data_files, "features": features}
        if builder.name == "parquet":  # may hold more columns; a WebDataset drops the others
            kwargs["columns"] = list(features)
        return datasets.load_dataset(path, self.config, split=None, **kwargs), names

    def _class_names(self, builder, path: str, name: str, local: bool) -> list[str]:
        """The names of the card's ClassLabel for the label column, else cfbench's."""
        import datasets

        card = (builder.info.features or {}).get(self.label)
        if isinstance(card, datasets.ClassLabel) and card.names:
            return list(card.names)
        names = self.names() if callable(self.names) else self.names
        if not names:
            fix = (
                f"download it with {self.download_fix(Path(path))}, which brings the card"
                if local
                else "give its HFSource the class names in tasks/vision.py"
            )
            raise CFBenchError(
                f"dataset '{name}': the hf:{self.repo} copy in {path} names no classes (its card, "
                f"README.md, has no ClassLabel for '{self.label}'); {fix}"
            )
        return list(names)

    def _check_splits(self, available, wanted, path: str, name: str, local: bool) -> None:
        missing = [s for s in wanted if s not in available]
        if not missing:
            return
        fix = (
            f"complete it with {self.download_fix(Path(path))}"
            if local
            else "the hub copy changed: pin an older revision of it in tasks/vision.py"
        )
        raise CFBenchError(
            f"dataset '{name}': the hf:{self.repo} copy in {path} has splits "
            f"{', '.join(available) or 'none'}, expected {', '.join(wanted)}; {fix} and run "
            f"data prepare --force {name}"
        )


LFS_POINTER = b"version https://git-lfs.github.com/spec/"
_DATA_SUFFIXES = (".parquet", ".arrow", ".tar", ".jsonl", ".csv")


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def _incomplete(folder: Path) -> str | None:
    """Why a local copy cannot be complete, or None: Git LFS pointer files in place of the data
    (a clone without git-lfs), or the partial files of an interrupted ``hf download``."""
    pointers = []
    for file in sorted(folder.rglob("*")):
        inside = file.relative_to(folder).parts
        if ".git" in inside or not file.is_file() or not file.name.endswith(_DATA_SUFFIXES):
            continue
        if file.stat().st_size < 1024:
            with open(file, "rb") as f:
                if f.read(len(LFS_POINTER)) == LFS_POINTER:
                    pointers.append(file.relative_to(folder).as_posix())
    if pointers:
        more = f" and {len(pointers) - 1} more" if len(pointers) > 1 else ""
        return f"{pointers[0]}{more} are Git LFS pointer files, not data"
    partial = sorted((folder / ".cache" / "huggingface" / "download").rglob("*.incomplete"))
    if partial:
        return f"{len(partial)} files of an interrupted hf download are still partial"
    return None


def _unmatched_card_files(folder: Path, config: str | None, wanted) -> str | None:
    """A split of the card's ``configs`` (README.md) whose data files are all missing."""
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard

    readme = folder / "README.md"
    if not readme.is_file():
        return None
    try:
        configs = MetadataConfigs.from_dataset_card_data(DatasetCard.load(readme).data)
    except Exception:  # noqa: BLE001 - a card datasets cannot read: it says so when loading
        return None
    entries = configs.get(config or "default", {}).get("data_files") or []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("split") not in wanted:
            continue
        patterns = entry.get("path")
        patterns = [patterns] if isinstance(patterns, str) else list(patterns or [])
        if patterns and not any(next(folder.glob(p), None) for p in patterns):
            return f"no files for split '{entry['split']}': {', '.join(patterns)}"
    return None


def _missing_shards(files: dict[str, Sequence[str]]) -> str | None:
    """Shards missing from a split whose file names count them (``train-00003-of-00012``)."""
    for split, paths in files.items():
        counts: dict[int, set[int]] = {}
        for path in paths:
            match = re.search(r"-(\d+)-of-(\d+)", Path(str(path)).name)
            if match:
                counts.setdefault(int(match.group(2)), set()).add(int(match.group(1)))
        for total, have in counts.items():
            if len(have) < total:
                return f"split '{split}' has {len(have)} of its {total} files"
    return None


def _hub_revision(repo: str) -> str:
    """The hub's current commit of a dataset repository, so the data read is the data recorded."""
    from huggingface_hub import HfApi

    return HfApi().dataset_info(repo).sha


def _local_revision(folder: Path) -> str | None:
    """The commit of a local copy: a ``git clone``'s HEAD, or the commit ``hf download`` recorded
    for its files (``.cache/huggingface/download/*.metadata``, first line), if it is one."""
    head = folder / ".git" / "HEAD"
    if head.is_file():
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            target = folder / ".git" / ref[5:]
            return target.read_text().strip() if target.is_file() else None
        return ref
    records = sorted((folder / ".cache" / "huggingface" / "download").rglob("*.metadata"))
    commits = {r.read_text().splitlines()[0].strip() for r in records if r.read_text().strip()}
    return commits.pop() if len(commits) == 1 else None


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
        base = root / name / self.layout
        if not base.is_dir():
            raise SourceUnavailable(f"no folder {base}")
        try:
            if self.holdout:
                full = image_folder(base)
                train, test = seeded_split(full, *self.holdout)
                names = full.classes
            else:
                train, test = (image_folder(base / d) for d in (self.train_dir, self.test_dir))
                if train.classes != test.classes:
                    raise CFBenchError(
                        f"dataset '{name}': {base / self.train_dir} and {base / self.test_dir} "
                        "hold different class folders; give both the same classes"
                    )
                names = train.classes
        except (FileNotFoundError, OSError) as error:
            raise SourceUnavailable(f"unreadable folder {base} ({error})") from None
        return Raw(train, test, list(names), f"folder:{base}")


def image_folder(path: Path):
    """torchvision's ImageFolder, with class folders named by numbers (GTSRB's ``0``..``42`` or
    ``00000``..``00042``) in numeric order: label i is the folder numbered i, not the i-th name
    in text order (``0, 1, 10, 11, ...``)."""
    from torchvision.datasets import ImageFolder

    folder = ImageFolder(str(path))
    if folder.classes and all(c.isdigit() for c in folder.classes):
        order = sorted(folder.classes, key=int)
        new = [order.index(c) for c in folder.classes]  # text-order label -> numeric-order label
        folder.samples = [(file, new[label]) for file, label in folder.samples]
        folder.imgs, folder.targets = folder.samples, [label for _, label in folder.samples]
        folder.classes, folder.class_to_idx = order, {c: i for i, c in enumerate(order)}
    return folder
