"""The ten seed datasets, each with its sources in the order they are tried and its fixed splits.

Every dataset lives under ``<data_root>/<task name>/``: torchvision's own layout there, a Hugging
Face copy in ``hf/`` (or the hub), or image folders. Splits are the published fixed ones wherever a
source has them; the sizes ours have and the LDIFS paper's are in each TaskSpec and the README's
Datasets table. Class names come from the data (or, where a source has none, from the list
below), normalised so that every source gives the same name to the same label. Prompt templates
are the published sets that clip_benchmark ships (tasks/templates.py).
"""

from __future__ import annotations

from pathlib import Path

from tasks.base import ConcatTargets, Splits, TargetsDataset, TaskSpec
from tasks.sources import FolderSource, HFSource, TorchvisionSource, seeded_split
from tasks.templates import DIGITS, EUROSAT_NAMES, GTSRB_CLASSES, published


def _spaces(names: list[str]) -> list[str]:
    return [n.replace("_", " ") for n in names]


def _fixed(names: list[str]):
    return lambda raw: list(names)


def _cifar100_names(raw: list[str]) -> list[str]:
    # The Hugging Face copies spell class 26 'cra' (a typo of 'crab', torchvision's name).
    return [{"cra": "crab"}.get(n, n) for n in _spaces(raw)]


def _eurosat_names(raw: list[str]) -> list[str]:
    return [EUROSAT_NAMES.get(n, n) for n in raw]


def _clip_imagenet_names() -> list[str]:
    # CLIP's ImageNet class names (shipped by open_clip), in WordNet-id order like every source.
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return list(IMAGENET_CLASSNAMES)


def _imagenet_names(raw: list[str]) -> list[str]:
    return _clip_imagenet_names()


def _samples_targets(dataset) -> TargetsDataset:
    """GTSRB and StanfordCars keep labels in ``_samples`` as (path, label) pairs."""
    return TargetsDataset(dataset, [label for _, label in dataset._samples])


def _cifar10(p: Path, d: bool):
    from torchvision.datasets import CIFAR10

    train, test = CIFAR10(p, train=True, download=d), CIFAR10(p, train=False, download=d)
    return train, test, train.classes


def _cifar100(p: Path, d: bool):
    from torchvision.datasets import CIFAR100

    train, test = CIFAR100(p, train=True, download=d), CIFAR100(p, train=False, download=d)
    return train, test, train.classes


def _mnist(p: Path, d: bool):
    from torchvision.datasets import MNIST
    from torchvision.datasets.utils import extract_archive

    # torchvision reads the idx files decompressed; gzipped ones (as published) are unpacked.
    raw = p / "MNIST" / "raw"
    for packed, _ in MNIST.resources:
        if (raw / packed).is_file() and not (raw / packed.removesuffix(".gz")).is_file():
            extract_archive(str(raw / packed), str(raw))
    return MNIST(p, train=True, download=d), MNIST(p, train=False, download=d), DIGITS


def _svhn(p: Path, d: bool):
    from torchvision.datasets import SVHN

    train, test = (SVHN(p, split=s, download=d) for s in ("train", "test"))
    return TargetsDataset(train, train.labels), TargetsDataset(test, test.labels), DIGITS


def _gtsrb(p: Path, d: bool):
    from torchvision.datasets import GTSRB

    train, test = (_samples_targets(GTSRB(p, split=s, download=d)) for s in ("train", "test"))
    return train, test, GTSRB_CLASSES


def _dtd(p: Path, d: bool):
    from torchvision.datasets import DTD

    train, val, test = (DTD(p, split=s, partition=1, download=d) for s in ("train", "val", "test"))
    train_val = ConcatTargets([TargetsDataset(ds, ds._labels) for ds in (train, val)])
    return train_val, TargetsDataset(test, test._labels), test.classes


