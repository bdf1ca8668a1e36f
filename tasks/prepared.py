"""The prepared store: every split decoded once into uint8 arrays a run can memory-map.

Layout, per dataset and split: ``<data-root>/prepared/<name>/<split>/`` with ``images.npy``
(uint8 [N, H, W, 3]), ``labels.npy`` (int64 [N]), ``classes.json`` (class names, label order) and
``meta.json`` (format version, source, revision, counts, storage size, SHA-256 of labels and
images). Images keep their native size when every image of the dataset shares one (MNIST, CIFAR,
SVHN, EuroSAT, RESISC45); otherwise (``size``) the shorter side is resized to ``size`` (bicubic,
antialiased) and the centre ``size`` x ``size`` kept: exactly what the CLIP eval transform does at
224 px, so evaluation sees the same pixels as from the raw files (README "Prepared store").

A split is written into ``<split>.partial/`` and renamed when complete, so a half-written split
never looks complete; ``progress.json`` there lets a killed ``prepare`` continue where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from benchmark.errors import CFBenchError
from benchmark.io import write_atomic

VERSION = 1
SPLITS = ("train", "test")
CHUNK = 256  # images decoded per step; progress is saved after each


def location(root: Path, name: str) -> Path:
    return Path(root) / "prepared" / name.replace(":", "-")


def is_prepared(root: Path, name: str) -> bool:
    folder = location(root, name)
    return all((folder / s / "meta.json").is_file() for s in SPLITS)


def refuse(name: str, file: Path, problem: str) -> CFBenchError:
    return CFBenchError(
        f"prepared store {file}: {problem}; run 'run_benchmark.py data prepare --force {name}' "
        "to write it again"
    )


def sha256_array(array: np.ndarray, chunk: int = 4096) -> str:
    digest = hashlib.sha256()
    for start in range(0, len(array), chunk):
        digest.update(np.ascontiguousarray(array[start : start + chunk]).tobytes())
    return digest.hexdigest()


class StoredImages(Dataset):
    """One prepared split served as (PIL RGB image, label); ``images`` is the memory-mapped uint8
    array (opened lazily, so DataLoader workers each map it instead of receiving a copy)."""

    def __init__(self, folder: Path, labels: np.ndarray):
        self.folder = folder
        self.targets = [int(t) for t in labels]
        self._images: np.ndarray | None = None

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.folder / "images.npy", mmap_mode="r")
        return self._images

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_images": None}

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return Image.fromarray(np.asarray(self.images[index])), self.targets[index]


def _header(file: Path) -> tuple[tuple[int, ...], int]:
    """(shape, data offset) of a .npy file without reading its data."""
    with open(file, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else (np.lib.format.read_array_header_2_0)
        )
        shape, _, _ = read(f)
        return shape, f.tell()


def read_meta(name: str, folder: Path) -> dict:
    file = folder / "meta.json"
    try:
        meta = json.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise refuse(name, file, f"unreadable ({type(error).__name__})") from None
    if meta.get("version") != VERSION:
        raise refuse(
            name,
            file,
            f"written by store version {meta.get('version')}, this cfbench reads version {VERSION}",
        )
    return meta


def open_split(name: str, folder: Path) -> tuple[StoredImages, list[str], dict]:
    """A prepared split after the cheap checks a run makes: files present, array shapes and file
    sizes match meta.json (a truncated file fails here), labels match their SHA-256 and the class
    list. ``verify`` also re-hashes the images."""
    meta = read_meta(name, folder)
    n = meta["count"]
    images = folder / "images.npy"
    try:
        shape, offset = _header(images)
    except (OSError, ValueError) as error:
        raise refuse(name, images, f"unreadable ({type(error).__name__})") from None
    if shape != (n, meta["height"], meta["width"], 3):
        raise refuse(
            name,
            images,
            f"shape {shape}, meta.json says {n} images of {meta['height']}x{meta['width']}x3",
        )
    if images.stat().st_size != offset + int(np.prod(shape)):
        raise refuse(
            name,
            images,
            f"{images.stat().st_size} bytes, expected {offset + int(np.prod(shape))} (truncated?)",
        )
    try:
        labels = np.load(folder / "labels.npy")
        classes = json.loads((folder / "classes.json").read_text())
    except (OSError, ValueError) as error:
        raise refuse(
            name, folder, f"unreadable labels or classes ({type(error).__name__})"
        ) from None
    if labels.shape != (n,) or sha256_array(labels) != meta["labels_sha256"]:
        raise refuse(name, folder / "labels.npy", "labels differ from those meta.json records")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise refuse(
            name,
            folder / "labels.npy",
            f"labels outside 0..{len(classes) - 1}, the {len(classes)} classes of classes.json",
        )
    return StoredImages(folder, labels), classes, meta


def to_rgb_array(image: Image.Image, size: int | None) -> np.ndarray:
    """uint8 [H, W, 3]: the native image, or shorter side ``size`` then centre crop (the same
    torchvision ops the CLIP eval transform runs, so a 224 store is what it would compute)."""
    image = image.convert("RGB")
    if size is not None:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as F

        image = F.center_crop(F.resize(image, size, InterpolationMode.BICUBIC), size)
    return np.asarray(image, dtype=np.uint8)


class _Decoded(Dataset):
    def __init__(self, base: Dataset, size: int | None):
        self.base, self.size = base, size

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> np.ndarray:
        return to_rgb_array(self.base[index][0], self.size)


def _resume_point(partial: Path, plan: dict) -> int:
    """Images already written by a killed prepare of the same plan (0: start afresh)."""
    progress = partial / "progress.json"
    if progress.is_file():
        saved = json.loads(progress.read_text())
        if saved.get("plan") == plan and (partial / "images.npy").is_file():
            return int(saved["done"])
    if partial.exists():
        shutil.rmtree(partial)
    return 0


def _check_size(name: str, split: str, index: int, array: np.ndarray, first: np.ndarray) -> None:
    if array.shape != first.shape:
        raise CFBenchError(
            f"dataset '{name}': {split} image {index} is {array.shape[1]}x{array.shape[0]}, the "
            f"first is {first.shape[1]}x{first.shape[0]}; its images differ in size, so its "
            "TaskSpec needs a store_size"
        )


def write_split(
    name: str,
    split: str,
    folder: Path,
    dataset: Dataset,
    classes: list[str],
    info: dict,
    size: int | None,
    workers: int = 0,
    on_chunk: Callable[[int], None] | None = None,
) -> dict:
    """Decode ``dataset`` into ``folder`` (via ``folder.partial``, resumable); return its meta."""
    labels = np.asarray(dataset.targets, dtype=np.int64)
    if len(labels) == 0:
        raise CFBenchError(f"dataset '{name}': its {split} split is empty")
    first = to_rgb_array(dataset[0][0], size)
    shape = (len(labels), *first.shape)
    plan = {
        "origin": info.get("origin"),
        "revision": info.get("revision"),
        "shape": list(shape),
        "size": size,
        "labels_sha256": sha256_array(labels),
    }
    partial = folder.with_name(folder.name + ".partial")
    done = _resume_point(partial, plan)
    partial.mkdir(parents=True, exist_ok=True)
    images = np.lib.format.open_memmap(
        partial / "images.npy", mode="r+" if done else "w+", dtype=np.uint8, shape=shape
    )
    loader = DataLoader(
        _Decoded(Subset(dataset, range(done, len(labels))), size),
        batch_size=CHUNK,
        num_workers=workers,
        collate_fn=list,
    )
    bar = tqdm(
        total=len(labels),
        initial=done,
        desc=f"{name} {split}",
        unit="img",
        dynamic_ncols=True,
        disable=None,
    )
    for batch in loader:
        for i, array in enumerate(batch):
            _check_size(name, split, done + i, array, first)
        images[done : done + len(batch)] = np.stack(batch)
        images.flush()
        done += len(batch)
        write_atomic(partial / "progress.json", json.dumps({"plan": plan, "done": done}))
        bar.update(len(batch))
        if on_chunk is not None:
            on_chunk(done)
    bar.close()
    meta = _meta(name, split, info, labels, classes, size, plan, images)
    del images
    _finish(partial, folder, labels, classes, meta)
    return meta


def _meta(
    name: str,
    split: str,
    info: dict,
    labels: np.ndarray,
    classes: list[str],
    size: int | None,
    plan: dict,
    images: np.ndarray,
) -> dict:
    """meta.json of a written split: where it came from, its shape, storage, counts and digests."""
    return {
        "version": VERSION,
        "dataset": name,
        "split": split,
        **info,
        "count": len(labels),
        "height": images.shape[1],
        "width": images.shape[2],
        "storage": "native" if size is None else f"shorter side {size}, centre crop {size}",
        "class_counts": np.bincount(labels, minlength=len(classes)).tolist(),
        "labels_sha256": plan["labels_sha256"],
        "images_sha256": sha256_array(images),
        "bytes": int(images.nbytes),
    }


def _finish(partial: Path, folder: Path, labels: np.ndarray, classes: list[str], meta: dict):
    """Write the small files, then rename the split into place: only now does it look complete."""
    np.save(partial / "labels.npy", labels)
    write_atomic(partial / "classes.json", json.dumps(list(classes), indent=1))
    write_atomic(partial / "meta.json", json.dumps(meta, indent=1))
    (partial / "progress.json").unlink()
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(partial, folder)
