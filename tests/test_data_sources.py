"""Dataset sources, the prepared store and ``run_benchmark.py data``, on local fixtures built in
the formats the real sources use (no network): Hugging Face copies made with
``datasets.Dataset.from_dict`` and written as the hub stores them (parquet files under ``data/``),
torchvision's own layouts, and image folders."""

import json
import struct

import datasets
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark.errors import CFBenchError, DatasetMissingError
from run_benchmark import main
from tasks import get_task, load_task, manage, prepared
from tasks.base import targets_of
from tasks.data import labels_sha256
from tasks.templates import EUROSAT_NAMES
from tests.helpers.hf_copies import (
    RESISC_HUB_NAMES,
    colour,
    hf_copy,
    image,
    image_folder,
    key,
    resisc_items,
)

RESISC = get_task("resisc45")


def by_image(data_split, classnames) -> dict:
    return {key(data_split[i][0]): classnames[data_split[i][1]] for i in range(len(data_split))}


@pytest.fixture
def resisc_hf(tmp_path):
    root = tmp_path / "data"
    hf_copy(
        root / "resisc45" / "hf",
        {"train": resisc_items(2), "test": resisc_items(1, 1000)},
        RESISC_HUB_NAMES,
    )
    return root


def test_a_local_hugging_face_copy_loads_through_the_hub_code_path(resisc_hf):
    data = load_task("resisc45", resisc_hf, download=False)
    assert (len(data.train), len(data.test)) == (90, 45)
    assert data.classnames == RESISC_HUB_NAMES
    img, label = data.train[3]  # row 3: class 1, image index 3
    assert img.mode == "RGB" and key(img) == colour(3) and label == 1
    p = data.provenance
    assert p["source"] == "hf" and p["origin"] == "hf:tanganke/resisc45" and p["format"] == "raw"
    assert p["labels_sha256"] == labels_sha256(data.train.targets, data.test.targets)


def test_the_same_image_gets_the_same_class_name_from_every_resisc45_source(tmp_path):
    root = tmp_path / "data"
    items = resisc_items(5)  # 225 images: the folder source splits them 60/20/20 by seed
    hf_copy(root / "resisc45" / "hf", {"train": items[:150], "test": items[150:]}, RESISC_HUB_NAMES)
    image_folder(
        root / "resisc45" / "NWPU-RESISC45", items, [n.replace(" ", "_") for n in RESISC_HUB_NAMES]
    )
    hub = load_task("resisc45", root, download=False, source="hf")
    folder = load_task("resisc45", root, download=False, source="folder")
    assert folder.provenance["origin"].startswith("folder:")
    assert (len(folder.train), len(folder.test)) == (135, 45)  # 60 % and 20 % of 225
    names = {**by_image(hub.train, hub.classnames), **by_image(hub.test, hub.classnames)}
    seen = {**by_image(folder.train, folder.classnames), **by_image(folder.test, folder.classnames)}
    assert len(seen) == 180 and all(names[k] == v for k, v in seen.items())
    assert folder.classnames == hub.classnames


def test_eurosat_names_agree_between_torchvision_and_the_timm_copy(tmp_path):
    root = tmp_path / "data"
    folders = sorted(EUROSAT_NAMES)  # torchvision's class order: sorted folder names
    items = [(c * 10 + k, c) for c in range(10) for k in range(10)]
    hf_copy(
        root / "eurosat" / "hf",
        {"train": items[:50], "validation": items[50:80], "test": items[80:]},
        folders,
    )
    image_folder(root / "eurosat" / "eurosat" / "2750", items, folders)
    hub = load_task("eurosat", root, download=False, source="hf")
    tv = load_task("eurosat", root, download=False, source="torchvision")
    assert len(hub.train) == 80 and len(hub.test) == 20  # train = train + validation
    assert (len(tv.train), len(tv.test)) == (80, 20)  # seeded split of the same sizes
    assert hub.classnames[0] == "annual crop land" and tv.classnames == hub.classnames
    names = {**by_image(hub.train, hub.classnames), **by_image(hub.test, hub.classnames)}
    for split in (tv.train, tv.test):
        assert all(names[k] == v for k, v in by_image(split, tv.classnames).items())


