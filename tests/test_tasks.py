import numpy as np
import pytest
from PIL import Image

from benchmark.errors import CFBenchError, DatasetMissingError
from benchmark.probe.splits import validation_split
from tasks import SEQUENCES, TASKS, get_sequence, load_task

SEED_DATASETS = {
    "cars",
    "cifar10",
    "cifar100",
    "dtd",
    "eurosat",
    "gtsrb",
    "mnist",
    "resisc45",
    "svhn",
    "imagenet",
}


def test_registry_has_the_ten_seed_datasets_and_sequences():
    assert SEED_DATASETS <= set(TASKS)
    assert SEQUENCES["5tasks"].tasks == ("svhn", "cifar10", "resisc45", "dtd", "gtsrb")
    assert SEQUENCES["5tasks"].controls == ("cifar100", "mnist", "eurosat", "cars")
    assert SEQUENCES["3tasks"].tasks == ("svhn", "cifar10", "resisc45")
    assert (
        len(SEQUENCES["10tasks"].tasks) == 10 and set(SEQUENCES["10tasks"].tasks) == SEED_DATASETS
    )
    smoke = SEQUENCES["smoke"]
    assert len(smoke.tasks) == 3 and len(smoke.controls) == 1
    assert TASKS["dtd"].epochs == 76 and TASKS["cars"].epochs == 35


@pytest.mark.parametrize(
    "n, expected_val", [(1000, 100), (50_000, 5000), (300_000, 20_000), (7, 1)]
)
def test_validation_split_sizes(n, expected_val):
    train, val = validation_split(n)
    assert len(val) == expected_val and len(train) == n - expected_val
    assert len(np.intersect1d(train, val)) == 0
    np.testing.assert_array_equal(val, validation_split(n)[1])  # seed 0, deterministic


@pytest.mark.parametrize("name", ["resisc45", "cars", "imagenet"])
def test_missing_local_dataset_says_what_to_download(tmp_path, name):
    with pytest.raises(DatasetMissingError) as info:
        load_task(name, tmp_path, download=False)
    msg = str(info.value)
    assert str(tmp_path / name) in msg and "\n" not in msg
    assert any(word in msg for word in ("download", "get a mirror", "register"))


def test_resisc45_loads_from_the_original_folder_with_a_split_of_the_paper_sizes(tmp_path):
    from tests.helpers.hf_copies import RESISC_HUB_NAMES

    classes = [c.replace(" ", "_") for c in RESISC_HUB_NAMES]
    for c in classes:
        folder = tmp_path / "resisc45" / "NWPU-RESISC45" / c
        folder.mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(folder / f"{c}_{i:03d}.jpg")
    data = load_task("resisc45", tmp_path)
    assert data.classnames[:3] == ["airplane", "airport", "baseball diamond"]
    # 60 % train and 20 % test, seed 0: the paper's 18,900 / 6,300 of the 31,500 images
    assert len(data.train) == 270 and len(data.test) == 90
    assert not set(data.train.base.indices) & set(data.test.base.indices)
    img, label = data.test[0]
    assert img.size == (8, 8) and label == data.test.targets[0]
    assert data.provenance["origin"].startswith("folder:")


def test_sequence_yaml(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "tasks:\n  - synth_a\n  - {name: synth_b, epochs: 2}\ncontrols: [synth_c]\n"
        "defaults: {lr: 0.01}\nstrategy_args: {ldifs: {lam: 1}}\n"
    )
    seq = get_sequence(str(path))
    assert seq.name == "mine" and seq.tasks == ("synth_a", "synth_b")
    assert seq.controls == ("synth_c",)
    assert seq.task_epochs("synth_b") == 2 and seq.task_epochs("synth_a") == TASKS["synth_a"].epochs
    assert seq.defaults == {"lr": 0.01} and seq.strategy_args == {"ldifs": {"lam": 1}}


@pytest.mark.parametrize(
    "text, needle",
    [
        ("tasks:\n  - synth_a\n  - nosuch\n", "line 3: unknown dataset 'nosuch'"),
        ("tasks: [synth_a\n", "not valid YAML"),
        ("tasks:\n  - {name: synth_a, epochs: 0}\n", "line 2: epochs for 'synth_a'"),
        ("controls: [synth_a]\n", "missing the 'tasks' list"),
        ("tasks: [synth_a]\nepochz: 3\n", "line 2: unknown key 'epochz'"),
        ("tasks: [synth_a]\ncontrols: [synth_a]\n", "appears twice"),
    ],
)
def test_sequence_yaml_errors_name_file_and_line(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CFBenchError) as info:
        get_sequence(str(path))
    assert str(path) in str(info.value) and needle in str(info.value)


def test_unknown_sequence_lists_valid_names():
    with pytest.raises(CFBenchError, match="valid names: smoke, offline, 3tasks, 5tasks, 10tasks"):
        get_sequence("6tasks")
