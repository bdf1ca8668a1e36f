"""Real images and the real pretrained CIFAR ResNet-20 from ../shared (skipped without it)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.errors import CFBenchError, DatasetMissingError
from benchmark.model.encoder import build_encoder
from benchmark.model.resnet_cifar import MEAN, STD, ResNetCifar, load_checkpoint
from benchmark.probe.fit import linear_probe
from tasks import get_task, load_task
from tests.conftest import SHARED

WEIGHTS = SHARED / "weights" / "resnet20-12fca82f.th"
DATA = SHARED / "data"
needs_shared = pytest.mark.skipif(
    not WEIGHTS.is_file() or not DATA.is_dir(),
    reason="../shared (offline data and weights) is absent",
)


def _normalised(x: np.ndarray) -> torch.Tensor:
    t = torch.tensor(x).float().permute(0, 3, 1, 2) / 255
    return (t - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def test_resnet_cifar_architecture_and_parameter_count():
    # ResNet-20: 269,722 parameters (the weights' README); ResNet-56: 853,018
    assert sum(p.numel() for p in ResNetCifar(3).parameters()) == 269_722
    assert sum(p.numel() for p in ResNetCifar(9).parameters()) == 853_018
    m = ResNetCifar(3)
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 64)
    # option-A shortcut: subsample and zero-pad channels, half on each side
    block = m.layer2[0]
    x = torch.randn(1, 16, 8, 8)
    s = block.shortcut(x)
    assert s.shape == (1, 32, 4, 4)
    torch.testing.assert_close(s[:, 8:24], x[:, :, ::2, ::2])
    assert s[:, :8].abs().sum() == 0 and s[:, 24:].abs().sum() == 0


@needs_shared
def test_shared_resnet20_scores_81_percent_and_probe_at_least_75():
    data = np.load(DATA / "cifar10.npz")
    model = ResNetCifar(3)
    load_checkpoint(model, WEIGHTS)
    model.eval()
    with torch.no_grad():
        test_f = model(_normalised(data["x_test"]))
        own = (model.linear(test_f).argmax(1).numpy() == data["y_test"]).mean()
        train_f = torch.cat([model(_normalised(c)) for c in np.array_split(data["x_train"], 10)])
    assert 0.79 <= own <= 0.83  # 81.2 % on this JPEG-re-encoded subset
    val = torch.zeros(len(train_f), dtype=torch.bool)
    val[::10] = True
    probe = linear_probe(
        train_f,
        torch.tensor(data["y_train"]),
        val,
        test_f,
        torch.tensor(data["y_test"]),
        10,
        (1.0, 10.0, 100.0),
    )
    assert probe.accuracy >= 0.75


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CFBenchError, match="does not exist"):
        load_checkpoint(ResNetCifar(3), tmp_path / "nope.th")
    bad = tmp_path / "bad.th"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CFBenchError, match="cannot read checkpoint"):
        load_checkpoint(ResNetCifar(3), bad)
    torch.save({"state_dict": ResNetCifar(3).state_dict()}, tmp_path / "r20.th")
    with pytest.raises(CFBenchError, match="does not fit"):
        load_checkpoint(ResNetCifar(9), tmp_path / "r20.th")


def test_npz_task_shapes_labels_classes_grey_to_rgb_and_resize(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "tiny.npz",
        x_train=rng.integers(0, 255, (12, 16, 16, 1), dtype=np.uint8),
        y_train=np.arange(12) % 3,
        x_test=rng.integers(0, 255, (6, 16, 16, 1), dtype=np.uint8),
        y_test=np.arange(6) % 3,
        classes=np.array(["zero", "one_two", "three"]),
    )
    data = load_task("npz:tiny", tmp_path)
    assert data.classnames == ["zero", "one two", "three"]
    assert len(data.train) == 12 and len(data.test) == 6 and data.test.targets == [0, 1, 2] * 2
    img, label = data.train[4]
    assert img.mode == "RGB" and img.size == (16, 16) and label == 1
    raw = np.load(tmp_path / "tiny.npz")["x_train"][4, :, :, 0]
    np.testing.assert_array_equal(np.asarray(img)[:, :, 1], raw)  # grey copied to every channel
    encoder = build_encoder("resnet20-cifar", "none")
    assert encoder.eval_transform(img).shape == (3, 32, 32)  # resized to the encoder's input
    assert encoder.text is None
    with pytest.raises(DatasetMissingError, match="missing.npz"):
        load_task("npz:missing", tmp_path)
    assert get_task("npz:tiny").name == "npz:tiny"


@needs_shared
def test_reduced_offline_run_raises_task_accuracy(tmp_path):
    from run_benchmark import main

    rng = np.random.default_rng(0)
    for name, n_train, n_test in (("mnist", 600, 200), ("gtsrb", 900, 300), ("usps", 300, 200)):
        d = np.load(DATA / f"{name}.npz")
        tr = rng.choice(len(d["y_train"]), n_train, replace=False)
        te = rng.choice(len(d["y_test"]), n_test, replace=False)
        np.savez(
            tmp_path / f"{name}.npz",
            x_train=d["x_train"][tr],
            y_train=d["y_train"][tr],
            x_test=d["x_test"][te],
            y_test=d["y_test"][te],
            classes=d["classes"],
        )
    seq = tmp_path / "reduced.yaml"
    seq.write_text("tasks: [npz:mnist, npz:gtsrb]\ncontrols: [npz:usps]\n")
    out = tmp_path / "out"
    args = [
        "--sequence",
        str(seq),
        "--data-root",
        str(tmp_path),
        "--model",
        "resnet20-cifar",
        "--pretrained",
        str(WEIGHTS),
        "--epochs",
        "2",
        "--lr",
        "1e-3",
        "--batch-size",
        "64",
        "--warmup-steps",
        "5",
        "--out",
        str(out),
    ]
    code = main(args)
    assert code == 0
    folder = out / "reduced" / "ft" / "seed0"
    lp = pd.read_csv(folder / "lp_matrix.csv", index_col="stage")
    head = pd.read_csv(folder / "head_matrix.csv", index_col="stage")
    assert not (folder / "zs_matrix.csv").exists()  # no text tower: zero-shot not available
    assert lp.loc[1, "npz:mnist"] > lp.loc[0, "npz:mnist"]
    assert lp.loc[2, "npz:gtsrb"] > lp.loc[0, "npz:gtsrb"]
    # LP-initialised heads: each is fitted when its task starts, so no head is scored at stage 0
    # (the pretrained row) and task 2's is not yet at stage 1
    assert list(head.index) == [1, 2] and np.isnan(head.loc[1, "npz:gtsrb"])
    assert head.loc[1, "npz:mnist"] > 50 and head.loc[2, "npz:gtsrb"] > 50
    metrics = json.loads((folder / "metrics.json").read_text())["head"]
    assert metrics["final_avg_acc"] == pytest.approx(head.loc[2].mean(), abs=1e-3)
    assert metrics["bwt"] == pytest.approx(head.loc[2, "npz:mnist"] - head.loc[1, "npz:mnist"])