def _idx(path, array: np.ndarray) -> None:
    code = 0x08 if array.dtype == np.uint8 else 0x0C
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(">u1" if code == 0x08 else ">i4").tobytes())


def test_mnist_from_torchvision_files_and_from_the_hub_copy_agree(tmp_path):
    root = tmp_path / "data"
    raw = root / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    items = {
        "train": [(i, i % 10) for i in range(30)],
        "test": [(i, i % 10) for i in range(30, 40)],
    }
    for split, prefix in (("train", "train"), ("test", "t10k")):
        pixels = np.stack([np.asarray(image(i, 28).convert("L")) for i, _ in items[split]])
        _idx(raw / f"{prefix}-images-idx3-ubyte", pixels)
        _idx(raw / f"{prefix}-labels-idx1-ubyte", np.array([y for _, y in items[split]], np.uint8))
    grey = [str(d) for d in range(10)]
    hf = root / "hf-mnist"
    hf_copy(hf, items, grey, size=28, mode="L")  # ylecun/mnist: 28 x 28 grey PNGs
    tv = load_task("mnist", root, download=False, source="torchvision")
    (root / "mnist" / "hf").symlink_to(hf)
    hub = load_task("mnist", root, download=False, source="hf")
    assert tv.classnames == hub.classnames == grey
    assert targets_of(tv.train) == hub.train.targets == [y for _, y in items["train"]]
    assert targets_of(tv.test) == hub.test.targets
    assert key(tv.test[3][0]) == key(hub.test[3][0])
    assert tv.provenance["labels_sha256"] == hub.provenance["labels_sha256"]


def test_cifar100_class_26_is_crab_in_the_hub_copy_too(tmp_path):
    from tasks.vision import _cifar100_names

    hub_names = [f"class_{i}" for i in range(100)]
    hub_names[26], hub_names[1] = "cra", "aquarium_fish"
    names = _cifar100_names(hub_names)
    assert names[26] == "crab" and names[1] == "aquarium fish" and len(names) == 100


def test_missing_dataset_lists_every_source_tried_on_one_line(tmp_path):
    with pytest.raises(DatasetMissingError) as info:
        load_task("resisc45", tmp_path, download=False)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("dataset 'resisc45' not found")
    for clause in (
        "hf: no copy of hf:tanganke/resisc45",
        "folder: no folder",
        "NWPU-RESISC45",
        "data prepare resisc45",
    ):
        assert clause in msg, clause


def test_a_copy_with_other_split_names_or_too_few_classes_is_one_line(tmp_path):
    root = tmp_path / "data"
    dd = datasets.DatasetDict(
        {
            s: datasets.Dataset.from_dict(
                {"image": [image(0)], "label": [0]},
                features=datasets.Features(
                    {
                        "image": datasets.Image(),
                        "label": datasets.ClassLabel(names=RESISC_HUB_NAMES),
                    }
                ),
            )
            for s in ("training", "testing")
        }
    )
    dd.save_to_disk(str(root / "resisc45" / "hf"))
    with pytest.raises(CFBenchError, match="has splits training, testing, expected train, test"):
        load_task("resisc45", root, download=False)
    hf_copy(root / "dtd" / "hf", {"train": [(0, 0), (1, 1)], "test": [(2, 2)]}, ["a", "b", "c"])
    with pytest.raises(CFBenchError, match="has 3 classes, expected 47") as info:
        load_task("dtd", root, download=False)
    assert "data prepare --force dtd" in str(info.value)


# --- the prepared store ---------------------------------------------------------------------


