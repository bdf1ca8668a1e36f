"""Issue 22 item 6: sources that could not work. Fixtures are built in the sources' own on-disk
formats: hub copies by ``datasets`` (parquet under ``data/``, the card by the code
``push_to_hub`` uses), timm's WebDataset shards (``<key>.jpg``, ``<key>.cls``, ``<key>.json``
in tar files), git-lfs pointer files, ``hf download``'s own bookkeeping (written by
huggingface_hub), MNIST's gzipped idx files and Stanford Cars' .mat files (scipy)."""

import gzip
import io
import json
import struct
import tarfile

import numpy as np
import pytest
import scipy.io
from huggingface_hub._local_folder import get_local_download_paths, write_download_metadata

from benchmark.errors import CFBenchError, DatasetMissingError
from run_benchmark import main
from tasks import get_task, load_task
from tasks.base import targets_of
from tasks.templates import DIGITS, GTSRB_CLASSES
from tests.helpers.hf_copies import RESISC_HUB_NAMES, colour, hf_copy, image, key, resisc_items

# --- (a) ImageNet from timm's WebDataset copy -------------------------------------------------


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def timm_wds(folder, split: str, shard: int, items: list[tuple[int, int]]) -> None:
    """One shard as timm/imagenet-1k-wds lays it out: imagenet1k-<split>-<shard>.tar holding,
    per sample, <key>.jpg, <key>.cls (the class index as text) and <key>.json."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / f"imagenet1k-{split}-{shard:04d}.tar", "w") as tar:
        for i, y in items:
            stem = f"{split}_{i:08d}"
            jpeg = io.BytesIO()
            image(i, 16).save(jpeg, "JPEG", quality=100)
            _tar_member(tar, f"{stem}.jpg", jpeg.getvalue())
            _tar_member(tar, f"{stem}.cls", str(y).encode())
            _tar_member(tar, f"{stem}.json", json.dumps({"label": y}).encode())


def test_imagenet_reads_a_local_copy_of_timms_webdataset_shards(tmp_path):
    root = tmp_path / "data"
    hf = root / "imagenet" / "hf"
    train = [(i, (i * 97) % 1000) for i in range(12)]
    timm_wds(hf, "train", 0, train[:6])
    timm_wds(hf, "train", 1, train[6:])
    timm_wds(hf, "validation", 0, [(100, 0), (101, 999), (102, 1)])
    data = load_task("imagenet", root, download=False, source="hf")
    assert data.provenance["origin"] == "hf:timm/imagenet-1k-wds"
    assert targets_of(data.train) == [y for _, y in train]
    assert targets_of(data.test) == [0, 999, 1]
    # cls is the index in WordNet-id order: 0 = n01440764 (tench), 999 = n15075141 (toilet paper)
    assert data.classnames[0] == "tench" and data.classnames[999] == "toilet paper"
    img, label = data.test[1]
    assert img.mode == "RGB" and label == 999
    assert np.abs(np.asarray(img, int)[8, 8] - colour(101)).max() <= 3  # JPEG, nearly exact


# --- (b) incomplete local copies: one line with the folder and the fix -----------------------


def _resisc(root, **kw):
    hf = root / "resisc45" / "hf"
    hf_copy(hf, {"train": resisc_items(2), "test": resisc_items(1, 1000)}, RESISC_HUB_NAMES, **kw)
    return hf


def _one_line(root, capsys) -> str:
    capsys.readouterr()
    assert main(["data", "prepare", "resisc45", "--data-root", str(root)]) == 2
    err = capsys.readouterr().err  # datasets' progress bars may come first
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith("error: dataset 'resisc45'"), err
    return errors[0]


def test_a_clone_without_git_lfs_says_git_lfs_pull_or_hf_download(tmp_path, capsys):
    root = tmp_path / "data"
    hf = _resisc(root)
    (hf / ".git").mkdir()
    for file in sorted((hf / "data").glob("*.parquet")):  # what git leaves without git-lfs
        oid, size = "ab" * 32, file.stat().st_size
        file.write_text(
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"
        )
    line = _one_line(root, capsys)
    assert f"copy in {hf} is incomplete" in line and "Git LFS pointer files" in line
    assert f"run 'git lfs pull' in {hf}" in line
    assert f"'hf download --repo-type dataset tanganke/resisc45 --local-dir {hf}'" in line


def test_a_partial_download_missing_a_shard_or_a_split_is_one_line(tmp_path, capsys):
    root = tmp_path / "data"
    hf = _resisc(root, shards=3)
    (hf / "data" / "train-00001-of-00003.parquet").unlink()
    line = _one_line(root, capsys)
    assert "is incomplete (split 'train' has 2 of its 3 files)" in line
    assert f"'hf download --repo-type dataset tanganke/resisc45 --local-dir {hf}'" in line
    for file in (hf / "data").glob("test-*"):
        file.unlink()
    (hf / "data" / "train-00001-of-00003.parquet").write_bytes(b"")
    line = _one_line(root, capsys)
    assert "is incomplete (no files for split 'test': data/test-*); complete it with" in line
    (hf / "README.md").unlink()  # no card: the splits are the files' names
    line = _one_line(root, capsys)
    assert "has splits train, expected train, test; complete it with 'hf download" in line


def test_an_interrupted_hf_download_or_a_truncated_file_is_one_line(tmp_path, capsys):
    root = tmp_path / "data"
    hf = _resisc(root)
    partial = get_local_download_paths(hf, "data/test-00000-of-00001.parquet").incomplete_path(
        "etag123"
    )
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(b"PAR1")
    line = _one_line(root, capsys)
    assert "1 files of an interrupted hf download are still partial" in line
    partial.unlink()
    file = hf / "data" / "train-00000-of-00001.parquet"
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    line = _one_line(root, capsys)
    assert f"copy in {hf} could not be read" in line
    assert "download it again with 'hf download" in line


def test_the_commit_hf_download_recorded_is_the_revision(tmp_path):
    root = tmp_path / "data"
    hf = _resisc(root)
    commit = "0123456789abcdef0123456789abcdef01234567"
    for file in ("README.md", "data/train-00000-of-00001.parquet"):
        write_download_metadata(hf, file, commit, "etag")
    assert load_task("resisc45", root, download=False).provenance["revision"] == commit


# --- (c) class folders named by numbers ------------------------------------------------------


@pytest.mark.parametrize("width", [1, 5])  # 0..42 and 00000..00042
def test_gtsrb_class_folders_named_by_numbers_take_their_numbers_labels(tmp_path, width):
    root = tmp_path / "data"
    for split, offset in (("train", 0), ("test", 100)):
        for c in range(43):
            folder = root / "gtsrb" / "folder" / split / f"{c:0{width}d}"
            folder.mkdir(parents=True)
            image(offset + c).save(folder / "a.png")
    data = load_task("gtsrb", root, download=False, source="folder")
    for split, offset in ((data.train, 0), (data.test, 100)):
        seen = {key(split[i][0]): split[i][1] for i in range(len(split))}
        assert all(seen[colour(offset + c)] == c for c in range(43))
    assert data.classnames == GTSRB_CLASSES


# --- (d) the Cars and MNIST hints, MNIST's gzipped idx files ---------------------------------


def _annotations(items: list[tuple[str, int]]) -> np.ndarray:
    """A struct array as in the devkit's annos files (fname and the 1-based class)."""
    table = np.zeros(len(items), dtype=[("fname", object), ("class", object)])
    for row, (fname, cls) in zip(table, items, strict=True):
        row["fname"], row["class"] = fname, np.uint8(cls)
    return table


