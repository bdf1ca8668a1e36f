"""The evaluation on its own: the probe's split of a (subsampled) train split, and one stage of
``MatrixEvaluation`` on a hand-made model and datasets, with no training, against accuracies
computed independently (numpy features and heads, sklearn's logistic regression)."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits
from torch import nn
from torchvision.transforms import ToTensor

from benchmark.config import ProbeConfig
from benchmark.evaluation import EvalDataset, MatrixEvaluation, probe_split
from benchmark.model.heads import CosineHead, MultiTaskClassifier
from benchmark.probe.features import FeaturePass
from benchmark.probe.splits import subsample, validation_rest, validation_split
from tasks.base import TaskData
from tasks.synthetic import TEMPLATES, ArrayImages, synthetic_task

CPU = torch.device("cpu")


# -- probe_split ----------------------------------------------------------------------------------
def test_probe_split_without_subsampling_is_the_fixed_validation_split():
    idx, mask = probe_split(50, None)
    np.testing.assert_array_equal(idx, np.arange(50))
    _, val = validation_split(50)
    assert len(val) == 5  # round(0.1 * 50)
    np.testing.assert_array_equal(np.flatnonzero(mask), val)
    idx, mask = probe_split(30, 100)  # max_n above n: no subsample either
    np.testing.assert_array_equal(idx, np.arange(30))
    assert mask.sum() == 3


def test_probe_split_of_a_subsample_keeps_the_images_of_the_fixed_validation_split():
    n, max_n = 1000, 200
    idx, mask = probe_split(n, max_n)
    np.testing.assert_array_equal(idx, subsample(n, max_n))
    assert len(idx) == 200 and mask.dtype == bool and mask.shape == idx.shape
    val = set(validation_split(n)[1].tolist())  # 100 fixed validation images
    expected = np.array([i in val for i in idx.tolist()])  # position by position
    assert 0 < expected.sum() < len(idx)  # the normal case: both parts present
    np.testing.assert_array_equal(mask, expected)


def _case(max_n, inside: bool):
    """The first n whose subsample of max_n images lies entirely outside (or inside) the fixed
    validation split of range(n)."""
    for n in range(max_n + 1, 5000):
        val = set(validation_split(n)[1].tolist())
        hits = [i in val for i in subsample(n, max_n).tolist()]
        if all(hits) if inside else not any(hits):
            return n
    raise AssertionError("no such case")  # pragma: no cover


@pytest.mark.parametrize("max_n, inside", [(10, False), (2, True)])
def test_a_subsample_that_misses_the_validation_split_gets_one_of_its_own(max_n, inside):
    n = _case(max_n, inside)
    idx, mask = probe_split(n, max_n)
    np.testing.assert_array_equal(idx, subsample(n, max_n))
    # the fixed split alone would give a mask with no validation (or no training) part
    hits = np.isin(idx, validation_split(n)[1])
    assert hits.all() if inside else not hits.any()
    assert mask.any() and not mask.all()  # rebuilt: both parts present
    # rebuilt as the validation split of the subsample's positions 0..max_n-1: one position
    # (max(1, round(0.1 * max_n)) = 1 for 10 and for 2 images)
    assert mask.sum() == 1
    np.testing.assert_array_equal(np.flatnonzero(mask), validation_split(max_n)[1])


# -- MatrixEvaluation on a hand-made model --------------------------------------------------------
SIZE, D = 8, 6  # 8x8 RGB images, 6-dimensional embeddings


def colour_task(name, seed, n_train, n_test):
    """Three classes, each an (almost) flat colour: red, green or blue plus a little noise.
    Linearly separable by construction, also after a random linear map and normalisation."""
    rng = np.random.default_rng(seed)
    colours = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200]])

    def split(per_class):
        y = np.repeat(np.arange(3), per_class)
        x = colours[y][:, None, None, :] + rng.integers(-8, 9, size=(len(y), SIZE, SIZE, 3))
        order = rng.permutation(len(y))
        return ArrayImages(x[order].astype(np.uint8), y[order])

    return TaskData(name, split(n_train), split(n_test), ["red", "green", "blue"], TEMPLATES)


@pytest.fixture(scope="module")
def setup():
    g = torch.Generator().manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, D))
    with torch.no_grad():
        encoder[1].weight.copy_(torch.randn(D, 3 * SIZE * SIZE, generator=g) / 8)
        encoder[1].bias.copy_(torch.randn(D, generator=g))
    colours = colour_task("colours", seed=5, n_train=10, n_test=8)  # 30 train, 24 test
    # task 0's head: each class's mean direction, but a bias that keeps class 2 from ever winning,
    # so that it is right on classes 0 and 1 only (the bias counts; an accuracy of 2/3 expected)
    f, y = hand_features(encoder, colours.train)
    means = torch.tensor(np.stack([unit(f[y == k]).mean(0) for k in range(3)]))
    head_a = CosineHead(means.float(), torch.tensor([0.0, 0.0, -20.0]), scale=5.0)
    head_b = CosineHead(torch.zeros(4, D))  # all zero: an LP-init head not fitted yet
    model = MultiTaskClassifier(encoder, [head_a, head_b])
    patterns = synthetic_task("patterns", seed=6, num_classes=4, n_train=15, n_test=10, size=SIZE)
    control = synthetic_task("control", seed=7, num_classes=3, n_train=20, n_test=10, size=SIZE)
    # zero-shot weights: task 0's class directions with classes 1 and 2 swapped (right on class 0
    # only: 1/3 expected); random ones for the control
    zs_a, zs_c = means[[0, 2, 1]].float(), torch.randn(3, D, generator=g)
    datasets = [
        EvalDataset("colours", "task", 0, colours, zs_weight=zs_a),
        # no zs weights; LP-init: its head is fitted when its task starts (from stage 2)
        EvalDataset("patterns", "task", 1, patterns.build(Path("."), False), head_from=2),
        EvalDataset("control", "control", None, control.build(Path("."), False), zs_weight=zs_c),
    ]
    calls = []
    probe = ProbeConfig(c_grid=(1.0, 100.0), max_iter=500)
    evaluation = MatrixEvaluation(
        datasets,
        ToTensor(),
        probe,
        CPU,
        ["colours", "patterns"],
        FeaturePass(CPU, 16),
    )
    records = evaluation.evaluate(model, 0)
    return SimpleNamespace(
        model=model,
        datasets=datasets,
        probe=probe,
        evaluation=evaluation,
        records=records,
        calls=calls,
    )


def hand_features(encoder, dataset):
    """Embeddings in float64 numpy: pixels / 255 in (C, H, W) order, times W, plus b."""
    linear = encoder[1]
    w, b = linear.weight.detach().double().numpy(), linear.bias.detach().double().numpy()
    x = np.stack(
        [
            np.asarray(img, dtype=np.float64).transpose(2, 0, 1).reshape(-1) / 255
            for img, _ in (dataset[i] for i in range(len(dataset)))
        ]
    )
    return x @ w.T + b, np.asarray(dataset.targets)


def unit(f):
    return f / np.linalg.norm(f, axis=1, keepdims=True)


def percent_correct(logits, y):
    return 100.0 * np.mean(np.argmax(logits, axis=1) == y)


def sklearn_probe(model, ds, c_grid):
    """The protocol with sklearn: normalised features, each C fitted on train minus the fixed
    validation split and scored on it (ties to the smaller C), refit on all of train, test."""
    xtr, ytr = hand_features(model.encoder, ds.data.train)
    xte, yte = hand_features(model.encoder, ds.data.test)
    xtr, xte = unit(xtr), unit(xte)
    val = np.zeros(len(ytr), dtype=bool)
    val[validation_split(len(ytr))[1]] = True
    with threadpool_limits(1):
        scores = [
            LogisticRegression(C=c, tol=1e-10, max_iter=10_000)
            .fit(xtr[~val], ytr[~val])
            .score(xtr[val], ytr[val])
            for c in c_grid
        ]
        best = c_grid[scores.index(max(scores))]
        ref = LogisticRegression(C=best, tol=1e-10, max_iter=10_000).fit(xtr, ytr)
    return 100.0 * ref.score(xte, yte), len(yte)


def by_kind(records, dataset):
    return {r["kind"]: r["accuracy"] for r in records if r["dataset"] == dataset}


def test_records_have_the_documented_keys_and_kinds(setup):
    records = setup.records
    for r in records:
        probe_c = {"probe_c"} if r["kind"] == "lp" else set()  # the probe's chosen C
        assert set(r) == {"stage", "stage_task", "dataset", "role", "kind", "accuracy"} | probe_c
        assert r["stage"] == 0 and r["stage_task"] == "pretrained"
        assert 0.0 <= r["accuracy"] <= 100.0
    kinds = [(r["dataset"], r["role"], r["kind"]) for r in records]
    assert sorted(kinds) == sorted(
        [
            ("colours", "task", "lp"),
            ("colours", "task", "zs"),
            ("colours", "task", "head"),
            ("colours", "task", "val"),  # the head on the validation images (a trained head only)
            ("patterns", "task", "lp"),  # no zero-shot weights, and its head is all zero
            ("control", "control", "lp"),
            ("control", "control", "zs"),  # a control has no head
            # the probe chosen on validation, scored on the validation split: every dataset
            ("colours", "task", "lp_val"),
            ("patterns", "task", "lp_val"),
            ("control", "control", "lp_val"),
        ]
    )


def test_head_accuracy_is_the_head_applied_to_hand_computed_features(setup):
    model = setup.model
    f, y = hand_features(model.encoder, setup.datasets[0].data.test)
    head = model.heads["0"]
    w, b = head.weight.detach().double().numpy(), head.bias.detach().double().numpy()
    expected = percent_correct(5.0 * unit(f) @ w.T + b, y)  # scale * W normalize(f) + b
    assert expected == pytest.approx(100 * 16 / 24)  # classes 0 and 1 right, class 2 never
    assert by_kind(setup.records, "colours")["head"] == pytest.approx(expected)


def test_val_is_the_head_on_the_validation_images_of_the_train_split(setup):
    model = setup.model
    f, y = hand_features(model.encoder, setup.datasets[0].data.train)
    val = validation_split(len(y))[1]  # 3 of the 30 training images, never trained on
    head = model.heads["0"]
    w, b = head.weight.detach().double().numpy(), head.bias.detach().double().numpy()
    expected = percent_correct(5.0 * unit(f[val]) @ w.T + b, y[val])
    assert by_kind(setup.records, "colours")["val"] == pytest.approx(expected)


def test_zero_shot_accuracy_is_normalised_features_times_the_zero_shot_weights(setup):
    for k, name in ((0, "colours"), (2, "control")):
        ds = setup.datasets[k]
        f, y = hand_features(setup.model.encoder, ds.data.test)
        expected = percent_correct(unit(f) @ ds.zs_weight.double().numpy().T, y)
        if name == "colours":
            assert expected == pytest.approx(100 * 8 / 24)  # 8 test images of class 0 right
        assert by_kind(setup.records, name)["zs"] == pytest.approx(expected), name


def test_lp_is_perfect_on_a_linearly_separable_task(setup):
    assert by_kind(setup.records, "colours")["lp"] == 100.0
    reference, _ = sklearn_probe(setup.model, setup.datasets[0], setup.probe.c_grid)
    assert reference == 100.0  # the colours really are separable


@pytest.mark.parametrize("k, name", [(1, "patterns"), (2, "control")])
def test_lp_accuracy_matches_sklearn_logistic_regression(setup, k, name):
    reference, n_test = sklearn_probe(setup.model, setup.datasets[k], setup.probe.c_grid)
    ours = by_kind(setup.records, name)["lp"]
    # the same objective solved by two solvers: at most one test image may fall either way
    assert abs(ours - reference) <= 100.0 / n_test + 1e-9, (ours, reference)


def test_new_api_later_stages(setup):
    evaluation, model = setup.evaluation, setup.model
    records = evaluation.evaluate(model, 1)
    assert all(r["stage"] == 1 and r["stage_task"] == "colours" for r in records)
    before = {(r["dataset"], r["kind"]): r["accuracy"] for r in setup.records}
    after = {(r["dataset"], r["kind"]): r["accuracy"] for r in records}
    assert after == before


def test_validation_rest_completes_the_fixed_split():
    n = 200
    _, val = validation_split(n)
    idx, mask = probe_split(n, 50)
    rest = validation_rest(n, idx, mask)
    assert sorted(np.concatenate([idx[mask], rest]).tolist()) == sorted(val.tolist())
    assert not set(rest) & set(idx)
    # the fallback mask (not the fixed split) gets nothing added
    fallback = np.zeros(len(idx), dtype=bool)
    fallback[:3] = True
    assert validation_rest(n, idx, fallback).size == 0


def test_lp_val_is_the_validation_chosen_fit_on_the_whole_validation_split(setup):
    """With a probe subset, lp_val = sklearn fitted on the subset minus its validation part at the
    C that part picks, scored on every validation image of the train split."""
    ds = setup.datasets[2]  # control: 60 train images, 6 of them the fixed validation split
    probe = ProbeConfig(c_grid=(0.01, 1.0, 100.0), max_iter=500, max_train_samples=40)
    evaluation = MatrixEvaluation([ds], ToTensor(), probe, CPU, [], FeaturePass(CPU, 16))
    lp_val = by_kind(evaluation.evaluate(setup.model, 0), "control")["lp_val"]
    x, y = hand_features(setup.model.encoder, ds.data.train)
    x = unit(x)
    idx, mask = probe_split(len(y), 40)
    rest = validation_rest(len(y), idx, mask)
    assert mask.any() and rest.size  # both parts are exercised
    fit_x, fit_y = x[idx[~mask]], y[idx[~mask]]
    with threadpool_limits(1):
        fits = [
            LogisticRegression(C=c, tol=1e-10, max_iter=10_000).fit(fit_x, fit_y)
            for c in probe.c_grid
        ]
    scores = [f.score(x[idx[mask]], y[idx[mask]]) for f in fits]
    chosen = fits[scores.index(max(scores))]
    val = np.concatenate([idx[mask], rest])
    assert lp_val == pytest.approx(100.0 * chosen.score(x[val], y[val]))