def test_prepare_writes_the_store_and_a_run_reads_it_with_the_same_pixels(resisc_hf):
    raw = load_task("resisc45", resisc_hf, download=False)
    said = manage.prepare("resisc45", resisc_hf)
    assert "prepared in" in said
    folder = prepared.location(resisc_hf, "resisc45")
    for split, n in (("train", 90), ("test", 45)):
        meta = json.loads((folder / split / "meta.json").read_text())
        assert meta["count"] == n and meta["source"] == "hf" and meta["storage"] == "native"
        assert np.load(folder / split / "images.npy").shape == (n, 8, 8, 3)
        assert sum(meta["class_counts"]) == n
    store = load_task("resisc45", resisc_hf, download=False)
    assert store.provenance["format"] == "prepared" and store.classnames == raw.classnames
    assert store.provenance["labels_sha256"] == raw.provenance["labels_sha256"]
    for i in (0, 17, 89):
        assert np.array_equal(np.asarray(store.train[i][0]), np.asarray(raw.train[i][0]))
    assert manage.prepare("resisc45", resisc_hf).endswith("already prepared in " + str(folder))
    assert manage.verify("resisc45", resisc_hf) == [
        "resisc45: resisc45 has 90 / 45 train / test images, its fixed split has 18,900 / 6,300"
    ]


def test_variable_size_images_are_stored_as_the_eval_transform_sees_them():
    from open_clip.transform import image_transform

    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 451, 3), np.uint8))
    stored = prepared.to_rgb_array(img, 224)
    assert stored.shape == (224, 224, 3)
    tf = image_transform(224, is_train=False)
    np.testing.assert_array_equal(tf(Image.fromarray(stored)).numpy(), tf(img).numpy())


class Counting(list):
    """(image, label) pairs that count how many images were decoded."""

    def __init__(self, n):
        super().__init__((image(i), i % 3) for i in range(n))
        self.targets = [i % 3 for i in range(n)]
        self.reads = 0

    def __getitem__(self, i):
        self.reads += 1
        return super().__getitem__(i)


