"""VRF and OSE as a measure: inside MatrixEvaluation on a hand-made model, against an independent
computation, and end to end (the vrf strategy's LP rows are FT's; --vrf gives the vrf strategy's
records; the report's figures). The pure functions are tests/test_vrf.py."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.neighbors import NearestNeighbors
from torch import nn
from torchvision.transforms import ToTensor

from benchmark.commands.launch import build_configs
from benchmark.commands.run import build_parser
from benchmark.config import ProbeConfig
from benchmark.evaluation import EvalDataset, MatrixEvaluation
from benchmark.kinds import MATRIX_KINDS
from benchmark.model.heads import CosineHead, MultiTaskClassifier
from benchmark.probe.features import FeaturePass
from benchmark.probe.splits import probe_split
from benchmark.vrf.evaluator import VRFEvaluator, requested_settings
from benchmark.vrf.functions import (
    VRFSettings,
    calibrate_temperature,
)
from run_benchmark import main
from strategies import STRATEGIES, resolve
from tasks.synthetic import synthetic_task
from tests.helpers.vrf_official import official_k, softmax, unit

CPU = torch.device("cpu")


# -- the evaluator inside MatrixEvaluation, on a hand-made model ----------------------------------
SIZE, D, C = 8, 6, 4  # 8x8 images, 6-d embeddings, 4 classes
SCALE, HEAD_SCALE = 10.0, 30.0  # the zero-shot logit scale, the fine-tuned head's scale


def linear_encoder(seed):
    g = torch.Generator().manual_seed(seed)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, D))
    with torch.no_grad():
        encoder[1].weight.copy_(torch.randn(D, 3 * SIZE * SIZE, generator=g) / 8)
        encoder[1].bias.copy_(torch.randn(D, generator=g) / 10)
    return encoder


def hand_features(encoder, dataset, indices):
    """float64 numpy embeddings: pixels / 255 in (C, H, W) order, times W, plus b."""
    w = encoder[1].weight.detach().double().numpy()
    b = encoder[1].bias.detach().double().numpy()
    x = np.stack(
        [
            np.asarray(dataset[int(i)][0], dtype=np.float64).transpose(2, 0, 1).ravel() / 255
            for i in indices
        ]
    )
    return x @ w.T + b


def make_hand(n_per_class):
    data = synthetic_task(
        "patterns", seed=11, num_classes=C, n_train=n_per_class, n_test=30, size=SIZE
    )
    data = data.build(Path("."), False)
    pretrained, current = linear_encoder(0), linear_encoder(0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # "fine-tuned": the pretrained weights moved
        current[1].weight.add_(torch.randn(D, 3 * SIZE * SIZE, generator=g) / 6)
    ytr = np.asarray(data.train.targets)
    idx = np.arange(len(ytr))
    fp, fc = hand_features(pretrained, data.train, idx), hand_features(current, data.train, idx)
    zs_w = unit(np.stack([unit(fp[ytr == k]).mean(0) for k in range(C)]))  # the "text" weights
    ft_w = unit(np.stack([unit(fc[ytr == k]).mean(0) for k in range(C)]))
    bias = torch.tensor([0.1, -0.1, 0.0, 0.0])
    head = CosineHead(torch.tensor(ft_w).float(), bias, scale=HEAD_SCALE)
    zs_weight = torch.tensor(zs_w).float()
    return dict(
        data=data,
        pretrained=pretrained,
        current=current,
        head=head,
        zs_weight=zs_weight,
        ft_w=ft_w,
        ft_b=bias.double().numpy(),
    )


@pytest.fixture(scope="module")
def hand():
    """160 training images, 144 outside the validation part: K > |ZSF| (under 1000 images)."""
    return make_hand(40)


@pytest.fixture(scope="module")
def hand_large():
    """1,200 training images, 1,080 outside the validation part: 1 <= K <= |ZSF|."""
    return make_hand(300)


def evaluate(hand, settings, stage0: bool, max_train=None, neighbours=None):
    """Records of stage 1 (the current encoder), after stage 0 (the pretrained one) or not (as
    after a resume: the evaluator's frozen copy computes the zero-shot side). ``neighbours``
    (a dict) receives the evaluator's (stage, task) -> (K, |ZSF|, |train|)."""
    ds = EvalDataset("patterns", "task", 0, hand["data"], zs_weight=hand["zs_weight"])
    features = FeaturePass(CPU, 16)
    vrf = VRFEvaluator(settings, hand["pretrained"], SCALE, ToTensor(), features, ["patterns"])
    probe = ProbeConfig(c_grid=(1.0,), max_iter=50, max_train_samples=max_train)
    evaluation = MatrixEvaluation(
        [ds], ToTensor(), probe, CPU, ["patterns"], features, measures=[vrf]
    )
    zs_head = CosineHead(hand["zs_weight"], scale=SCALE)
    if stage0:
        records = evaluation.evaluate(MultiTaskClassifier(hand["pretrained"], [zs_head]), 0)
        kinds = {r["kind"] for r in records}
        assert {"lp", "zs", "head"} <= kinds and not kinds & {"vrf", "ose"}  # none at stage 0
        assert vrf.pretrained is None  # every task's zero-shot side is known: copy dropped
    else:
        assert vrf.pretrained is not None
    records = evaluation.evaluate(MultiTaskClassifier(hand["current"], [hand["head"]]), 1)
    assert vrf.pretrained is None
    if neighbours is not None:
        neighbours.update(vrf.neighbours)
    return {r["kind"]: r["accuracy"] for r in records}


def independent(hand, settings, max_train=None):
    """VRF and OSE by hand, float64 numpy and sklearn's NearestNeighbors, with the official K
    (official_k above; no K-th neighbour: w = 0); the temperatures from calibrate_temperature
    (checked on its own above)."""
    data = hand["data"]
    idx, val = probe_split(len(data.train), max_train)
    ytr, yte = np.asarray(data.train.targets)[idx], np.asarray(data.test.targets)
    te = np.arange(len(yte))
    w_ft, b_ft = hand["ft_w"], hand["ft_b"]  # the head's function, whatever its parameters
    zs_w = hand["zs_weight"].double().numpy()

    def ft_logits(f):
        return HEAD_SCALE * unit(f) @ w_ft.T + b_ft

    def zs_logits(f):
        return SCALE * unit(f) @ zs_w.T

    ftr, fte = (
        hand_features(hand["current"], data.train, idx),
        hand_features(hand["current"], data.test, te),
    )
    ptr, pte = (
        hand_features(hand["pretrained"], data.train, idx),
        hand_features(hand["pretrained"], data.test, te),
    )
    ft_tr, zs_tr = ft_logits(ftr), zs_logits(ptr)
    ft_ok, zs_ok = ft_tr.argmax(1) == ytr, zs_tr.argmax(1) == ytr
    zsf = ft_ok & ~zs_ok & ~val
    n_zsf, n_train = int(zsf.sum()), int((~val).sum())
    k = official_k(n_zsf, n_train)
    if 1 <= k <= n_zsf:
        dist, _ = NearestNeighbors(n_neighbors=k).fit(unit(ftr[zsf])).kneighbors(unit(fte))
        w = 1 / (1 + np.exp((dist[:, -1] ** 2 - settings.a) / settings.b))
    else:  # no K-th neighbour: the official w is 0 (K > |ZSF|), cfbench's too (K = 0)
        w = np.zeros(len(te))
    t_ft = calibrate_temperature(torch.tensor(ft_tr[val]), ft_ok[val].mean())
    t_zs = calibrate_temperature(torch.tensor(zs_tr[val]), zs_ok[val].mean())
    p_ft, p_zs = softmax(ft_logits(fte) / t_ft), softmax(zs_logits(pte) / t_zs)
    vrf = w[:, None] * p_ft + (1 - w[:, None]) * p_zs
    ose = settings.ose_weight * p_ft + (1 - settings.ose_weight) * p_zs
    return dict(
        vrf=100 * np.mean(vrf.argmax(1) == yte),
        ose=100 * np.mean(ose.argmax(1) == yte),
        head=100 * np.mean(ft_logits(fte).argmax(1) == yte),
        zs_pretrained=100 * np.mean(zs_logits(pte).argmax(1) == yte),
        n_zsf=n_zsf,
        k=k,
        w=w,
        n_train=n_train,
    )


@pytest.mark.parametrize("a, b", [(1.5, 0.6), (0.12, 0.01)])
def test_vrf_and_ose_records_equal_an_independent_computation(hand_large, a, b):
    settings = VRFSettings(a, b, ose_weight=0.3)
    expected = independent(hand_large, settings)
    k, n_zsf, n_train = expected["k"], expected["n_zsf"], expected["n_train"]
    assert 1 <= k < n_zsf < n_train == 1080  # the official rule is defined: K = 201 of 217
    if a == 0.12:  # the weights really vary between test images, and change the predictions
        assert expected["w"].min() < 0.01 and expected["w"].max() > 0.95
        assert expected["vrf"] not in (expected["head"], expected["zs_pretrained"])
    neighbours = {}
    got = evaluate(hand_large, settings, stage0=True, neighbours=neighbours)
    assert neighbours == {(1, "patterns"): (k, n_zsf, n_train)}
    assert got["head"] == pytest.approx(expected["head"])
    assert got["vrf"] == pytest.approx(expected["vrf"])
    assert got["ose"] == pytest.approx(expected["ose"])
    assert evaluate(hand_large, settings, stage0=False) == got  # recomputed by the frozen copy


def test_under_1000_training_images_k_exceeds_the_zsf_set_and_vrf_is_zero_shot(hand, capsys):
    expected = independent(hand, VRFSettings())
    k, n_zsf, n_train = expected["k"], expected["n_zsf"], expected["n_train"]
    assert (k, n_zsf, n_train) == (229, 33, 144)  # round(33 / 144 * 1000): no 229th neighbour
    assert expected["head"] != expected["zs_pretrained"] == expected["vrf"]
    neighbours = {}
    got = evaluate(hand, VRFSettings(), stage0=True, neighbours=neighbours)
    assert neighbours == {(1, "patterns"): (229, 33, 144)}
    assert got["vrf"] == pytest.approx(expected["zs_pretrained"])
    assert got["ose"] == pytest.approx(expected["ose"]) and got["ose"] != got["vrf"]
    notes = [line for line in capsys.readouterr().out.splitlines() if "VRF's K" in line]
    assert notes == [
        "note: stage 1, patterns: VRF's K = round(33 / 144 * 1000) = 229; K > |ZSF| = 33: the "
        "official code finds no K-th neighbour (faiss gives FLT_MAX), so its w is 0, and vrf is "
        "the zero-shot prediction"
    ]


def test_vrf_on_a_probe_subsample_uses_its_train_part(hand_large):
    settings = VRFSettings(0.12, 0.01)
    expected = independent(hand_large, settings, max_train=1150)
    assert 1000 < expected["n_train"] < 1080 and 1 <= expected["k"] <= expected["n_zsf"]
    neighbours = {}
    got = evaluate(hand_large, settings, stage0=False, max_train=1150, neighbours=neighbours)
    assert neighbours[(1, "patterns")] == (expected["k"], expected["n_zsf"], expected["n_train"])
    assert got["vrf"] == pytest.approx(expected["vrf"])
    assert got["ose"] == pytest.approx(expected["ose"])


def test_extreme_weights_give_the_head_and_the_pretrained_zero_shot_accuracy(hand_large):
    expected = independent(hand_large, VRFSettings())
    assert expected["head"] != expected["zs_pretrained"]
    ft_side = evaluate(hand_large, VRFSettings(a=1e9, ose_weight=1.0), stage0=False)
    assert ft_side["vrf"] == ft_side["ose"] == ft_side["head"] == pytest.approx(expected["head"])
    zs_side = evaluate(hand_large, VRFSettings(a=-1e9, ose_weight=0.0), stage0=True)
    assert zs_side["vrf"] == zs_side["ose"] == pytest.approx(expected["zs_pretrained"])


def test_the_vrf_strategy_or_the_flag_asks_for_the_evaluator(tiny_encoder):
    assert requested_settings([], False) is None
    assert requested_settings([], True) == VRFSettings()
    (plugin,) = resolve("vrf", {"a": 2.0})(_context(tiny_encoder))
    assert plugin.evaluation_kinds == ("vrf", "ose") and plugin.state_dict() == {}
    assert requested_settings([plugin], False) == VRFSettings(a=2.0)
    assert STRATEGIES["vrf"].needs_text_tower and not STRATEGIES["ft"].needs_text_tower
    assert {"vrf", "ose"} <= set(MATRIX_KINDS)


def _context(encoder):
    from types import SimpleNamespace

    return SimpleNamespace(encoder=encoder)


# -- the command line ----------------------------------------------------------------------------
def test_without_a_text_tower_vrf_is_skipped_by_all_and_refused_alone(capsys, tmp_path):
    base = ["--sequence", "smoke", "--model", "resnet20-cifar", "--out", str(tmp_path)]
    args = build_parser(list(STRATEGIES)).parse_args(
        [*base, "--strategy", "all", "--seeds", "0", "1"]
    )
    _, cfgs = build_configs(args)
    # lp_ft is skipped too: without a text tower every strategy has LP-initialised heads
    needs = [s for s, spec in STRATEGIES.items() if spec.needs_text_tower]  # vrf, flyp
    assert [c.strategy for c in cfgs] == [s for s in STRATEGIES if s not in (*needs, "lp_ft")] * 2
    out = capsys.readouterr().out.strip().splitlines()
    assert out[1] == (
        "skipping vrf: it needs a model with a text tower (VRF ensembles each "
        "task's fine-tuned head with the pretrained zero-shot head) and "
        "resnet20-cifar has none"
    )
    assert out[0].startswith("skipping lp_ft: ") and len(out) == 1 + len(needs)
    refusals = [
        (["--strategy", "vrf"], "error: strategy vrf needs a model with a text tower"),
        (["--vrf"], "error: --vrf needs a model with a text tower"),
    ]
    for extra, words in refusals:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(words), err
        assert "resnet20-cifar has none" in err[0] and "--model ViT-B-32" in err[0]
    assert not tmp_path.joinpath("smoke").exists()
    flagged = build_parser(list(STRATEGIES)).parse_args(["--sequence", "smoke", "--vrf"])
    assert build_configs(flagged)[1][0].vrf is True
    assert build_configs(build_parser([]).parse_args([]))[1][0].vrf is False


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Smoke runs with one seed: ft, vrf (its stage 0 from the row-0 cache ft filled, so the
    frozen copy computes the zero-shot side) and ft --vrf without the cache (stage 0's own
    features give it)."""
    out = tmp_path_factory.mktemp("vrf_smoke")
    base = ["--sequence", "smoke", "--out", str(out), "--seed", "0"]
    assert main([*base, "--strategy", "ft"]) == 0
    assert main([*base, "--strategy", "vrf"]) == 0
    flagged = tmp_path_factory.mktemp("vrf_flag")
    assert (
        main(
            [
                "--sequence",
                "smoke",
                "--out",
                str(flagged),
                "--seed",
                "0",
                "--strategy",
                "ft",
                "--vrf",
                "--cache-dir",
                "none",
            ]
        )
        == 0
    )
    runs = {
        "ft": out / "smoke/ft/seed0",
        "vrf": out / "smoke/vrf/seed0",
        "ft_vrf": flagged / "smoke/ft/seed0",
    }
    return out, {k: pd.read_csv(v / "records.csv") for k, v in runs.items()}, runs


def test_smoke_vrf_records_and_lp_rows_equal_ft(smoke):
    _, records, folders = smoke
    vrf = records["vrf"]
    tasks = ["synth_a", "synth_b", "synth_c"]
    for kind in ("vrf", "ose"):
        got = vrf[vrf.kind == kind]
        expected = [(t, tasks[j]) for t in (1, 2, 3) for j in range(t)]  # tasks j <= t only
        assert sorted(zip(got.stage, got.dataset, strict=True)) == expected
        assert set(got.role) == {"task"} and got.accuracy.between(0, 100).all()
    ft = records["ft"]
    for kind in ("lp", "zs", "head"):  # VRF changes predictions, not features or training
        a = ft[ft.kind == kind].set_index(["stage", "dataset"]).accuracy
        b = vrf[vrf.kind == kind].set_index(["stage", "dataset"]).accuracy
        pd.testing.assert_series_equal(a, b)
    assert not set(ft.kind) & {"vrf", "ose"}
    flagged = records["ft_vrf"].drop(columns="strategy")
    pd.testing.assert_frame_equal(flagged, vrf.drop(columns="strategy"))  # --vrf = vrf strategy
    config = json.loads((folders["ft_vrf"] / "config.json").read_text())
    assert config["vrf"] is True and config["strategy"] == "ft"
    config = json.loads((folders["vrf"] / "config.json").read_text())
    assert config["vrf"] is False and config["strategy_config"] == {
        "a": 1.5,
        "b": 0.6,
        "ose_weight": 0.5,
    }
    matrix = pd.read_csv(folders["vrf"] / "vrf_matrix.csv", index_col="stage")
    assert list(matrix.index) == [1, 2, 3] and list(matrix.columns) == tasks
    metrics = json.loads((folders["vrf"] / "metrics.json").read_text())
    assert metrics["vrf"]["final_avg_acc"] == pytest.approx(matrix.loc[3].mean(), abs=1e-3)
    assert "vrf" not in json.loads((folders["ft"] / "metrics.json").read_text())


def test_report_shows_the_vrf_and_ose_figures(smoke):
    out, _, _ = smoke
    assert main(["report", str(out)]) == 0
    report = out / "report"
    for name in (
        "smoke/curves_vrf.png",
        "smoke/curves_ose.png",
        "smoke/vrf/seed0/vrf_heatmap.png",
        "smoke/vrf/seed0/ose_heatmap.png",
    ):
        assert (report / name).is_file(), name
    assert not (report / "smoke/ft/seed0/vrf_heatmap.png").exists()
    text = (report / "report.md").read_text()
    assert "VRF accuracy over stages" in text and "vrf_heatmap.png" in text