def test_the_cars_hint_names_every_file_torchvision_reads_and_they_suffice(tmp_path):
    root = tmp_path / "data"
    base = root / "cars" / "stanford_cars"
    (base / "devkit").mkdir(parents=True)
    for split, offset in (("train", 0), ("test", 10)):
        (base / f"cars_{split}").mkdir()
        for k in range(3):
            image(offset + k).save(base / f"cars_{split}" / f"{k:05d}.jpg", quality=100)
    names = np.array([f"Car {c}" for c in range(196)], dtype=object)
    scipy.io.savemat(base / "devkit" / "cars_meta.mat", {"class_names": names})
    train_annos = _annotations([(f"{k:05d}.jpg", k + 1) for k in range(3)])
    scipy.io.savemat(base / "devkit" / "cars_train_annos.mat", {"annotations": train_annos})
    with pytest.raises(DatasetMissingError) as info:
        load_task("cars", root, download=False, source="torchvision")
    hint = str(info.value)
    needs = ["cars_train/", "cars_test/", "devkit/", "cars_meta.mat", "cars_train_annos.mat"]
    for needed in [*needs, "cars_test_annos_withlabels.mat", f"{base}"]:
        assert needed in hint, needed
    test_annos = _annotations([(f"{k:05d}.jpg", 196 - k) for k in range(3)])
    scipy.io.savemat(base / "cars_test_annos_withlabels.mat", {"annotations": test_annos})
    data = load_task("cars", root, download=False, source="torchvision")
    assert targets_of(data.train) == [0, 1, 2] and targets_of(data.test) == [195, 194, 193]
    assert data.classnames[195] == "Car 195"


