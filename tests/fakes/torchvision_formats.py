"""Datasets in the layouts torchvision's own classes read (and its downloads leave), tiny.

Each writer takes the dataset's folder (``<data-root>/<name>``, the ``root`` torchvision is given)
and ``per_class`` images per class and split. Layouts follow torchvision's dataset code: CIFAR's
pickled batches, MNIST's gzipped idx files, SVHN's .mat files, GTSRB's ppm folders and CSVs,
DTD's images and label lists, EuroSAT's class folders, the Stanford Cars devkit .mat files,
ImageNet's meta.bin and split folders, Caltech-101's 101_ObjectCategories.

CIFAR and SVHN are checked against the MD5 sums of the published files when torchvision opens
them, which tiny files cannot match. torchvision's own test suite (test/datasets_utils.py) patches
the check functions of the dataset's module to pass; ``torchvision_checksums`` does less: it
swaps the published MD5 sums in the classes' file lists for those of the files written here, so
torchvision's real check still runs and a fake file changed after writing still fails it.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import pickle
import struct
from pathlib import Path
from unittest import mock

import numpy as np
import scipy.io

from tests.fakes import names as N
from tests.fakes.images import SPLIT_CODES, colour, grey, picture

WRITTEN_MD5: dict[tuple[str, str], str] = {}  # (torchvision class, file name) -> MD5 written


def _md5(file: Path) -> str:
    return hashlib.md5(file.read_bytes()).hexdigest()


def _items(num_classes: int, per_class: int):
    return [(y, k) for y in range(num_classes) for k in range(per_class)]


def _pixels(split: str, items, size: int = 32) -> np.ndarray:
    """uint8 [N, size, size, 3] of the fake colours."""
    code = SPLIT_CODES[split]
    return np.stack([np.full((size, size, 3), colour(code, y, k), np.uint8) for y, k in items])


def _record(cls: str, file: Path) -> None:
    WRITTEN_MD5[(cls, file.name)] = _md5(file)


def cifar10(folder: Path, per_class: int = 1) -> None:
    """cifar-10-batches-py/: data_batch_1..5 and test_batch (pickled dicts: "data" uint8
    [N, 3072] channel-major rows, "labels", "filenames", "batch_label"; the published files are
    Python 2 pickles whose str keys torchvision reads with encoding="latin1"), batches.meta."""
    base = folder / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    train = _items(10, per_class)
    parts = {f"data_batch_{i + 1}": train[i::5] for i in range(5)}
    parts["test_batch"] = _items(10, per_class)
    for file, items in parts.items():
        split = "test" if file == "test_batch" else "train"
        rows = _pixels(split, items).transpose(0, 3, 1, 2).reshape(len(items), -1)
        batch = {
            "batch_label": file,
            "labels": [y for y, _ in items],
            "data": rows,
            "filenames": [f"{file}_{i}.png" for i in range(len(items))],
        }
        (base / file).write_bytes(pickle.dumps(batch, protocol=2))
        _record("CIFAR10", base / file)
    meta = {"num_cases_per_batch": 10000, "label_names": N.CIFAR10, "num_vis": 3072}
    (base / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    _record("CIFAR10", base / "batches.meta")


def cifar100(folder: Path, per_class: int = 1) -> None:
    """cifar-100-python/: train and test ("data", "fine_labels", "coarse_labels", ...) and
    meta (fine_label_names, coarse_label_names)."""
    base = folder / "cifar-100-python"
    base.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        items = _items(100, per_class)
        rows = _pixels(split, items).transpose(0, 3, 1, 2).reshape(len(items), -1)
        batch = {
            "filenames": [f"{split}_{i}.png" for i in range(len(items))],
            "batch_label": f"{split}ing batch 1 of 1",
            "fine_labels": [y for y, _ in items],
            "coarse_labels": [y % 20 for y, _ in items],
            "data": rows,
        }
        (base / split).write_bytes(pickle.dumps(batch, protocol=2))
        _record("CIFAR100", base / split)
    meta = {"fine_label_names": N.CIFAR100, "coarse_label_names": N.CIFAR100_COARSE}
    (base / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    _record("CIFAR100", base / "meta")


def _idx(array: np.ndarray) -> bytes:
    """The idx format: magic (0, 0, type 0x08 = ubyte, ndim), big-endian dims, then the data."""
    head = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + array.astype(np.uint8).tobytes()


def mnist(folder: Path, per_class: int = 1) -> None:
    """MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz, gzipped as published."""
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, split in (("train", "train"), ("t10k", "test")):
        labels = [y for y, _ in _items(10, per_class)]
        pixels = np.stack(
            [np.full((28, 28), grey(SPLIT_CODES[split], y), np.uint8) for y in labels]
        )
        (raw / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(pixels)))
        labels_idx = _idx(np.array(labels, np.uint8))
        (raw / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels_idx))


def svhn(folder: Path, per_class: int = 1) -> None:
    """{train,test,extra}_32x32.mat: X uint8 [32, 32, 3, N], y uint8 [N, 1] with 10 for digit 0."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test", "extra"):
        items = _items(10, per_class)
        x = _pixels(split, items).transpose(1, 2, 3, 0)
        y = np.array([[d if d else 10] for d, _ in items], np.uint8)
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
        _record("SVHN", folder / f"{split}_32x32.mat")


