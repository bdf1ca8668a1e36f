"""The device-side pipeline (benchmark/pipeline.py) against the PIL transforms it replaces, and the
pretrained-row cache."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from open_clip.transform import image_transform
from PIL import Image
from torchvision import transforms as T

from benchmark import pipeline as P
from benchmark.model.encoder import build_encoder
from run_benchmark import main
from tasks import manage
from tests.conftest import SHARED

CPU = torch.device("cpu")
CLIP = P.TensorPipeline.from_transforms(image_transform(224, True), image_transform(224, False))


def test_the_encoders_own_transforms_are_read():
    assert CLIP.size == (224, 224) and CLIP.eval_resize == "shortest"
    assert CLIP.train.kind == "rrc" and CLIP.train.scale == (0.9, 1.0)
    assert CLIP.interpolation == "bicubic" and CLIP.mean[0] == pytest.approx(0.48145466)
    resnet = build_encoder("resnet20-cifar", "none")
    tp = P.TensorPipeline.from_transforms(resnet.train_transform, resnet.eval_transform)
    assert tp.train.kind == "pad" and tp.train.padding == 4 and tp.eval_resize == "exact"
    assert tp.size == (32, 32) and tp.interpolation == "bilinear"
    odd = T.Compose([T.ColorJitter(0.1), T.ToTensor()])
    assert P.TensorPipeline.from_transforms(odd, odd) is None  # unknown: the PIL path is used


@pytest.mark.parametrize("shape", [(32, 32), (48, 64), (300, 257)])
def test_eval_on_tensors_matches_the_pil_eval_transform(shape):
    rng = np.random.default_rng(sum(shape))
    images = rng.integers(0, 256, (3, *shape, 3), dtype=np.uint8)
    ours = CLIP.eval(torch.from_numpy(images))
    pil = torch.stack([image_transform(224, False)(Image.fromarray(im)) for im in images])
    assert ours.shape == pil.shape == (3, 3, 224, 224)
    # uint8 rounding like PIL: at most 2 of 255 levels apart, almost everywhere equal
    level = 1 / 255 / min(CLIP.std)
    assert (ours - pil).abs().max() <= 2.01 * level
    assert (ours - pil).abs().mean() <= 0.05 * level


def test_random_resized_crop_boxes_follow_torchvisions_rule_and_the_seed():
    boxes = P.rrc_boxes(2000, 64, 48, (0.9, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(0))
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= 64).all() and (left + w <= 48).all()
    area = h * w / (64 * 48)
    assert area.min() >= 0.87 and area.max() <= 1.0  # 0.9-1.0, up to rounding of h and w
    assert ((w / h) >= 0.7).all() and ((w / h) <= 1.4).all()
    again = P.rrc_boxes(2000, 64, 48, (0.9, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(0))
    assert torch.equal(boxes, again)
    # A frame too wide for any allowed crop of 90 % of its area: torchvision's centre fallback
    wide = P.rrc_boxes(5, 10, 100, (0.9, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(1))
    assert wide.tolist() == [[0.0, 43.0, 10.0, 13.0]] * 5


def test_crop_resize_is_the_identity_on_a_full_box_and_matches_interpolate_on_a_crop():
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    full = torch.tensor([[0.0, 0.0, 16.0, 16.0]] * 2)
    assert torch.equal(P.crop_resize(x, full, (16, 16), "bicubic"), x.float())
    box = torch.tensor([[0.0, 0.0, 8.0, 8.0], [8.0, 8.0, 8.0, 8.0]])
    ours = P.crop_resize(x, box, (16, 16), "bilinear")
    ref0 = torch.nn.functional.interpolate(
        x[:1, :, :8, :8].float(), size=(16, 16), mode="bilinear", align_corners=False
    )
    ref1 = torch.nn.functional.interpolate(
        x[1:, :, 8:, 8:].float(), size=(16, 16), mode="bilinear", align_corners=False
    )
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))  # borders: padding differs
    ref = torch.cat([ref0, ref1]).round()
    torch.testing.assert_close(ours[inner], ref[inner], atol=1.0, rtol=0)


def test_pad_crop_takes_the_window_at_the_drawn_offsets():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.uint8).reshape(2, 3, 8, 8)
    out = P.pad_crop(x, (8, 8), 2, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    oy, ox = torch.randint(0, 5, (2,), generator=g), torch.randint(0, 5, (2,), generator=g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        assert torch.equal(out[i], padded[i, :, oy[i] : oy[i] + 8, ox[i] : ox[i] + 8])


def test_device_batches_cover_the_split_once_per_epoch_with_labels_in_step():
    n = 50
    images = np.zeros((n, 8, 8, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(n)  # each image carries its index
    labels = np.arange(n) % 7
    index = np.arange(5, 45)
    tp = P.TensorPipeline(
        (8, 8), (0.0,) * 3, (1.0,) * 3, "exact", "bilinear", P.TrainCrop("pad", padding=0), True
    )
    epoch = {"n": 0}
    loader = P.DeviceBatches(images, labels, index, 3, 16, tp, CPU, lambda: epoch["n"])
    assert len(loader) == 3
    orders = []
    for e in range(2):
        epoch["n"] = e
        seen = []
        for x, y, t in loader:
            ids = (x[:, 0, 0, 0] * 255).round().long()
            assert torch.equal(y, torch.as_tensor(labels)[ids]) and (t == 3).all()
            seen += ids.tolist()
        assert sorted(seen) == index.tolist()
        orders.append(seen)
    assert orders[0] != orders[1]
    epoch["n"] = 0
    assert [i for x, _, _ in loader for i in (x[:, 0, 0, 0] * 255).round().long().tolist()] == (
        orders[0]
    )


# --- runs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    for name in ("synth_a", "synth_b", "synth_c", "synth_control"):
        manage.prepare(name, root)
    return root


def _records(out, strategy="ft"):
    return pd.read_csv(out / "smoke" / strategy / "seed0" / "records.csv")


def test_a_device_pipeline_run_is_reproducible_and_records_its_pipeline(store, tmp_path):
    args = [
        "--sequence",
        "smoke",
        "--epochs",
        "1",
        "--data-root",
        str(store),
        "--cache-dir",
        "none",
    ]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b"), "--pipeline", "device"]) == 0
    pd.testing.assert_frame_equal(_records(tmp_path / "a"), _records(tmp_path / "b"))
    config = json.loads((tmp_path / "a" / "smoke" / "ft" / "seed0" / "config.json").read_text())
    assert config["pipeline"] == "device"  # auto: every dataset is prepared


def test_row0_is_computed_once_and_reused_by_the_next_strategy(store, tmp_path, monkeypatch):
    from benchmark import evaluation

    cache = tmp_path / "cache"
    calls = []
    original = evaluation.MatrixEvaluation.evaluate_dataset

    def counting(self, model, ds, stage):
        calls.append((stage, ds.name))
        return original(self, model, ds, stage)

    monkeypatch.setattr(evaluation.MatrixEvaluation, "evaluate_dataset", counting)
    args = [
        "--sequence",
        "smoke",
        "--epochs",
        "1",
        "--data-root",
        str(store),
        "--cache-dir",
        str(cache),
        "--out",
        str(tmp_path / "out"),
    ]
    assert main([*args, "--strategy", "ft"]) == 0
    # one row-0 entry per dataset (the zero-shot class weights' cache is text/ beside them)
    assert sum(1 for stage, _ in calls if stage == 0) == 4 and len(list(cache.glob("*.json"))) == 4
    assert len(list((cache / "text").glob("*.pt"))) == 4
    calls.clear()
    assert main([*args, "--strategy", "l2sp"]) == 0
    assert not [c for c in calls if c[0] == 0]  # stage 0 entirely from the cache
    ft, l2sp = _records(tmp_path / "out"), _records(tmp_path / "out", "l2sp")
    row0 = ["dataset", "kind", "accuracy"]
    pd.testing.assert_frame_equal(
        ft[ft.stage == 0][row0].reset_index(drop=True),
        l2sp[l2sp.stage == 0][row0].reset_index(drop=True),
    )
    calls.clear()  # another probe subset is another key: recomputed, never reused
    assert main([*args, "--strategy", "ft", "--fresh", "--probe-max-test", "50"]) == 0
    assert sum(1 for stage, _ in calls if stage == 0) == 4 and len(list(cache.glob("*.json"))) == 8
    assert len(list((cache / "text").glob("*.pt"))) == 4  # the same prompts: reused


@pytest.mark.skipif(not (SHARED / "data" / "dtd10.npz").exists(), reason="../shared absent")
@pytest.mark.parametrize("stem", ["dtd10", "usps", "mnist"])
def test_eval_on_tensors_matches_pil_on_real_images(stem):
    """Real photographs (DTD, 64 px) and digits (grey, 16 and 28 px), upscaled to CLIP's 224."""
    images = np.load(SHARED / "data" / f"{stem}.npz")["x_test"][:16]
    ours = CLIP.eval(torch.from_numpy(images))
    pil = torch.stack(
        [image_transform(224, False)(Image.fromarray(im.squeeze()).convert("RGB")) for im in images]
    )
    level = 1 / 255 / min(CLIP.std)
    assert ours.shape == pil.shape == (16, 3, 224, 224)
    assert (ours - pil).abs().max() <= 2.01 * level
    assert (ours - pil).abs().mean() <= 0.05 * level


