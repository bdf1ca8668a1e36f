"""``--sequence 5tasks`` end to end, as a user runs it, on tiny datasets in their real on-disk
formats (tests/fakes): ``data prepare`` of 10tasks's datasets (which hold 5tasks's), then ft and
ldifs on the real architecture (ViT-B-32 at 224 px, a checkpoint file of random weights) with
the smallest caps, then ``report``. Anything that breaks here on a real format or the real model
is a bug in the code, not in the fixture."""

import json
import time

import open_clip
import pandas as pd
import pytest
import torch

from run_benchmark import main
from tasks import get_sequence, get_task
from tests.fakes import torchvision_checksums, write_dataset

# One source per dataset, mixing the three kinds (every pair is covered by test_real_formats.py).
SOURCES = {
    "svhn": "torchvision",
    "cifar10": "hf",
    "resisc45": "hf",
    "dtd": "torchvision",
    "gtsrb": "torchvision",
    "cifar100": "hf",
    "mnist": "torchvision",
    "eurosat": "hf",
    "cars": "torchvision",
    "imagenet": "hf",
}
CAPS = ["--epochs", "1", "--max-train-images", "8", "--batch-size", "8", "--warmup-steps", "1"]
CAPS += ["--probe-max-train", "10", "--probe-max-test", "10", "--device", "cpu"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The data root with every 10tasks dataset prepared, and a random ViT-B-32 checkpoint."""
    root = tmp_path_factory.mktemp("data")
    for name, source in SOURCES.items():
        write_dataset(root, name, source)
    with torchvision_checksums():  # the CIFAR and SVHN files' MD5s are the fixture's own
        assert main(["data", "prepare", "--sequence", "10tasks", "--data-root", str(root)]) == 0
    torch.manual_seed(0)
    checkpoint = tmp_path_factory.mktemp("weights") / "vit-b-32-random.pt"
    torch.save(open_clip.create_model("ViT-B-32").state_dict(), checkpoint)
    return root, checkpoint


def test_data_prepare_of_10tasks_leaves_every_dataset_verified(prepared, capsys):
    root, _ = prepared
    capsys.readouterr()
    code = main(["data", "verify", "--sequence", "10tasks", "--data-root", str(root)])
    lines = capsys.readouterr().err.splitlines()
    names = get_sequence("10tasks").tasks
    # a fixture has a few images per class: each store differs from its dataset only in size
    assert code == 2 and len(lines) == len(names)
    for name, line in zip(names, lines, strict=True):
        assert line.startswith(f"{name}: {name} has ") and "its fixed split has" in line


def test_5tasks_runs_ft_and_ldifs_on_vit_b32_and_reports_them_off_the_protocol(prepared, tmp_path):
    root, checkpoint = prepared
    out = tmp_path / "results"
    run = ["--sequence", "5tasks", "--model", "ViT-B-32", "--pretrained", str(checkpoint)]
    run += ["--data-root", str(root), "--out", str(out), *CAPS]
    seconds = {}
    for strategy in ("ft", "ldifs"):
        started = time.perf_counter()
        assert main([*run, "--strategy", strategy]) == 0
        seconds[strategy] = time.perf_counter() - started
    print(f"5tasks on ViT-B-32 (CPU): {seconds}")  # pytest -s shows it

    five = get_sequence("5tasks")
    datasets = [*five.tasks, *five.controls]
    prompts = sum(get_task(n).num_classes * len(get_task(n).templates) for n in datasets)
    for strategy in ("ft", "ldifs"):
        folder = out / "5tasks" / strategy / "seed0"
        records = pd.read_csv(folder / "records.csv")
        lp = records[records.kind == "lp"]
        lp = lp.pivot(index="stage", columns="dataset", values="accuracy")
        assert list(lp.index) == [0, 1, 2, 3, 4, 5] and sorted(lp.columns) == sorted(datasets)
        assert not lp.isna().to_numpy().any()
        zs = records[records.kind == "zs"]
        assert set(zs.dataset) == set(datasets) and len(zs) == 6 * len(datasets)
        head = records[records.kind == "head"]
        assert set(head.dataset) == set(five.tasks)
        config = json.loads((folder / "config.json").read_text())
        assert config["quick_gelu"] is False  # a plain ViT-B-32 file: GELU, as open_clip builds
        changed = config["off_protocol"]
        assert any(c.startswith(f"pretrained {checkpoint}") for c in changed)
        assert any(c.startswith("epochs 1 ") for c in changed)
    cost = {s: _cost(out, s) for s in ("ft", "ldifs")}
    # 4,283 prompts, encoded once for both runs (the second reads them from the text cache)
    assert (cost["ft"]["prompts_encoded"], cost["ldifs"]["prompts_encoded"]) == (prompts, 0)
    assert prompts == 4283
    # the second run reads the pretrained row from the cache: it encodes no image at stage 0
    assert cost["ldifs"]["per_stage"][0]["images_encoded"] == 0 < cost["ft"]["images_encoded"]

    assert main(["report", str(out)]) == 0
    report = (out / "report" / "report.md").read_text()
    assert "**Off the protocol**" in report and "- `5tasks` `ldifs`: pretrained" in report
    table = pd.read_csv(out / "report" / "comparison.csv")
    assert sorted(table.strategy) == ["ft", "ldifs"]


def _cost(out, strategy):
    metrics = json.loads((out / "5tasks" / strategy / "seed0" / "metrics.json").read_text())
    return metrics["cost"]
