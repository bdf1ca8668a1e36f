"""Every (dataset, source) pair of the registry read from its real on-disk format (issue 25
item 1): tests/fakes writes each one tiny, with the real class names, counts, image sizes and
modes; ``data list`` must show it, ``data prepare`` store it, ``data verify`` pass, and every
image must land on the label whose (normalised) name is its class's, the same in every source.
The pairs come from the registry itself, so a new source without a fake fails here."""

from dataclasses import replace

import numpy as np
import pytest
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

from run_benchmark import main
from tasks import TASKS, load_task
from tasks.base import Splits
from tasks.templates import DIGITS, EUROSAT_NAMES, GTSRB_CLASSES
from tasks.vision import VISION_TASKS
from tests.fakes import decode, source_key, torchvision_checksums, write_dataset
from tests.fakes import names as N

# The names a run must use, label order, computed from the fakes' own lists (not the loaders).
EXPECTED_NAMES = {
    "cars": N.CARS,
    "cifar10": N.CIFAR10,
    "cifar100": [n.replace("_", " ") for n in N.CIFAR100],
    "dtd": N.DTD,
    "eurosat": [EUROSAT_NAMES[n] for n in N.EUROSAT],
    "gtsrb": GTSRB_CLASSES,
    "mnist": DIGITS,
    "resisc45": [n.replace("_", " ") for n in N.RESISC45],
    "svhn": DIGITS,
    "imagenet": list(IMAGENET_CLASSNAMES),
}
# (train, test) sizes of one image per class and split where that is not (classes, classes):
# DTD's train = train + val lists, timm's EuroSAT train = train + validation; EuroSAT's
# torchvision folder and RESISC45's original folder are split by a seed (20 % test, 60 % train).
SIZES = {
    ("dtd", "torchvision"): (94, 47),
    ("eurosat", "hf"): (20, 10),
    ("eurosat", "torchvision"): (8, 2),
    ("resisc45", "folder:NWPU-RESISC45"): (27, 9),
}
SEEDED = {("eurosat", "torchvision"), ("resisc45", "folder:NWPU-RESISC45")}
PAIRS = [(name, source_key(src)) for name, spec in VISION_TASKS.items() for src in spec.sources]


def test_the_registry_has_every_dataset_expected_here():
    assert set(VISION_TASKS) == set(EXPECTED_NAMES)
    assert len(PAIRS) == 30 and len(set(PAIRS)) == len(PAIRS)


def _sizes(name: str, key: str) -> tuple[int, int]:
    n = len(EXPECTED_NAMES[name])
    return SIZES.get((name, key), (n, n))


def _origin(name: str, src) -> str:
    if src.kind == "hf":
        return f"hf:{src.repo}"
    return src.origin if src.kind == "torchvision" else "folder:"


def _cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _check_images(name: str, key: str, data) -> None:
    """Each image's label names the class it was written under; train and test images come
    from the source's own train and test splits."""
    expected = EXPECTED_NAMES[name]
    for part, dataset in (("train", data.train), ("test", data.test)):
        codes = set()
        for i in range(len(dataset)):
            img, y = dataset[i]
            split, written, _ = decode(img, grayscale=name == "mnist")
            want = expected[written]
            if (name, key) == ("cars", "folder"):  # "Ram C/V ..." cannot name a folder
                want = want.replace("/", "-")
            assert data.classnames[y] == want, (part, i, y, written)
            codes.add(split)
        if (name, key) in SEEDED:
            assert codes == {0}
        elif part == "test":
            assert codes == {1}, codes
        else:  # DTD's val images (split 2) and timm's EuroSAT validation (1) are training ones
            assert 0 in codes and (1 not in codes or (name, key) == ("eurosat", "hf")), codes