def _eurosat(p: Path, d: bool):
    from torchvision.datasets import EuroSAT

    full = EuroSAT(p, download=d)
    # No published split in this copy: a seeded one of the published split's sizes (20 % test).
    train, test = seeded_split(full, 0.2)
    return train, test, full.classes


def _cars(p: Path, d: bool):
    from torchvision.datasets import StanfordCars

    train, test = (StanfordCars(p, split=s) for s in ("train", "test"))
    return _samples_targets(train), _samples_targets(test), train.classes


def _imagenet(p: Path, d: bool):
    from torchvision.datasets import ImageNet

    train, test = ImageNet(p, split="train"), ImageNet(p, split="val")
    return train, test, [w for w in train.wnids]


_TV_HINTS = {
    "cifar10": "fetch https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz into {path}",
    "cifar100": "fetch https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz into {path}",
    "mnist": "fetch the four MNIST idx files (train-images-idx3-ubyte.gz, "
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; "
    "gzipped or not) into {path}/MNIST/raw",
    "svhn": "fetch train_32x32.mat and test_32x32.mat (ufldl.stanford.edu/housenumbers) to {path}",
    "gtsrb": "fetch the GTSRB training and final test archives into {path}/gtsrb",
    "dtd": "fetch dtd-r1.0.1.tar.gz (robots.ox.ac.uk/~vgg/data/dtd) into {path}/dtd",
    "eurosat": "fetch EuroSAT.zip (RGB) so that {path}/eurosat/2750/<class>/ exist",
    "cars": "put a mirror's cars_train/, cars_test/, devkit/ (cars_meta.mat, "
    "cars_train_annos.mat) and cars_test_annos_withlabels.mat under {path}/stanford_cars",
    "imagenet": "put ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and the devkit in {path}",
}


def _tv(name: str, make, downloadable: bool = True) -> TorchvisionSource:
    return TorchvisionSource(make, _TV_HINTS[name], downloadable, f"torchvision:{name}")


_IMAGENET_NOTE = (
    "timm/imagenet-1k-wds is gated: accept the ImageNet terms on its huggingface.co page and "
    "log in with 'hf auth login' first"
)

