"""Reading the public sources of the offline archives (tasks/offline_build.py).

Each dataset is fetched (tasks/offline_fetch.py) by torchvision's own dataset class into the
folder ``data prepare`` uses for it anyway, ``<data-root>/<name>/`` in torchvision's layout, so
one download serves both. The files are then read here directly (idx files, CIFAR's pickled batches,
GTSRB's CSVs, image folders): the builder needs every candidate's path to order it, and
torchvision's classes check whole-file MD5s that small test fixtures cannot match.

A ``Pool`` is what the builder samples from: the class names in label order and, per split, the
candidates of each class in source order (index order in a binary file, sorted path otherwise),
with a loader that turns one candidate into the stored uint8 [H, W, C] image.
"""

from __future__ import annotations

import csv
import gzip
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmark.errors import CFBenchError

# GTSRB's sign names (the usual signnames.csv, as in ../shared/data/gtsrb.npz), ClassId order.
GTSRB_SIGNNAMES = (
    "Speed limit (20km/h)",
    "Speed limit (30km/h)",
    "Speed limit (50km/h)",
    "Speed limit (60km/h)",
    "Speed limit (70km/h)",
    "Speed limit (80km/h)",
    "End of speed limit (80km/h)",
    "Speed limit (100km/h)",
    "Speed limit (120km/h)",
    "No passing",
    "No passing for vehicles over 3.5 metric tons",
    "Right-of-way at the next intersection",
    "Priority road",
    "Yield",
    "Stop",
    "No vehicles",
    "Vehicles over 3.5 metric tons prohibited",
    "No entry",
    "General caution",
    "Dangerous curve to the left",
    "Dangerous curve to the right",
    "Double curve",
    "Bumpy road",
    "Slippery road",
    "Road narrows on the right",
    "Road work",
    "Traffic signals",
    "Pedestrians",
    "Children crossing",
    "Bicycles crossing",
    "Beware of ice/snow",
    "Wild animals crossing",
    "End of all speed and passing limits",
    "Turn right ahead",
    "Turn left ahead",
    "Ahead only",
    "Go straight or right",
    "Go straight or left",
    "Keep right",
    "Keep left",
    "Roundabout mandatory",
    "End of no passing",
    "End of no passing by vehicles over 3.5 metric tons",
)
GTSRB_URL = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/"


@dataclass
class Split:
    items: list[list[Any]]  # per class, in source order
    load: Callable[[Any], np.ndarray]  # item -> uint8 [H, W, C]


@dataclass
class Pool:
    classes: list[str]
    train: Split
    test: Split | None  # None: no official test split (DTD, Caltech-101); ours is drawn