def test_train_crops_differ_within_a_batch_stay_in_range_and_follow_the_seed():
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (6, 64, 48, 3), np.uint8))
    same = images[:1].expand(6, -1, -1, -1).contiguous()  # one image six times
    a = CLIP.train_batch(same, torch.Generator().manual_seed(3))
    b = CLIP.train_batch(same, torch.Generator().manual_seed(3))
    assert a.shape == (6, 3, 224, 224) and torch.equal(a, b)
    assert all(not torch.equal(a[0], a[i]) for i in range(1, 6))  # a crop per sample
    mean, std = torch.tensor(CLIP.mean).view(3, 1, 1), torch.tensor(CLIP.std).view(3, 1, 1)
    assert (a >= (0 - mean) / std - 1e-5).all() and (a <= (1 - mean) / std + 1e-5).all()
    c = CLIP.train_batch(same, torch.Generator().manual_seed(4))
    assert not torch.equal(a, c)


def test_a_probe_at_the_grid_edge_or_stopped_by_max_iter_is_said_on_stdout(
    monkeypatch, capsys, tmp_path
):
    import dataclasses

    from benchmark import evaluation

    original, calls = evaluation.linear_probe, []

    def flagged(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append(result)
        if len(calls) == 2:  # stage 0, the second dataset
            return dataclasses.replace(result, best_c=1e4, c_at_edge=True, converged=False)
        return dataclasses.replace(result, c_at_edge=False, converged=True)

    monkeypatch.setattr(evaluation, "linear_probe", flagged)
    args = [
        "--sequence",
        "smoke",
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
        "--cache-dir",
        "none",
        "--probe-max-train",
        "60",
        "--probe-max-test",
        "20",
    ]
    assert main(args) == 0
    out = capsys.readouterr()
    notes = [line for line in out.out.splitlines() if line.startswith("note: stage")]
    assert notes == [
        "note: stage 0, synth_b: the linear probe's best C is 10000, at the edge of the grid "
        "(1e-06, 1e-05, 0.0001, 0.001, 0.01, 0.1, 1, 10, 100, 1000, 10000, 100000, 1e+06); a "
        "wider grid may score higher",
        "note: stage 0, synth_b: the linear probe stopped at 5000 iterations before its "
        "tolerance 1e-05",
    ]
    assert "note:" not in out.err