VISION_TASKS = {
    spec.name: spec
    for spec in (
        TaskSpec(
            "cars",
            "Stanford Cars",
            epochs=35,
            num_classes=196,
            sources=(HFSource("tanganke/stanford_cars"), _tv("cars", _cars, False), FolderSource()),
            splits=Splits(8144, 8041),
            paper=Splits(8144, 8041),
            store_size=224,
            templates=published("cars"),
            names=list,
            licence="research use (Stanford AI Lab); the original site is gone",
        ),
        TaskSpec(
            "cifar10",
            "CIFAR-10",
            epochs=10,
            num_classes=10,
            sources=(
                _tv("cifar10", _cifar10),
                HFSource("uoft-cs/cifar10", image="img"),
                FolderSource(),
            ),
            splits=Splits(50000, 10000),
            paper=Splits(50000, 10000),
            templates=published("cifar10"),
            names=_spaces,
            licence="no formal licence (research use)",
        ),
        TaskSpec(
            "cifar100",
            "CIFAR-100",
            epochs=10,
            num_classes=100,
            sources=(_tv("cifar100", _cifar100), HFSource("tanganke/cifar100"), FolderSource()),
            splits=Splits(50000, 10000),
            paper=Splits(50000, 10000),
            templates=published("cifar100"),
            names=_cifar100_names,
            licence="no formal licence (research use)",
        ),
        TaskSpec(
            "dtd",
            "Describable Textures",
            epochs=76,
            num_classes=47,
            sources=(_tv("dtd", _dtd), HFSource("tanganke/dtd"), FolderSource()),
            splits=Splits(3760, 1880),
            paper=Splits(3760, 1880),
            store_size=224,
            split_note="train+val / test of partition 1, as the task-vector code counts it",
            templates=published("dtd"),
            names=list,
            licence="research use (VGG, Oxford)",
        ),
        TaskSpec(
            "eurosat",
            "EuroSAT (RGB)",
            epochs=12,
            num_classes=10,
            sources=(
                HFSource("timm/eurosat-rgb", train=("train", "validation")),
                _tv("eurosat", _eurosat),
                FolderSource(),
            ),
            splits=Splits(21600, 5400),
            paper=Splits(19600, 5400),
            split_note="no published split has the paper's 19,600 training images; timm's "
            "copy of the google-research split has its 5,400 test images (train = its "
            "train + validation); the torchvision copy gets a seeded split of those sizes",
            templates=published("eurosat"),
            names=_eurosat_names,
            licence="MIT",
        ),
        TaskSpec(
            "gtsrb",
            "GTSRB",
            epochs=11,
            num_classes=43,
            sources=(
                _tv("gtsrb", _gtsrb),
                HFSource("tanganke/gtsrb", names=tuple(GTSRB_CLASSES)),
                FolderSource(),
            ),
            splits=Splits(26640, 12630),
            paper=Splits(26640, 12630),
            store_size=224,
            templates=published("gtsrb"),
            names=_fixed(GTSRB_CLASSES),
            licence="research use (INI, Ruhr-Universitaet Bochum); not verified",
        ),
        TaskSpec(
            "mnist",
            "MNIST",
            epochs=10,
            num_classes=10,
            sources=(
                _tv("mnist", _mnist),
                HFSource("ylecun/mnist", names=tuple(DIGITS)),
                FolderSource(),
            ),
            splits=Splits(60000, 10000),
            paper=Splits(60000, 10000),
            templates=published("mnist"),
            names=_fixed(DIGITS),
            licence="CC BY-SA 3.0",
        ),
        TaskSpec(
            "resisc45",
            "NWPU-RESISC45",
            epochs=15,
            num_classes=45,
            sources=(
                HFSource("tanganke/resisc45"),
                FolderSource("NWPU-RESISC45", holdout=(0.2, 0.6)),
                FolderSource(),
            ),
            splits=Splits(18900, 6300),
            paper=Splits(18900, 6300),
            split_note="the original NWPU-RESISC45 folder gets a seeded split of the same "
            "sizes (60 % train, 20 % test, 20 % unused)",
            # clip_benchmark's 4 prompts: CLIP's 18 (the papers' code) are in no package.
            templates=published("resisc45"),
            names=_spaces,
            licence="research use (NWPU); none stated on the copy",
        ),
        TaskSpec(
            "svhn",
            "SVHN",
            epochs=10,
            num_classes=10,
            sources=(
                _tv("svhn", _svhn),
                HFSource("ufldl-stanford/svhn", "cropped_digits", names=tuple(DIGITS)),
                FolderSource(),
            ),
            splits=Splits(73257, 26032),
            paper=Splits(73257, 26032),
            # CLIP published no SVHN set; the papers' code (task_vectors) gives SVHN the
            # MNIST one, not clip_benchmark's "svhn" (6 prompts of its own, for VTAB).
            templates=published("mnist"),
            names=_fixed(DIGITS),
            licence="non-commercial",
        ),
        TaskSpec(
            "imagenet",
            "ImageNet-1k",
            epochs=10,
            num_classes=1000,
            sources=(
                FolderSource(".", test_dir="val"),
                _tv("imagenet", _imagenet, False),
                # WebDataset shards (jpg, cls): cls is the index in WordNet-id order.
                HFSource(
                    "timm/imagenet-1k-wds",
                    test=("validation",),
                    image="jpg",
                    label="cls",
                    names=_clip_imagenet_names,
                    note=_IMAGENET_NOTE,
                ),
            ),
            splits=Splits(1281167, 50000),
            paper=Splits(1281167, 50000),
            store_size=224,
            split_note="test = the official validation set",
            templates=published("imagenet1k"),
            names=_imagenet_names,
            licence="ImageNet terms of access (non-commercial research)",
        ),
    )
}
