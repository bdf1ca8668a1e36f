"""Local copies of datasets in the formats the real sources use (a Hugging Face hub copy as parquet
shards and card; image folders), made of solid-colour images that tell which image a loader
returned: tests/test_data_sources.py and tests/test_hf_sources.py build on them."""

import datasets
import numpy as np
import pyarrow.parquet as pq
from datasets import DatasetInfo
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData
from PIL import Image


def colour(i: int) -> tuple[int, int, int]:
    """A distinct solid colour per image index, so an image can be recognised after loading."""
    return (i * 37 % 256, i * 11 % 256, i // 7 % 256)


def image(i: int, size: int = 8) -> Image.Image:
    return Image.new("RGB", (size, size), colour(i))


def key(img: Image.Image) -> tuple:
    return tuple(np.asarray(img.convert("RGB"))[0, 0])


def hf_copy(
    folder,
    splits: dict[str, list[tuple[int, int]]],
    names,
    image_col="image",
    label_col="label",
    size=8,
    mode="RGB",
    card=True,
    embedded=None,
    shards=1,
):
    """A Hugging Face copy as the hub stores it: data/<split>-0000i-of-0000n.parquet, with the
    Image and ClassLabel features embedded in the parquet metadata (``embedded`` names there if
    given, ``False``: no Hugging Face metadata at all), and the card (README.md with
    ``dataset_info`` and ``configs``) written by the code ``push_to_hub`` uses."""
    features = datasets.Features(
        {image_col: datasets.Image(), label_col: datasets.ClassLabel(names=list(names))}
    )
    in_files = datasets.Features(
        {image_col: datasets.Image(), label_col: datasets.ClassLabel(names=list(embedded or names))}
    )
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for split, items in splits.items():
        ds = datasets.Dataset.from_dict(
            {
                image_col: [image(i, size).convert(mode) for i, _ in items],
                label_col: [y for _, y in items],
            },
            features=in_files,
        )
        for k in range(shards):
            part = ds.shard(shards, k, contiguous=True)
            file = folder / "data" / f"{split}-{k:05d}-of-{shards:05d}.parquet"
            if embedded is False:  # e.g. written by pandas: no features in the metadata
                table = part.flatten_indices().data.table.replace_schema_metadata(None)
                pq.write_table(table, file)
            else:
                part.to_parquet(str(file))
    if card:
        data = DatasetCardData()
        DatasetInfosDict({"default": DatasetInfo(features=features)}).to_dataset_card_data(data)
        MetadataConfigs(
            {"default": {"data_files": [{"split": s, "path": f"data/{s}-*"} for s in splits]}}
        ).to_dataset_card_data(data)
        DatasetCard(f"---\n{data}\n---\n").save(folder / "README.md")


def image_folder(folder, items: list[tuple[int, int]], names):
    for i, y in items:
        (folder / names[y]).mkdir(parents=True, exist_ok=True)
        image(i).save(folder / names[y] / f"img{i:05d}.png")


# RESISC45: the hub copy names classes with spaces, the original folder with underscores.
RESISC_HUB_NAMES = [
    "airplane",
    "airport",
    "baseball diamond",
    "basketball court",
    "beach",
    "bridge",
    "chaparral",
    "church",
    "circular farmland",
    "cloud",
    "commercial area",
    "dense residential",
    "desert",
    "forest",
    "freeway",
    "golf course",
    "ground track field",
    "harbor",
    "industrial area",
    "intersection",
    "island",
    "lake",
    "meadow",
    "medium residential",
    "mobile home park",
    "mountain",
    "overpass",
    "palace",
    "parking lot",
    "railway",
    "railway station",
    "rectangular farmland",
    "river",
    "roundabout",
    "runway",
    "sea ice",
    "ship",
    "snowberg",
    "sparse residential",
    "stadium",
    "storage tank",
    "tennis court",
    "terrace",
    "thermal power station",
    "wetland",
]


def resisc_items(n_per_class: int, offset: int = 0) -> list[tuple[int, int]]:
    return [(offset + c * n_per_class + k, c) for c in range(45) for k in range(n_per_class)]
