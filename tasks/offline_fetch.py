"""Fetching the public sources of the offline archives: torchvision's own download, or by hand.

``SOURCES`` maps a raw dataset (a folder under the data root, torchvision's layout inside it)
to how to download it (torchvision's dataset class, ``download=True``), how to tell it is in
place, what to fetch by hand when there is no network (URLs and the exact place), and its
reader (tasks/offline_raw.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tasks.offline_raw import (
    GTSRB_URL,
    MNIST_FILES,
    Pool,
    caltech_read,
    cifar_read,
    dtd_read,
    gtsrb_read,
    idx_file,
    mnist_read,
)

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
DTD_URL = "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz"
CALTECH_URL = "https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip"
GTSRB_ZIPS = "GTSRB-Training_fixed.zip,GTSRB_Final_Test_Images.zip,GTSRB_Final_Test_GT.zip"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class FetchFailed(Exception):
    """A download failed; ``hint`` says which URL(s) to fetch by hand and where to put them."""

    def __init__(self, hint: str, why: str):
        super().__init__(why)
        self.hint, self.why = hint, why


@dataclass(frozen=True)
class RawSource:
    """One public dataset in ``<data-root>/<folder>/``. ``marker`` (relative to that folder)
    exists once its files are in place; ``hint`` is what to fetch by hand, ``{f}`` standing for
    the folder; ``urls`` are recorded as the provenance of the archives built from it."""

    folder: str
    origin: str
    marker: str
    hint: str
    urls: tuple[str, ...]
    read: Callable[[Path], Pool]

    def present(self, root: Path) -> bool:
        if self.folder == "mnist":  # gzipped as published, or unpacked
            return all(idx_file(root / self.folder / self.marker, s) for s in MNIST_FILES)
        return (root / self.folder / self.marker).exists()

    def download(self, folder: Path) -> None:
        """torchvision's own download (it verifies each archive's MD5 and unpacks it)."""
        from torchvision import datasets

        cls = getattr(datasets, self.origin.rsplit(".", 1)[1])
        if cls is datasets.GTSRB:
            for split in ("train", "test"):
                cls(folder, split=split, download=True)
        elif cls in (datasets.MNIST, datasets.CIFAR10):
            cls(folder, train=False, download=True)
        else:
            cls(folder, download=True)


SOURCES: dict[str, RawSource] = {
    s.folder: s
    for s in (
        RawSource(
            "mnist",
            "torchvision.datasets.MNIST",
            "MNIST/raw",
            f"put {MNIST_URL}{{{','.join(MNIST_FILES)}}}.gz in {{f}}/MNIST/raw/",
            tuple(f"{MNIST_URL}{n}.gz" for n in MNIST_FILES),
            mnist_read,
        ),
        RawSource(
            "cifar10",
            "torchvision.datasets.CIFAR10",
            "cifar-10-batches-py/test_batch",
            f"put {CIFAR10_URL} at {{f}}/cifar-10-python.tar.gz",
            (CIFAR10_URL,),
            cifar_read,
        ),
        RawSource(
            "gtsrb",
            "torchvision.datasets.GTSRB",
            "gtsrb/GT-final_test.csv",
            f"put {GTSRB_URL}{{{GTSRB_ZIPS}}} in {{f}}/gtsrb/",
            tuple(GTSRB_URL + n for n in GTSRB_ZIPS.split(",")),
            gtsrb_read,
        ),
        RawSource(
            "dtd",
            "torchvision.datasets.DTD",
            "dtd/dtd/images",
            f"put {DTD_URL} at {{f}}/dtd/dtd-r1.0.1.tar.gz",
            (DTD_URL,),
            dtd_read,
        ),
        RawSource(
            "caltech101",
            "torchvision.datasets.Caltech101",
            "caltech101/101_ObjectCategories",
            f"put {CALTECH_URL} at {{f}}/caltech101/caltech-101.zip",
            (CALTECH_URL,),
            caltech_read,
        ),
    )
}


def fetch(source: RawSource, root: Path, log: Callable[[str], None]) -> None:
    """Download ``source`` with torchvision unless its files are already in place; a failure is
    ``FetchFailed`` with the hand-fetch hint. torchvision takes an archive already put where
    the hint says (its MD5 checked) and unpacks it instead of downloading it."""
    if source.present(root):
        return
    folder = root / source.folder
    hint = source.hint.replace("{f}", str(folder))
    log(f"  fetching {source.origin} into {folder} (torchvision download)")
    try:
        source.download(folder)
    except Exception as error:  # noqa: BLE001 - any download failure: fetch it by hand
        why = " ".join(f"{type(error).__name__}: {error}".split())
        raise FetchFailed(hint, why[:160]) from None
    if not source.present(root):
        raise FetchFailed(hint, f"{folder / source.marker} still missing")
