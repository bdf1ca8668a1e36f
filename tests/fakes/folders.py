"""The image-folder layouts of the registry's FolderSources: ``<root>/<name>/folder/{train,test}/
<class>/`` (class folders named as the dataset's own files name them, GTSRB's by number),
NWPU-RESISC45's single ``NWPU-RESISC45/<class>/<class>_<nnn>.jpg`` folder and ImageNet's
``<root>/imagenet/{train,val}/<wnid>/``."""

from __future__ import annotations

from pathlib import Path

from tests.fakes import names as N
from tests.fakes.images import picture
from tests.fakes.torchvision_archives import imagenet_folders

# class folder names and image (size, mode) of the datasets' generic folder layout
FOLDER_CLASSES = {
    # a folder cannot hold the devkit's "Ram C/V Cargo Van Minivan 2012": "/" becomes "-"
    "cars": ([n.replace("/", "-") for n in N.CARS], (96, 64), "RGB"),
    "cifar10": (N.CIFAR10, (32, 32), "RGB"),
    "cifar100": (N.CIFAR100, (32, 32), "RGB"),
    "dtd": (N.DTD, (320, 300), "RGB"),
    "eurosat": (N.EUROSAT, (64, 64), "RGB"),
    "gtsrb": ([f"{y:05d}" for y in range(43)], (48, 40), "RGB"),
    "mnist": ([str(d) for d in range(10)], (28, 28), "L"),
    "resisc45": (N.RESISC45, (256, 256), "RGB"),
    "svhn": ([str(d) for d in range(10)], (32, 32), "RGB"),
}


def write_folder(folder: Path, name: str, per_class: int = 1) -> None:
    """``folder`` = ``<root>/<name>/folder``: train/ and test/ with one folder per class."""
    classes, size, mode = FOLDER_CLASSES[name]
    for code, split in enumerate(("train", "test")):
        for y, cls in enumerate(classes):
            (folder / split / cls).mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                fmt = "png" if mode == "L" or size[0] <= 32 else "jpg"
                picture(code, y, k, size, mode).save(folder / split / cls / f"{split}_{k}.{fmt}")


def write_resisc_original(folder: Path, per_class: int = 1) -> None:
    """``<root>/resisc45/NWPU-RESISC45/<class>/<class>_<nnn>.jpg``, 256x256 (the original
    archive's single folder; cfbench splits it by a seed)."""
    for y, cls in enumerate(N.RESISC45):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            picture(0, y, k, (256, 256)).save(folder / cls / f"{cls}_{k + 1:03d}.jpg", quality=90)


def write_imagenet_folders(folder: Path, per_class: int = 1) -> None:
    """``<root>/imagenet/{train,val}/<wnid>/`` (no meta.bin: only the folders)."""
    imagenet_folders(folder, per_class)
