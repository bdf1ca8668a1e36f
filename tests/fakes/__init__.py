"""Tiny datasets in the exact on-disk formats of every source the registry lists (tests only).

Entry point::

    from tests.fakes import write_dataset
    write_dataset(root, "cifar10", source="torchvision", per_class=1)

writes one dataset under the data root as the registry expects it, ``<root>/<name>/...``:

- ``"torchvision"``: torchvision's own layout in ``<root>/<name>/`` (CIFAR pickles, MNIST's
  gzipped idx files, SVHN .mat, GTSRB ppm + CSV, DTD images + label lists, EuroSAT folders,
  the Stanford Cars devkit, ImageNet's meta.bin + split folders; also ``caltech101``, which is
  no registered dataset: torchvision's Caltech101(root=<root>/caltech101) reads it).
- ``"hf"``: the Hugging Face repository's files in ``<root>/<name>/hf/`` (parquet shards and the
  card; timm's WebDataset shards for ImageNet), as ``hf download`` leaves them.
- ``"folder"``: image folders ``<root>/<name>/folder/{train,test}/<class>/`` (ImageNet:
  ``<root>/imagenet/{train,val}/<wnid>/``); ``"folder:NWPU-RESISC45"``: RESISC45's original
  single folder.

Every dataset has its real class count and names, its images their real size and mode, and
``per_class`` images per class and split (1 to 8). Each image is one solid colour that encodes
(split, label, k): ``decode(image)`` (``grayscale=True`` for MNIST) tells which one a loader
returned. CIFAR and SVHN are opened by torchvision only inside ``torchvision_checksums()``, which
makes its MD5 check compare the files with the sums recorded when they were written (see
tests/fakes/torchvision_formats.py).
"""

from __future__ import annotations

from pathlib import Path

from tests.fakes import folders, hf_formats, torchvision_archives, torchvision_formats
from tests.fakes.images import colour, decode, picture
from tests.fakes.torchvision_formats import torchvision_checksums

__all__ = [
    "WRITERS",
    "colour",
    "decode",
    "picture",
    "source_key",
    "torchvision_checksums",
    "write_dataset",
]

_TV = {
    "cars": torchvision_archives.cars,
    "cifar10": torchvision_formats.cifar10,
    "cifar100": torchvision_formats.cifar100,
    "dtd": torchvision_formats.dtd,
    "eurosat": torchvision_formats.eurosat,
    "gtsrb": torchvision_formats.gtsrb,
    "mnist": torchvision_formats.mnist,
    "svhn": torchvision_formats.svhn,
    "imagenet": torchvision_archives.imagenet,
    "caltech101": torchvision_archives.caltech101,
}


def _hf(name: str):
    if name == "imagenet":
        return lambda folder, per_class: hf_formats.write_imagenet_wds(folder / "hf", per_class)
    return lambda folder, per_class: hf_formats.write_parquet_copy(folder / "hf", name, per_class)


def _folder(name: str):
    if name == "imagenet":
        return folders.write_imagenet_folders
    return lambda folder, per_class: folders.write_folder(folder / "folder", name, per_class)


# (name, source) -> writer(<root>/<name>, per_class)
WRITERS = {
    **{(name, "torchvision"): write for name, write in _TV.items()},
    **{(name, "hf"): _hf(name) for name in [*hf_formats.HUB, "imagenet"]},
    **{(name, "folder"): _folder(name) for name in [*folders.FOLDER_CLASSES, "imagenet"]},
    ("resisc45", "folder:NWPU-RESISC45"): lambda folder, per_class: folders.write_resisc_original(
        folder / "NWPU-RESISC45", per_class
    ),
}


def source_key(source) -> str:
    """The ``source`` argument of write_dataset that writes a registry source's format."""
    if source.kind == "folder" and source.layout not in ("folder", "."):
        return f"folder:{source.layout}"
    return source.kind


def write_dataset(root: Path, name: str, source: str = "torchvision", per_class: int = 1) -> None:
    """Write dataset ``name`` in ``source``'s format under the data root ``root``."""
    if (name, source) not in WRITERS:
        have = sorted(s for n, s in WRITERS if n == name)
        raise KeyError(f"no fake of {name} from {source}; it has {have}")
    if not 1 <= per_class <= 8:
        raise ValueError("per_class: 1 to 8 (the fake colours encode k < 8)")
    WRITERS[(name, source)](Path(root) / name, per_class)