@pytest.mark.parametrize(
    ("name", "index"), [(n, i) for n, s in VISION_TASKS.items() for i in range(len(s.sources))]
)
def test_every_source_lists_prepares_verifies_and_labels_right(
    tmp_path, capsys, monkeypatch, name, index
):
    spec = VISION_TASKS[name]
    src = spec.sources[index]
    key, root = source_key(src), tmp_path / "data"
    write_dataset(root, name, key)
    train, test = _sizes(name, key)
    with torchvision_checksums():
        code, out, _ = _cli(
            capsys, "data", "list", name, "--data-root", str(root), "--source", src.kind
        )
        row = out.splitlines()[1]
        assert code == 0 and " yes " in row and f"raw: {_origin(name, src)}" in row, out
        assert f"{train:,} / {test:,}" in row, row
        # the fixed split's sizes are the real ones: the fake's differ and prepare says so
        code, out, _ = _cli(
            capsys, "data", "prepare", name, "--data-root", str(root), "--source", src.kind
        )
        assert code == 0 and f"from {_origin(name, src)}" in out, out
        assert f"note: {name} has {train:,} / {test:,} train / test images" in out, out
        code, _, err = _cli(capsys, "data", "verify", name, "--data-root", str(root))
        assert code == 2 and err.count("\n") == 1 and "its fixed split has" in err, err
        monkeypatch.setitem(TASKS, name, replace(spec, splits=Splits(train, test)))
        code, out, err = _cli(capsys, "data", "verify", name, "--data-root", str(root))
        assert code == 0 and out.startswith(f"verified: {name}"), err
    data = load_task(name, root, download=False)
    assert data.provenance["format"] == "prepared" and data.provenance["source"] == src.kind
    assert (len(data.train), len(data.test)) == (train, test)
    if (name, key) == ("cars", "folder"):  # class folders sort by name, not in devkit order
        assert data.classnames == sorted(n.replace("/", "-") for n in EXPECTED_NAMES[name])
    else:
        assert data.classnames == EXPECTED_NAMES[name]
    _check_images(name, key, data)
    store = np.load(root / "prepared" / name / "test" / "images.npy", mmap_mode="r")
    size = 224 if spec.store_size else {"mnist": 28, "eurosat": 64, "resisc45": 256}.get(name, 32)
    assert store.shape == (test, size, size, 3)


@pytest.mark.parametrize("name", ["svhn", "cifar100", "gtsrb"])
def test_every_source_gives_the_same_names_to_the_same_labels(tmp_path, name):
    """Raw sources side by side: label i is the same class in each (here without a store)."""
    spec, root = VISION_TASKS[name], tmp_path / "data"
    seen = {}
    for src in spec.sources:
        write_dataset(root, name, source_key(src))
        with torchvision_checksums():
            data = load_task(name, root, download=False, source=src.kind)
        img, y = data.test[len(data.test) - 1]
        seen[src.kind] = (data.classnames, decode(img)[1] == y)
    assert all(names == EXPECTED_NAMES[name] and same for names, same in seen.values()), seen


def test_an_incomplete_torchvision_copy_is_one_line_naming_what_to_fetch(tmp_path, capsys):
    root = tmp_path / "data"
    write_dataset(root, "cars", "torchvision")
    (root / "cars" / "stanford_cars" / "cars_test_annos_withlabels.mat").unlink()
    code, out, _ = _cli(
        capsys, "data", "list", "cars", "--data-root", str(root), "--source", "torchvision"
    )
    assert code == 0 and " no " in out.splitlines()[1], out
    code, _, err = _cli(
        capsys, "data", "prepare", "cars", "--data-root", str(root), "--source", "torchvision"
    )
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "cars_test_annos_withlabels.mat" in lines[0] and str(root / "cars") in lines[0]


def test_an_hf_copy_missing_a_split_is_listed_as_incomplete_not_fetchable(tmp_path, capsys):
    root = tmp_path / "data"
    write_dataset(root, "eurosat", "hf")
    for file in (root / "eurosat" / "hf" / "data").glob("validation-*"):
        file.unlink()
    code, out, _ = _cli(
        capsys, "data", "list", "eurosat", "--data-root", str(root), "--source", "hf"
    )
    row = out.splitlines()[1]
    assert code == 0 and "no files for split 'validation'" in row, row
    code, _, err = _cli(
        capsys, "data", "prepare", "eurosat", "--data-root", str(root), "--source", "hf"
    )
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1, err
    assert "is incomplete (no files for split 'validation': data/validation-*)" in lines[0]


def test_the_caltech101_fake_is_what_torchvisions_class_reads(tmp_path):
    """No registered dataset yet (the offline sequence builder reads it): 101 categories, the
    background folder dropped, labels in sorted folder order."""
    from torchvision.datasets import Caltech101

    write_dataset(tmp_path, "caltech101", "torchvision")
    data = Caltech101(tmp_path / "caltech101")
    assert len(data) == 101 and data.categories == N.CALTECH101[1:]
    img, y = data[100]
    assert decode(img)[1] == y == 100 and data.categories[y] == "yin_yang"
