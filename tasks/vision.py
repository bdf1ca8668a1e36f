"""The ten seed datasets: torchvision where it can load or download them, local folders otherwise.

Each dataset lives in ``<data_root>/<task name>/``. Splits: the official train/test splits where a
dataset has them (DTD: train+val of partition 1 for training); EuroSAT and RESISC45 have none, so a
fixed seeded hold-out (10 % and 20 % of the images, the sizes used by the task-vector and LDIFS
evaluation code) is the test split.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset, Subset

from benchmark.errors import DatasetMissingError
from tasks.base import ConcatTargets, TargetsDataset, TaskData, TaskSpec, targets_of
from tasks.templates import DIGITS, EUROSAT_NAMES, GTSRB_CLASSES, TEMPLATES

Pair = tuple[Dataset, Dataset]


def _load(name: str, root: Path, download: bool, make: Callable[[Path, bool], Pair], hint: str):
    """Load (train, test) from ``root/name``; try a download only when allowed and needed."""
    path = Path(root).expanduser() / name
    try:
        return make(path, False)
    except (RuntimeError, FileNotFoundError, OSError, ValueError) as error:
        reason = f"not found ({type(error).__name__})"
    if download:
        try:
            return make(path, True)
        except Exception as error:  # noqa: BLE001 - any network failure means "fetch it by hand"
            reason = f"download failed ({type(error).__name__}: {str(error)[:80]})"
    else:
        reason += ", downloads disabled"
    raise DatasetMissingError(f"dataset '{name}' in {path}: {reason}; {hint.format(path=path)}")


def _holdout(dataset: Dataset, test_fraction: float, seed: int = 0) -> Pair:
    """Seeded random train/test split for datasets without an official test split."""
    targets = np.asarray(targets_of(dataset))
    perm = np.random.default_rng(seed).permutation(len(targets))
    n_test = int(round(len(targets) * test_fraction))
    test_idx, train_idx = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    return (
        TargetsDataset(Subset(dataset, train_idx), targets[train_idx]),
        TargetsDataset(Subset(dataset, test_idx), targets[test_idx]),
    )


def _samples_targets(dataset) -> TargetsDataset:
    """GTSRB and StanfordCars keep labels in ``_samples`` as (path, label) pairs."""
    return TargetsDataset(dataset, [label for _, label in dataset._samples])


def _cifar10(root: Path, download: bool) -> TaskData:
    from torchvision.datasets import CIFAR10

    def make(p, d):
        return CIFAR10(p, train=True, download=d), CIFAR10(p, train=False, download=d)

    hint = (
        "fetch https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and extract it into {path}"
    )
    train, test = _load("cifar10", root, download, make, hint)
    return TaskData("cifar10", train, test, list(train.classes), TEMPLATES["cifar10"])


def _cifar100(root: Path, download: bool) -> TaskData:
    from torchvision.datasets import CIFAR100

    def make(p, d):
        return CIFAR100(p, train=True, download=d), CIFAR100(p, train=False, download=d)

    hint = (
        "fetch https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz and extract it into {path}"
    )
    train, test = _load("cifar100", root, download, make, hint)
    names = [c.replace("_", " ") for c in train.classes]
    return TaskData("cifar100", train, test, names, TEMPLATES["cifar100"])


def _mnist(root: Path, download: bool) -> TaskData:
    from torchvision.datasets import MNIST

    def make(p, d):
        return MNIST(p, train=True, download=d), MNIST(p, train=False, download=d)

    hint = (
        "fetch the four MNIST idx .gz files (ossci-datasets.s3.amazonaws.com/mnist/) "
        "into {path}/MNIST/raw"
    )
    train, test = _load("mnist", root, download, make, hint)
    return TaskData("mnist", train, test, DIGITS, TEMPLATES["mnist"])


def _svhn(root: Path, download: bool) -> TaskData:
    from torchvision.datasets import SVHN

    def make(p, d):
        return SVHN(p, split="train", download=d), SVHN(p, split="test", download=d)

    hint = (
        "fetch train_32x32.mat and test_32x32.mat from http://ufldl.stanford.edu/housenumbers/ "
        "into {path}"
    )
    train, test = _load("svhn", root, download, make, hint)
    wrap = [TargetsDataset(ds, ds.labels) for ds in (train, test)]
    return TaskData("svhn", wrap[0], wrap[1], DIGITS, TEMPLATES["svhn"])


def _gtsrb(root: Path, download: bool) -> TaskData:
    from torchvision.datasets import GTSRB

    def make(p, d):
        return GTSRB(p, split="train", download=d), GTSRB(p, split="test", download=d)

    hint = (
        "fetch GTSRB_Final_Training_Images.zip, GTSRB_Final_Test_Images.zip and "
        "GTSRB_Final_Test_GT.zip (sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370) "
        "and extract them into {path}/gtsrb"
    )
    train, test = _load("gtsrb", root, download, make, hint)
    return TaskData(
        "gtsrb", _samples_targets(train), _samples_targets(test), GTSRB_CLASSES, TEMPLATES["gtsrb"]
    )


def _dtd(root: Path, download: bool) -> TaskData:
    from torchvision.datasets import DTD

    def make(p, d):
        parts = [DTD(p, split=s, partition=1, download=d) for s in ("train", "val", "test")]
        return parts, parts[2]

    hint = (
        "fetch https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz "
        "and extract it into {path}/dtd"
    )
    (train, val, test), _ = _load("dtd", root, download, make, hint)
    train_val = ConcatTargets([TargetsDataset(ds, ds._labels) for ds in (train, val)])
    return TaskData(
        "dtd", train_val, TargetsDataset(test, test._labels), list(test.classes), TEMPLATES["dtd"]
    )


def _eurosat(root: Path, download: bool) -> TaskData:
    from torchvision.datasets import EuroSAT

    def make(p, d):
        ds = EuroSAT(p, download=d)
        return ds, ds

    hint = (
        "fetch EuroSAT.zip (RGB, zenodo.org/records/7711810) and extract it so that "
        "{path}/eurosat/2750/<class>/ exist"
    )
    full, _ = _load("eurosat", root, download, make, hint)
    train, test = _holdout(full, 0.1)
    names = [EUROSAT_NAMES.get(c, c) for c in full.classes]
    return TaskData("eurosat", train, test, names, TEMPLATES["eurosat"])


def _resisc45(root: Path, download: bool) -> TaskData:
    from torchvision.datasets import ImageFolder

    def make(p, d):
        ds = ImageFolder(p / "NWPU-RESISC45")
        return ds, ds

    hint = (
        "download NWPU-RESISC45.rar (gcheng-nwpu.github.io/#Datasets) and unpack it so that "
        "{path}/NWPU-RESISC45/<class>/<image>.jpg exist (45 class folders)"
    )
    full, _ = _load("resisc45", root, False, make, hint)
    train, test = _holdout(full, 0.2)
    names = [c.replace("_", " ") for c in full.classes]
    return TaskData("resisc45", train, test, names, TEMPLATES["resisc45"])


def _cars(root: Path, download: bool) -> TaskData:
    from torchvision.datasets import StanfordCars

    def make(p, d):
        return StanfordCars(p, split="train"), StanfordCars(p, split="test")

    hint = (
        "the original Stanford Cars site is gone: get a mirror of cars_train/, cars_test/, "
        "devkit/ and cars_test_annos_withlabels.mat and put them under {path}/stanford_cars/"
    )
    train, test = _load("cars", root, False, make, hint)
    return TaskData(
        "cars",
        _samples_targets(train),
        _samples_targets(test),
        list(train.classes),
        TEMPLATES["cars"],
    )


def _imagenet(root: Path, download: bool) -> TaskData:
    from torchvision.datasets import ImageNet

    def make(p, d):
        return ImageNet(p, split="train"), ImageNet(p, split="val")

    hint = (
        "register at image-net.org, download ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and "
        "ILSVRC2012_devkit_t12.tar.gz and put the three files in {path}"
    )
    train, test = _load("imagenet", root, False, make, hint)
    names = [synonyms[0] for synonyms in train.classes]
    return TaskData("imagenet", train, test, names, TEMPLATES["imagenet"])


VISION_TASKS = {
    spec.name: spec
    for spec in (
        TaskSpec("cars", "Stanford Cars", _cars, epochs=35),
        TaskSpec("cifar10", "CIFAR-10", _cifar10, epochs=10),
        TaskSpec("cifar100", "CIFAR-100", _cifar100, epochs=10),
        TaskSpec("dtd", "Describable Textures", _dtd, epochs=76),
        TaskSpec("eurosat", "EuroSAT (RGB)", _eurosat, epochs=12),
        TaskSpec("gtsrb", "GTSRB", _gtsrb, epochs=11),
        TaskSpec("mnist", "MNIST", _mnist, epochs=10),
        TaskSpec("resisc45", "NWPU-RESISC45", _resisc45, epochs=15),
        TaskSpec("svhn", "SVHN", _svhn, epochs=10),
        TaskSpec("imagenet", "ImageNet-1k", _imagenet, epochs=10),
    )
}