def _ppm_size(y: int, k: int) -> tuple[int, int]:
    return 30 + (7 * y + 3 * k) % 50, 30 + (11 * y + 5 * k) % 50  # ~30-80 px, as in GTSRB


def _gtsrb_row(name: str, size: tuple[int, int], y: int) -> str:
    w, h = size
    return f"{name};{w};{h};5;5;{w - 6};{h - 6};{y}\n"


def gtsrb(folder: Path, per_class: int = 1) -> None:
    """gtsrb/GTSRB/Training/<5-digit class>/<track>_<image>.ppm with GT-<class>.csv, and
    gtsrb/GTSRB/Final_Test/Images/<5-digit>.ppm with gtsrb/GT-final_test.csv (';'-separated)."""
    base = folder / "gtsrb"
    header = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"
    for y in range(43):
        cls = base / "GTSRB" / "Training" / f"{y:05d}"
        cls.mkdir(parents=True, exist_ok=True)
        rows = [header]
        for k in range(per_class):
            name, size = f"{k // 30:05d}_{k % 30:05d}.ppm", _ppm_size(y, k)
            picture(0, y, k, size).save(cls / name, "PPM")
            rows.append(_gtsrb_row(name, size, y))
        (cls / f"GT-{y:05d}.csv").write_text("".join(rows))
    images = base / "GTSRB" / "Final_Test" / "Images"
    images.mkdir(parents=True, exist_ok=True)
    rows = [header]
    order = [(y, k) for k in range(per_class) for y in reversed(range(43))]  # labels unsorted
    for i, (y, k) in enumerate(order):
        name, size = f"{i:05d}.ppm", _ppm_size(y, k + 1)
        picture(1, y, k, size).save(images / name, "PPM")
        rows.append(_gtsrb_row(name, size, y))
    (base / "GT-final_test.csv").write_text("".join(rows))


def dtd(folder: Path, per_class: int = 1) -> None:
    """dtd/dtd/images/<class>/<class>_<nnnn>.jpg (300-640 px) and dtd/dtd/labels/
    {train,val,test}{1..10}.txt listing ``<class>/<file>`` (partition 1 written; others copy)."""
    data = folder / "dtd" / "dtd"
    (data / "labels").mkdir(parents=True, exist_ok=True)
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for y, cls in enumerate(N.DTD):
        (data / "images" / cls).mkdir(parents=True, exist_ok=True)
        for split in lists:  # val images encode split 2, test ones split 1
            code = {"train": 0, "val": 2, "test": 1}[split]
            for k in range(per_class):
                name = f"{cls}_{code * 100 + k + 1:04d}.jpg"
                size = (300 + (13 * y) % 340, 300 + (29 * y + 7 * code) % 340)
                picture(code, y, k, size).save(data / "images" / cls / name, quality=90)
                lists[split].append(f"{cls}/{name}")
    for split, lines in lists.items():
        for partition in range(1, 11):
            (data / "labels" / f"{split}{partition}.txt").write_text("\n".join(lines) + "\n")


def eurosat(folder: Path, per_class: int = 1) -> None:
    """eurosat/2750/<class>/<class>_<n>.jpg, 64x64 (EuroSAT.zip's RGB layout); one folder for
    all images (split 0 encoded)."""
    for y, cls in enumerate(N.EUROSAT):
        target = folder / "eurosat" / "2750" / cls
        target.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            picture(0, y, k, (64, 64)).save(target / f"{cls}_{k + 1}.jpg", quality=95)


@contextlib.contextmanager
def torchvision_checksums():
    """Within: torchvision's CIFAR-10/100 and SVHN check the files written here against the
    MD5 sums recorded when they were written, in place of the published ones."""
    from torchvision.datasets import CIFAR10, CIFAR100, SVHN

    def swap(cls, entries):
        return [[f, WRITTEN_MD5.get((cls.__name__, f), md5)] for f, md5 in entries]

    with contextlib.ExitStack() as stack:
        for cls in (CIFAR10, CIFAR100):
            meta = {
                **cls.meta,
                "md5": WRITTEN_MD5.get((cls.__name__, cls.meta["filename"]), cls.meta["md5"]),
            }
            stack.enter_context(mock.patch.object(cls, "meta", meta))
            stack.enter_context(mock.patch.object(cls, "train_list", swap(cls, cls.train_list)))
            stack.enter_context(mock.patch.object(cls, "test_list", swap(cls, cls.test_list)))
        split_list = {
            s: [url, f, WRITTEN_MD5.get(("SVHN", f), md5)]
            for s, (url, f, md5) in SVHN.split_list.items()
        }
        stack.enter_context(mock.patch.object(SVHN, "split_list", split_list))
        yield
