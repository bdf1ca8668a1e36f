"""Hugging Face copies as ``hf download --repo-type dataset <repo> --local-dir <root>/<name>/hf``
leaves them: each hub repository's parquet files (``<dir>/<split>-0000k-of-0000n.parquet``,
images stored as the repository stores them, PNG or JPEG bytes) and its card (README.md with
``configs`` and ``dataset_info``, written by the code ``push_to_hub`` uses), or timm's
WebDataset tar shards for ImageNet.

``HUB`` says, per dataset, what the repository holds: its config and folder, the image and label
columns, the ClassLabel names on its card (None: the card declares a plain int64 label), the
splits (with the fake split code each one's images encode), extra columns and image format.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.fakes import names as N
from tests.fakes.images import SPLIT_CODES, encoded, picture

DIGIT_NAMES = [str(d) for d in range(10)]


@dataclass(frozen=True)
class HubRepo:
    repo: str
    names: list[str] | None  # the card's ClassLabel names; None: label is int64 on the card
    classes: int = 0  # how many classes, where the card names none
    splits: tuple[str, ...] = ("train", "test")
    config: str = "default"
    folder: str = "data"
    image: str = "image"
    label: str = "label"
    size: tuple[int, int] | None = (32, 32)  # None: variable sizes
    mode: str = "RGB"
    fmt: str = "PNG"
    default: bool = False  # the card marks its (named) config as the default
    extra: dict = field(default_factory=dict)  # more columns: name -> value per row


# tanganke's copies also hold corrupted test variants as further splits ("contrast", ...).
HUB = {
    "cars": HubRepo(
        "tanganke/stanford_cars",
        N.CARS,
        splits=("train", "test", "contrast"),
        size=None,
        fmt="JPEG",
    ),
    "cifar10": HubRepo(
        "uoft-cs/cifar10",
        N.CIFAR10,
        config="plain_text",
        folder="plain_text",
        image="img",
        default=True,
    ),
    "cifar100": HubRepo("tanganke/cifar100", [{"crab": "cra"}.get(n, n) for n in N.CIFAR100]),
    "dtd": HubRepo(
        "tanganke/dtd", N.DTD, splits=("train", "test", "contrast"), size=None, fmt="JPEG"
    ),
    "eurosat": HubRepo(
        "timm/eurosat-rgb",
        N.EUROSAT,
        splits=("train", "validation", "test"),
        size=(64, 64),
        fmt="JPEG",
        extra={"image_id": "{split}_{i}"},
    ),
    "gtsrb": HubRepo("tanganke/gtsrb", None, 43, splits=("train", "test", "contrast"), size=None),
    "mnist": HubRepo(
        "ylecun/mnist",
        DIGIT_NAMES,
        config="mnist",
        folder="mnist",
        size=(28, 28),
        mode="L",
        default=True,
    ),
    "resisc45": HubRepo(
        "tanganke/resisc45",
        [n.replace("_", " ") for n in N.RESISC45],
        splits=("train", "test", "contrast"),
        size=(256, 256),
        fmt="JPEG",
    ),
    "svhn": HubRepo(
        "ufldl-stanford/svhn",
        DIGIT_NAMES,
        splits=("train", "test", "extra"),
        config="cropped_digits",
        folder="cropped_digits",
    ),
}


def _size(repo: HubRepo, y: int, k: int) -> tuple[int, int]:
    return repo.size or (40 + (7 * y + k) % 60, 36 + (11 * y + 3 * k) % 60)


def write_parquet_copy(hf: Path, name: str, per_class: int = 1, shards: int = 1) -> None:
    """``name``'s hub repository in ``hf``: parquet shards per split, then the card."""
    import datasets

    repo = HUB[name]
    num = len(repo.names) if repo.names else repo.classes
    label = datasets.ClassLabel(names=repo.names) if repo.names else datasets.Value("int64")
    features = datasets.Features(
        {
            repo.image: datasets.Image(),
            repo.label: label,
            **{c: datasets.Value("string") for c in repo.extra},
        }
    )
    (hf / repo.folder).mkdir(parents=True, exist_ok=True)
    for split in repo.splits:
        code = SPLIT_CODES.get(split, 1)
        items = [(y, k) for k in range(per_class) for y in range(num)]  # not in class order
        rows = {
            repo.image: [
                {
                    "bytes": encoded(picture(code, y, k, _size(repo, y, k), repo.mode), repo.fmt),
                    "path": None,
                }
                for y, k in items
            ],
            repo.label: [y for y, _ in items],
            **{
                c: [v.format(split=split, i=i) for i in range(len(items))]
                for c, v in repo.extra.items()
            },
        }
        table = datasets.Dataset.from_dict(rows, features=features)
        for s in range(shards):
            part = table.shard(shards, s, contiguous=True)
            part.to_parquet(str(hf / repo.folder / f"{split}-{s:05d}-of-{shards:05d}.parquet"))
    write_card(hf, repo, features)


def write_card(hf: Path, repo: HubRepo, features) -> None:
    """README.md as the hub has it: YAML ``configs`` (data_files per split) and
    ``dataset_info`` (features), written by datasets' own card code."""
    from datasets import DatasetInfo
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    data = DatasetCardData(pretty_name=repo.repo.split("/")[1])
    info = DatasetInfo(features=features, config_name=repo.config)
    DatasetInfosDict({repo.config: info}).to_dataset_card_data(data)
    config = {"data_files": [{"split": s, "path": f"{repo.folder}/{s}-*"} for s in repo.splits]}
    if repo.default:
        config["default"] = True
    MetadataConfigs({repo.config: config}).to_dataset_card_data(data)
    DatasetCard(f"---\n{data}\n---\n\n# {repo.repo}\n").save(hf / "README.md")


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_imagenet_wds(hf: Path, per_class: int = 1, shards: int = 2) -> None:
    """timm/imagenet-1k-wds: imagenet1k-{train,validation}-<4 digits>.tar, each sample
    ``<key>.jpg``, ``<key>.cls`` (the class index, WordNet-id order, as text) and ``<key>.json``;
    the card has no ``dataset_info`` (cfbench names the classes)."""
    wnids, _ = N.imagenet()
    hf.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation"):
        code = SPLIT_CODES[split]
        items = [(y, k) for k in range(per_class) for y in range(1000)]
        for s in range(shards):
            with tarfile.open(hf / f"imagenet1k-{split}-{s:04d}.tar", "w") as tar:
                for i in range(s, len(items), shards):
                    y, k = items[i]
                    stem = f"{split}_{i:08d}"
                    size = (40 + (7 * y + k) % 50, 32 + (13 * y + 3 * k) % 50)
                    _tar_member(tar, f"{stem}.jpg", encoded(picture(code, y, k, size)))
                    _tar_member(tar, f"{stem}.cls", str(y).encode())
                    meta = {"label": y, "class_name": wnids[y], "width": size[0]}
                    _tar_member(tar, f"{stem}.json", json.dumps(meta).encode())
    (hf / "README.md").write_text(
        "---\nlicense: other\nlicense_name: imagenet\ntask_categories:\n- image-classification\n"
        "pretty_name: ImageNet\nextra_gated_prompt: ImageNet terms of access\n---\n\n"
        "# ImageNet-1k (WebDataset)\n"
    )
