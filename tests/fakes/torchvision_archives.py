"""The torchvision layouts of the large datasets: Stanford Cars (devkit .mat files), ImageNet
(meta.bin and the extracted split folders) and Caltech-101 (101_ObjectCategories)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from tests.fakes import names as N
from tests.fakes.images import picture


def _car_size(i: int) -> tuple[int, int]:
    return 60 + (17 * i) % 90, 40 + (23 * i) % 60  # wider than tall, sizes vary


def _annos(rows: list[tuple[str, int, tuple[int, int]]], with_class: bool = True) -> np.ndarray:
    """The devkit's ``annotations`` struct array: bbox_x1, bbox_y1, bbox_x2, bbox_y2, class
    (1-based), fname."""
    fields = [
        "bbox_x1",
        "bbox_y1",
        "bbox_x2",
        "bbox_y2",
        *(["class"] if with_class else []),
        "fname",
    ]
    table = np.zeros((1, len(rows)), dtype=[(f, object) for f in fields])
    for j, (fname, cls, (w, h)) in enumerate(rows):
        row = table[0, j]
        row["bbox_x1"], row["bbox_y1"] = np.uint8(2), np.uint8(2)
        row["bbox_x2"], row["bbox_y2"] = np.uint16(w - 3), np.uint16(h - 3)
        if with_class:
            row["class"] = np.uint8(cls)
        row["fname"] = fname
    return table


def cars(folder: Path, per_class: int = 1) -> None:
    """stanford_cars/: devkit/cars_meta.mat (class_names), devkit/cars_train_annos.mat,
    cars_test_annos_withlabels.mat (``annotations`` with 1-based ``class``), cars_train/ and
    cars_test/ of <nnnnn>.jpg in variable sizes; devkit/cars_test_annos.mat (no labels) too."""
    base = folder / "stanford_cars"
    (base / "devkit").mkdir(parents=True, exist_ok=True)
    names = np.empty((1, 196), dtype=object)
    names[0, :] = N.CARS
    scipy.io.savemat(base / "devkit" / "cars_meta.mat", {"class_names": names})
    for code, split in enumerate(("train", "test")):
        (base / f"cars_{split}").mkdir(exist_ok=True)
        rows = []
        order = [(y, k) for k in range(per_class) for y in range(196)]
        order = order[1::2] + order[::2]  # the real files are not in class order
        for i, (y, k) in enumerate(order):
            fname, size = f"{i + 1:05d}.jpg", _car_size(i + code)
            picture(code, y, k, size).save(base / f"cars_{split}" / fname, quality=90)
            rows.append((fname, y + 1, size))
        if split == "train":
            scipy.io.savemat(
                base / "devkit" / "cars_train_annos.mat", {"annotations": _annos(rows)}
            )
        else:
            scipy.io.savemat(base / "cars_test_annos_withlabels.mat", {"annotations": _annos(rows)})
            scipy.io.savemat(
                base / "devkit" / "cars_test_annos.mat",
                {"annotations": _annos(rows, with_class=False)},
            )


def _imagenet_size(y: int, k: int) -> tuple[int, int]:
    return 40 + (7 * y + k) % 50, 32 + (13 * y + 3 * k) % 50


def imagenet_folders(folder: Path, per_class: int = 1) -> list[str]:
    """train/<wnid>/<wnid>_<n>.JPEG and val/<wnid>/ILSVRC2012_val_<8 digits>.JPEG (the layout
    torchvision's ImageNet leaves after extracting the archives, also an ImageFolder's); returns
    the wnid of each validation image in file-name order."""
    wnids, _ = N.imagenet()
    val_wnids = []
    for y, wnid in enumerate(wnids):
        for split in ("train", "val"):
            (folder / split / wnid).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            picture(0, y, k, _imagenet_size(y, k)).save(
                folder / "train" / wnid / f"{wnid}_{k + 1}.JPEG", "JPEG", quality=90
            )
    # validation files are numbered in no class order: a fixed shuffle
    order = sorted(
        ((y, k) for k in range(per_class) for y in range(1000)),
        key=lambda item: (item[0] * 7919 + item[1] * 31) % 1009,
    )
    for i, (y, k) in enumerate(order):
        name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        picture(1, y, k, _imagenet_size(y, k + 1)).save(
            folder / "val" / wnids[y] / name, "JPEG", quality=90
        )
        val_wnids.append(wnids[y])
    return val_wnids


def imagenet(folder: Path, per_class: int = 1) -> None:
    """ImageNet as torchvision's class reads it without its archives: meta.bin (``torch.save``
    of (wnid -> devkit class names, the wnid of each validation image)) and the split folders."""
    import torch

    val_wnids = imagenet_folders(folder, per_class)
    _, wnid_to_classes = N.imagenet()
    torch.save((dict(wnid_to_classes), val_wnids), folder / "meta.bin")


def caltech101(folder: Path, per_class: int = 1) -> None:
    """caltech101/101_ObjectCategories/<category>/image_<nnnn>.jpg with BACKGROUND_Google (which
    torchvision drops: labels 0..100 are the other folders in sorted order); Annotations/ is
    only needed for target_type="annotation" and not written."""
    base = folder / "caltech101" / "101_ObjectCategories"
    for y, category in enumerate(N.CALTECH101):
        (base / category).mkdir(parents=True, exist_ok=True)
        label = y - 1 if y else 101  # background: encoded as 101, torchvision never yields it
        for k in range(per_class):
            size = (150 + (11 * y) % 150, 120 + (7 * y + k) % 180)
            picture(0, label, k, size).save(base / category / f"image_{k + 1:04d}.jpg", quality=90)