def _idx(array: np.ndarray) -> bytes:
    code = 0x08  # unsigned bytes
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(">u1").tobytes()


def test_mnist_reads_the_gzipped_idx_files_as_published(tmp_path):
    root = tmp_path / "data"
    raw = root / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    labels = {"train": [i % 10 for i in range(20)], "t10k": [9 - i % 10 for i in range(10)]}
    for prefix, ys in labels.items():
        pixels = np.stack([np.full((28, 28), 10 * y + k, np.uint8) for k, y in enumerate(ys)])
        (raw / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(pixels)))
        (raw / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(_idx(np.array(ys, np.uint8)))
        )
    data = load_task("mnist", root, download=False, source="torchvision")
    assert targets_of(data.train) == labels["train"] and targets_of(data.test) == labels["t10k"]
    assert np.asarray(data.test[3][0])[0, 0] == 10 * 6 + 3 and data.classnames == DIGITS
    with pytest.raises(DatasetMissingError, match=r"t10k-labels-idx1-ubyte.gz; gzipped or not"):
        load_task("mnist", tmp_path / "empty", download=False, source="torchvision")


# --- (e) class names from the card, never from the parquet metadata --------------------------


@pytest.mark.parametrize("embedded", [False, [f"wrong {i}" for i in range(45)]])
def test_class_names_come_from_the_card_not_the_parquet_metadata(tmp_path, embedded):
    root = tmp_path / "data"
    _resisc(root, embedded=embedded)
    raw = get_task("resisc45").sources[0].load("resisc45", root, download=False)
    assert raw.names == RESISC_HUB_NAMES
    data = load_task("resisc45", root, download=False)
    img, label = data.train[3]
    assert key(img) == colour(3) and data.classnames[label] == "airport"


def test_without_a_card_cfbench_names_the_classes_or_says_which_card_is_missing(tmp_path):
    root = tmp_path / "data"
    items = {"train": [(i, i % 10) for i in range(20)], "test": [(i, 1) for i in range(20, 30)]}
    wrong = [f"wrong {d}" for d in range(10)]
    hf_copy(root / "mnist" / "hf", items, wrong, size=28, mode="L", card=False)
    raw = get_task("mnist").sources[1].load("mnist", root, download=False)
    assert raw.names == DIGITS and raw.train.targets == [y for _, y in items["train"]]
    hf = _resisc(root, card=False, embedded=False)
    with pytest.raises(CFBenchError, match="names no classes") as info:
        load_task("resisc45", root, download=False)
    assert f"--local-dir {hf}" in str(info.value) and "\n" not in str(info.value)