def test_a_killed_prepare_resumes_and_a_half_written_split_never_looks_complete(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(prepared, "CHUNK", 4)
    target = tmp_path / "prepared" / "x" / "train"
    data = Counting(10)
    info = {"source": "test", "origin": "test:x"}

    def die_after_first_chunk(done):
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepared.write_split(
            "x", "train", target, data, ["a", "b", "c"], info, None, on_chunk=die_after_first_chunk
        )
    assert not target.exists() and (target.parent / "train.partial").is_dir()
    data.reads = 0
    meta = prepared.write_split("x", "train", target, data, ["a", "b", "c"], info, None)
    assert data.reads == 1 + 6  # the first image (its size) and the six not yet written
    whole = tmp_path / "again" / "train"
    assert (
        prepared.write_split("x", "train", whole, Counting(10), ["a", "b", "c"], info, None)[
            "images_sha256"
        ]
        == meta["images_sha256"]
    )
    assert not (target.parent / "train.partial").exists()


def _broken_store(root, how: str):
    folder = prepared.location(root, "resisc45") / "train"
    if how == "flipped label":
        labels = np.load(folder / "labels.npy")
        labels[0] = (labels[0] + 1) % 45
        np.save(folder / "labels.npy", labels)
    elif how == "truncated":
        with open(folder / "images.npy", "r+b") as f:
            f.truncate(folder.joinpath("images.npy").stat().st_size - 10)
    elif how == "old version":
        meta = json.loads((folder / "meta.json").read_text())
        (folder / "meta.json").write_text(json.dumps({**meta, "version": 0}))
    elif how == "changed pixel":
        images = np.load(folder / "images.npy", mmap_mode="r+")
        images[5, 0, 0, 0] ^= 1
        images.flush()
    return folder


@pytest.mark.parametrize(
    "how, needle",
    [
        ("flipped label", "labels differ from those meta.json records"),
        ("truncated", "(truncated?)"),
        ("old version", "written by store version 0"),
        ("changed pixel", "differs from the SHA-256 meta.json records"),
    ],
)
def test_verify_and_runs_catch_a_broken_store(resisc_hf, how, needle, capsys):
    manage.prepare("resisc45", resisc_hf)
    folder = _broken_store(resisc_hf, how)
    problems = manage.verify("resisc45", resisc_hf)
    assert any(needle in p for p in problems), problems
    assert all("\n" not in p for p in problems)
    capsys.readouterr()
    code = main(["data", "verify", "resisc45", "--data-root", str(resisc_hf)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == len(problems) and any(needle in line for line in err)
    assert any("data prepare --force resisc45" in line for line in err)
    if how != "changed pixel":  # a run's cheap checks (no re-hash of the images) see the rest
        with pytest.raises(CFBenchError, match="data prepare --force resisc45"):
            load_task("resisc45", resisc_hf, download=False)
    assert folder.is_dir()  # nothing deleted
    code = main(["data", "prepare", "--force", "resisc45", "--data-root", str(resisc_hf)])
    assert code == 0 and not [p for p in manage.verify("resisc45", resisc_hf) if needle in p]


def test_data_list_shows_source_presence_and_sizes(resisc_hf, capsys):
    assert main(["data", "list", "resisc45", "cars", "--data-root", str(resisc_hf)]) == 0
    out = capsys.readouterr().out.splitlines()
    resisc = next(line for line in out if line.startswith("resisc45"))
    cars = next(line for line in out if line.startswith("cars"))
    assert "yes" in resisc and "raw: hf:tanganke/resisc45" in resisc and "90 / 45" in resisc
    assert "18,900 / 6,300" in resisc
    assert " no " in cars and "prepare fetches it (hf)" in cars


# --- runs ----------------------------------------------------------------------------------


def test_runs_record_the_data_and_match_bit_for_bit_from_the_store(tmp_path):
    root = tmp_path / "store"
    for name in ("synth_a", "synth_b", "synth_c", "synth_control"):
        manage.prepare(name, root)
    args = ["--sequence", "smoke", "--epochs", "1", "--seed", "3"]
    assert main([*args, "--out", str(tmp_path / "raw")]) == 0
    assert main([*args, "--out", str(tmp_path / "prep"), "--data-root", str(root)]) == 0
    raw_dir, prep_dir = (tmp_path / d / "smoke" / "ft" / "seed3" for d in ("raw", "prep"))
    raw_cfg = json.loads((raw_dir / "config.json").read_text())["data"]
    prep_cfg = json.loads((prep_dir / "config.json").read_text())["data"]
    assert raw_cfg["synth_a"]["format"] == "raw" and prep_cfg["synth_a"]["format"] == "prepared"
    assert raw_cfg["synth_a"]["labels_sha256"] == prep_cfg["synth_a"]["labels_sha256"]
    assert len(prep_cfg["synth_a"]["images_sha256"]) == 2
    pd.testing.assert_frame_equal(
        pd.read_csv(raw_dir / "records.csv"), pd.read_csv(prep_dir / "records.csv")
    )


def test_the_readme_datasets_table_matches_the_registry():
    from tasks.vision import VISION_TASKS
    from tests.conftest import ROOT

    text = (ROOT / "README.md").read_text()
    rows = {}
    section = text[text.index("## Datasets") :]
    section = section[: section.index("\n## ", 1)] if "\n## " in section[1:] else section
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 5:
            rows[cells[0].strip("`")] = cells
    assert set(rows) == set(VISION_TASKS)
    for name, spec in VISION_TASKS.items():
        _, sources, ours, paper, _ = rows[name]
        assert ours == str(spec.splits) and paper == str(spec.paper), name
        kinds = [part.split()[0] for part in sources.split("; ")]
        assert kinds == [s.kind for s in spec.sources], name
        for s in spec.sources:
            if s.kind == "hf":
                assert f"`{s.repo}`" in sources, name


def test_pipeline_device_on_data_read_image_by_image_is_one_line(resisc_hf, tmp_path, capsys):
    sequence = tmp_path / "r.yaml"
    sequence.write_text(
        "tasks: [resisc45]\ncontrols: []\ndefaults: {model: resnet20-cifar, pretrained: none}\n"
    )
    argv = ["--sequence", str(sequence), "--data-root", str(resisc_hf), "--out", str(tmp_path)]
    assert main([*argv, "--pipeline", "device"]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # datasets' progress bars, then the error
    assert err[-1:] == [
        "error: --pipeline device: resisc45 not in the prepared store (run "
        "'run_benchmark.py data prepare resisc45'); or use --pipeline pil"
    ]
    assert not (tmp_path / "r").exists()