def shorter_side_crop(image: Image.Image, size: int) -> np.ndarray:
    """RGB, shorter side to ``size`` (bicubic; the longer one rounded), then a centre crop."""
    image = image.convert("RGB")
    w, h = image.size
    short = min(w, h)
    nw, nh = (size, round(h * size / w)) if w == short else (round(w * size / h), size)
    image = image.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def _open(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return image


# --- MNIST: torchvision's MNIST/raw idx files (gzipped as published, or unpacked) ---

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def idx_file(folder: Path, stem: str) -> Path | None:
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def read_idx(path: Path) -> np.ndarray:
    """An idx file (big-endian header: magic 0x0000 08 <ndim>, then the sizes; uint8 data)."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    ndim = data[3]
    if data[:3] != b"\x00\x00\x08" or ndim not in (1, 3):
        raise CFBenchError(f"{path}: not an idx file of unsigned bytes; fetch it again")
    shape = tuple(int(n) for n in np.frombuffer(data, ">u4", ndim, 4))
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise CFBenchError(f"{path}: truncated ({body.size} bytes for shape {shape})")
    return body.reshape(shape)


def _by_class(labels: np.ndarray, n_classes: int) -> list[list[int]]:
    return [np.flatnonzero(labels == c).tolist() for c in range(n_classes)]


def mnist_read(folder: Path) -> Pool:
    raw = folder / "MNIST" / "raw"
    x_tr, y_tr, x_te, y_te = (read_idx(idx_file(raw, stem)) for stem in MNIST_FILES)
    digits = [str(d) for d in range(10)]
    return Pool(
        digits,
        Split(_by_class(y_tr, 10), lambda i: x_tr[i][..., None]),
        Split(_by_class(y_te, 10), lambda i: x_te[i][..., None]),
    )


# --- CIFAR-10: torchvision's cifar-10-batches-py (the original pickled batches) ---


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")  # the official format (as torchvision reads it)


def _cifar_batches(base: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    entries = [_unpickle(base / n) for n in names]
    data = np.concatenate([np.asarray(e["data"], np.uint8) for e in entries])
    labels = np.concatenate([np.asarray(e["labels"], np.int64) for e in entries])
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def cifar_read(folder: Path) -> Pool:
    base = folder / "cifar-10-batches-py"
    x_tr, y_tr = _cifar_batches(base, [f"data_batch_{i}" for i in range(1, 6)])
    x_te, y_te = _cifar_batches(base, ["test_batch"])
    names = [str(n) for n in _unpickle(base / "batches.meta")["label_names"]]
    n = len(names)
    return Pool(
        names,
        Split(_by_class(y_tr, n), lambda i: x_tr[i]),
        Split(_by_class(y_te, n), lambda i: x_te[i]),
    )


# --- GTSRB: torchvision's gtsrb/ (the official .ppm archives and GT-*.csv annotations) ---


def _gtsrb_rows(csv_file: Path, folder: Path) -> list[tuple[str, tuple[int, ...], int]]:
    with open(csv_file, newline="") as f:
        rows = list(csv.DictReader(f, delimiter=";", skipinitialspace=True))
    keys = ("Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2")
    return [
        (str(folder / r["Filename"]), tuple(int(r[k]) for k in keys), int(r["ClassId"]))
        for r in rows
    ]


def _gtsrb_group(rows) -> list[list[tuple[str, tuple[int, ...]]]]:
    per_class: list[list] = [[] for _ in GTSRB_SIGNNAMES]
    for path, roi, label in sorted(rows):
        if not 0 <= label < len(GTSRB_SIGNNAMES):
            raise CFBenchError(f"GTSRB: {path} has ClassId {label}, expected 0..42")
        per_class[label].append((path, roi))
    return per_class


def gtsrb_load(item: tuple[str, tuple[int, ...]]) -> np.ndarray:
    path, (x1, y1, x2, y2) = item
    image = _open(Path(path))
    w, h = image.size
    box = (max(0, x1), max(0, y1), min(w, x2), min(h, y2))  # the ROI, clamped to the image
    image = image.crop(box).convert("RGB").resize((32, 32), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def gtsrb_read(folder: Path) -> Pool:
    base = folder / "gtsrb"
    training = base / "GTSRB" / "Training"
    train_rows = []
    for class_dir in sorted(p for p in training.iterdir() if p.is_dir()):
        annotations = class_dir / f"GT-{class_dir.name}.csv"
        if not annotations.is_file():
            raise CFBenchError(
                f"GTSRB: {annotations} missing (the ROI of each image); fetch "
                f"{GTSRB_URL}GTSRB-Training_fixed.zip again"
            )
        train_rows += _gtsrb_rows(annotations, class_dir)
    test_rows = _gtsrb_rows(base / "GT-final_test.csv", base / "GTSRB" / "Final_Test" / "Images")
    return Pool(
        list(GTSRB_SIGNNAMES),
        Split(_gtsrb_group(train_rows), gtsrb_load),
        Split(_gtsrb_group(test_rows), gtsrb_load),
    )


# --- DTD and Caltech-101: class folders of JPEGs ---


def _jpegs(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.iterdir() if p.suffix.lower() == ".jpg")


def _folder_pool(classes: list[str], base: Path, size: int) -> Pool:
    items = [_jpegs(base / c) for c in classes]
    return Pool(classes, Split(items, lambda p: shorter_side_crop(_open(Path(p)), size)), None)


def dtd_read(folder: Path) -> Pool:
    images = folder / "dtd" / "dtd" / "images"
    classes = sorted(p.name for p in images.iterdir() if p.is_dir())[:10]  # DTD-10: first 10
    return _folder_pool(classes, images, 64)


def caltech_read(folder: Path) -> Pool:
    base = folder / "caltech101" / "101_ObjectCategories"
    names = sorted(p.name for p in base.iterdir() if p.is_dir())
    return _folder_pool([n for n in names if n != "BACKGROUND_Google"], base, 32)
