"""Model merging (benchmark/merge/): TIES, MagMax, task arithmetic and LiNeS on hand numbers and
a real encoder's parameter names, then ``run_benchmark.py merge`` on tiny smoke runs kept with
--keep-checkpoints all: theta_0 is the pretrained encoder (a merge that keeps theta_0 measures
row 0 at every stage), MagMax's stage-t model is theta_0 + 0.5 max-magnitude tau over stages
1..t of both runs (checked with numpy against the checkpoints), the report reads the merged
runs, and bad input is refused with one line."""

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.merge import make
from benchmark.merge.lines import lines_scales, multi_task_alpha
from benchmark.merge.make import MergeOptions, merge_stage
from benchmark.merge.vectors import (
    apply_vector,
    magmax,
    task_arithmetic,
    ties,
    ties_disjoint_mean,
    ties_elect,
    ties_trim,
)
from benchmark.model.encoder import build_encoder
from run_benchmark import main

SMOKE = [
    "--sequence",
    "smoke",
    "--epochs",
    "1",
    "--max-train-images",
    "96",
    "--probe-max-train",
    "160",
    "--probe-max-test",
    "160",
    "--keep-checkpoints",
    "all",
]
KEYS = ["stage", "stage_task", "dataset", "role", "kind", "accuracy"]


def t(*values):
    return torch.tensor(values, dtype=torch.float32)


# -- TIES, by hand ------------------------------------------------------------------------------
def test_ties_trim_keeps_the_top_k_percent_by_magnitude_and_ties_at_the_threshold():
    x = t(0.1, -5.0, 0.3, 2.0, -0.2, 0.4, -3.0, 1.0, 0.05, -0.6)
    assert torch.equal(ties_trim(x, 20), t(0, -5.0, 0, 0, 0, 0, -3.0, 0, 0, 0))  # 2 of 10
    assert torch.equal(ties_trim(t(1.0, -2.0, 2.0, 0.5), 25), t(0, -2.0, 2.0, 0))  # tie kept
    assert torch.equal(ties_trim(t(1.0, 2.0, 3.0), 10), t(0, 0, 3.0))  # at least one
    with pytest.raises(ValueError):
        ties_trim(x, 0)


def test_ties_elects_the_sign_of_the_mass_and_zero_sums_take_the_majority():
    trimmed = torch.stack([t(1.0, -2.0, 0.0, 3.0), t(-1.0, -1.0, 0.0, -4.0)])
    # column sums 0, -3, 0, -1: the zeros take the sign of (-1) + (-1)
    assert torch.equal(ties_elect(trimmed), t(-1.0, -1.0, -1.0, -1.0))


def test_ties_disjoint_mean_averages_only_the_values_of_the_elected_sign():
    trimmed = torch.stack([t(3.0, 2.5, 0.0, -4.0), t(-2.0, 5.0, -1.0, 1.0), t(0.0, -3.0, 2.0, 0.0)])
    signs = t(1.0, 1.0, 1.0, -1.0)
    assert torch.equal(ties_disjoint_mean(trimmed, signs), t(3.0, 3.75, 2.0, -4.0))
    assert torch.equal(ties_disjoint_mean(torch.zeros(2, 2), t(1.0, -1.0)), t(0.0, 0.0))


def test_ties_merge_trims_over_the_whole_flattened_vector():
    taus = [
        {"a": t(3.0, 2.5), "b": t(0.5, -4.0, 2.0)},
        {"a": t(-2.0, 5.0), "b": t(-1.0, 1.0, 0.5)},
        {"a": t(1.0, -3.0), "b": t(2.0, -1.0, 6.0)},
    ]
    # k = 60 % of 5 entries: 3 per vector (tau_2's -1 and 1 tie at the threshold: 4 kept)
    # trimmed: (3, 2.5, 0, -4, 0), (-2, 5, -1, 1, 0), (0, -3, 2, 0, 6); sums 1, 4.5, 1, -3, 6
    merged = ties(taus, k=60)
    assert torch.equal(merged["a"], t(3.0, 3.75)) and torch.equal(merged["b"], t(2.0, -4.0, 6.0))


# -- MagMax and task arithmetic, by hand --------------------------------------------------------
def test_magmax_takes_the_largest_magnitude_with_its_sign_and_the_later_one_on_ties():
    taus = [
        {"w": t(1.0, -3.0, 2.0, 0.5)},
        {"w": t(-2.0, 3.0, 1.0, -0.5)},
        {"w": t(0.5, 1.0, -2.0, 0.25)},
    ]
    assert torch.equal(magmax(taus)["w"], t(-2.0, 3.0, -2.0, -0.5))
    summed = task_arithmetic(taus)["w"]
    assert torch.equal(summed, t(-0.5, 1.0, 1.0, 0.25))
    theta0 = {"w": torch.ones(4, dtype=torch.float64)}
    out = apply_vector(theta0, {"w": summed}, lambda key: 0.5)
    assert out["w"].dtype == torch.float64 and torch.equal(
        out["w"].float(), t(0.75, 1.5, 1.5, 1.125)
    )


# -- LiNeS --------------------------------------------------------------------------------------
def test_lines_scales_the_tiny_vit_by_block_and_everything_else_by_alpha():
    names = ["encoder." + n for n in build_encoder("cfbench-tiny-vit", "none").module.state_dict()]
    scales = lines_scales(names, alpha=0.2, beta=0.6)
    # 4 blocks: alpha + beta (l - 1) / 3 = 0.2, 0.4, 0.6, 0.8
    for i, want in enumerate([0.2, 0.4, 0.6, 0.8]):
        block = [n for n in names if f".resblocks.{i}." in n]
        assert len(block) == 12 and all(math.isclose(scales[n], want) for n in block), i
    for name in (
        "class_embedding",
        "positional_embedding",
        "conv1.weight",
        "ln_pre.bias",
        "ln_post.weight",
        "proj",
    ):
        assert scales["encoder." + name] == 0.2, name


def test_lines_numbers_the_resnet20_blocks_stage_by_stage():
    names = list(build_encoder("resnet20-cifar", "none").module.state_dict())
    scales = lines_scales(names, alpha=0.1, beta=0.8)
    # 9 blocks layer1.0 .. layer3.2: layer2.1 is the 5th, 0.1 + 0.8 * 4 / 8
    assert math.isclose(scales["layer2.1.conv1.weight"], 0.5)
    assert math.isclose(scales["layer1.0.bn1.running_var"], 0.1)
    assert math.isclose(scales["layer3.2.conv2.weight"], 0.9)
    assert scales["conv1.weight"] == 0.1 and scales["bn1.bias"] == 0.1  # the stem
    with pytest.raises(ValueError):
        lines_scales(["head.weight"], 0.5, 0.5)


def test_lines_alpha_for_a_merged_vector_and_the_merge_rules_of_a_stage():
    taus = [{"w": t(1.0, -2.0)}, {"w": t(3.0, 2.0)}]
    # ||tau_1 + tau_2||_1 = 4, n = 2, ||m||_1 = 8: 4 / 16
    assert multi_task_alpha(taus, {"w": t(4.0, 4.0)}) == 0.25
    key = "encoder.transformer.resblocks.0.w"
    theta0 = {key: t(1.0, 1.0), "encoder.transformer.resblocks.1.w": t(0.0, 0.0)}
    pooled = [
        {key: t(2.0, -4.0), "encoder.transformer.resblocks.1.w": t(1.0, 1.0)},
        {key: t(4.0, 2.0), "encoder.transformer.resblocks.1.w": t(3.0, -1.0)},
    ]
    ta, info = merge_stage(theta0, pooled, pooled[1:], MergeOptions((), "task_arithmetic"))
    assert info == {"task_vectors": 2, "lambda": 0.5}  # 1/n: the mean
    assert torch.equal(ta[key], t(4.0, 0.0))
    mm, info = merge_stage(theta0, pooled, pooled[1:], MergeOptions((), "magmax"))
    assert info["lambda"] == 0.5 and torch.equal(mm[key], t(3.0, -1.0))  # 1 + 0.5 (4, -4)
    # post hoc on this stage's vector: block 0 alpha = 0.25, block 1 alpha + beta = 1
    ln, info = merge_stage(theta0, pooled, pooled[1:], MergeOptions((), "lines", alpha=0.25))
    assert info == {"task_vectors": 1, "alpha": 0.25, "beta": 0.75}
    assert torch.equal(ln[key], t(2.0, 1.5))
    assert torch.equal(ln["encoder.transformer.resblocks.1.w"], t(3.0, -1.0))


# -- run_benchmark.py merge on smoke runs -------------------------------------------------------
def _capture(store: dict, real):
    """``real`` evaluate_stages that keeps a copy of every stage's merged state dict."""

    def wrapped(session, stages, name, results, state_of):
        def spy(stage):
            state = state_of(stage)
            store[stage] = {k: v.detach().clone() for k, v in state.items()}
            return state

        return real(session, stages, name, results, spy)

    return wrapped


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """a and b: two smoke runs from seed 0's random weights (b at another learning rate), each
    stage's checkpoint kept; two merges written next to a, their evaluated states captured."""
    root = tmp_path_factory.mktemp("merge")
    assert main([*SMOKE, "--out", str(root / "a")]) == 0
    assert main([*SMOKE, "--out", str(root / "b"), "--lr", "3e-4"]) == 0
    a, b = root / "a/smoke/ft/seed0", root / "b/smoke/ft/seed0"
    zero, mm = {}, {}
    real = make.evaluate_stages
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(make, "evaluate_stages", _capture(zero, real))
        assert (
            main(
                [
                    "merge",
                    str(a),
                    "--method",
                    "lines",
                    "--alpha",
                    "0",
                    "--beta",
                    "0",
                    "--name",
                    "theta0",
                ]
            )
            == 0
        )
        patch.setattr(make, "evaluate_stages", _capture(mm, real))
        assert main(["merge", str(a), str(b), "--method", "magmax"]) == 0
    out = root / "a/smoke"
    return SimpleNamespace(
        root=root,
        a=a,
        b=b,
        zero=zero,
        magmax=mm,
        zero_dir=out / "theta0/seed0",
        magmax_dir=out / "magmax/seed0",
    )


def _model(folder: Path, stage: int) -> dict:
    return torch.load(folder / f"checkpoints/stage{stage:02d}.pt", weights_only=True)["model"]


def test_a_merge_that_keeps_theta0_measures_the_pretrained_row_at_every_stage(runs):
    records = pd.read_csv(runs.zero_dir / "records.csv")
    assert sorted(records.stage.unique()) == [0, 1, 2, 3]
    encoder = [k for k in runs.zero[1] if k.startswith("encoder.")]
    for stage in (2, 3):
        assert all(torch.equal(runs.zero[stage][k], runs.zero[1][k]) for k in encoder)
    row0 = records[records.stage == 0].set_index(["kind", "dataset"]).accuracy
    for stage in (1, 2, 3):  # LP and zero-shot read the encoder only: theta_0's accuracies
        row = records[(records.stage == stage) & records.kind.isin(["lp", "zs"])]
        assert len(row) > 0
        for r in row.itertuples():
            assert r.accuracy == row0[(r.kind, r.dataset)], (stage, r.kind, r.dataset)


def test_magmax_stage_t_is_theta0_plus_half_the_largest_task_vector_of_stages_1_to_t(runs):
    theta0 = {k: v.numpy() for k, v in runs.zero[1].items() if k.startswith("encoder.")}
    floats = [k for k in theta0 if np.issubdtype(theta0[k].dtype, np.floating)]
    for stage in (1, 2, 3):
        models = [_model(f, s) for s in range(1, stage + 1) for f in (runs.a, runs.b)]
        merged = runs.magmax[stage]
        for key in floats:
            taus = np.stack([m[key].numpy() - theta0[key] for m in models])
            last = len(taus) - 1 - np.abs(taus)[::-1].argmax(0)  # the later one on ties
            pick = np.take_along_axis(taus, last[None], 0)[0]
            np.testing.assert_allclose(
                merged[key].numpy(),
                theta0[key] + 0.5 * pick,
                atol=1e-6,
                err_msg=f"{key} stage {stage}",
            )
        heads = [k for k in merged if k.startswith("heads.")]
        assert heads
        for key in heads:  # the runs' stage-t heads, their mean
            want = (_model(runs.a, stage)[key].double() + _model(runs.b, stage)[key].double()) / 2
            assert torch.allclose(merged[key].double(), want, atol=1e-6), key


def test_the_merged_run_has_every_row_its_settings_and_the_report_reads_it(runs):
    records = pd.read_csv(runs.magmax_dir / "records.csv")
    assert sorted(records.stage.unique()) == [0, 1, 2, 3]
    run_a = pd.read_csv(runs.a / "records.csv")
    assert records[records.stage == 0][KEYS].equals(run_a[run_a.stage == 0][KEYS])
    assert set(records.kind) == set(run_a.kind) and set(records.strategy) == {"magmax"}
    merge = json.loads((runs.magmax_dir / "config.json").read_text())["merge"]
    assert merge["method"] == "magmax" and merge["stages"] == [0, 1, 2, 3]
    assert [(s["stage"], s["task_vectors"], s["lambda"]) for s in merge["per_stage"]] == [
        (1, 2, 0.5),
        (2, 4, 0.5),
        (3, 6, 0.5),
    ]
    assert [r["folder"] for r in merge["runs"]] == [str(runs.a), str(runs.b)]
    lp = json.loads((runs.magmax_dir / "metrics.json").read_text())["lp"]
    assert math.isfinite(lp["final_avg_acc"]) and math.isfinite(lp["forgetting"])
    assert main(["report", str(runs.root / "a")]) == 0
    table = pd.read_csv(runs.root / "a/report/runs.csv")
    assert {"ft", "magmax", "theta0"} <= set(table.strategy)


def _other_sequence(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["sequence_spec"] = {**config["sequence_spec"], "name": "other"}
    (folder / "config.json").write_text(json.dumps(config))


BAD = {
    "unknown-method": ([], ["--method", "dare"], "--method must be one of"),
    "k-without-ties": ([], ["--method", "magmax", "--k", "10"], "--k is TIES'"),
    "lam-with-lines": ([], ["--method", "lines", "--lam", "1"], "--lam is one scale"),
    "other-sequence": (_other_sequence, ["--method", "ties"], "is a run of sequence 'other'"),
    "last-checkpoint-only": (
        lambda f: (f / "checkpoints/stage01.pt").unlink(),
        ["--method", "task_arithmetic"],
        "--keep-checkpoints all",
    ),
    "a-merged-run": (
        lambda f: (f / "config.json").write_text(
            json.dumps({**json.loads((f / "config.json").read_text()), "merge": {}})
        ),
        ["--method", "magmax"],
        "is a merge, not a fine-tuning run",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_refused_with_one_line(runs, tmp_path, capsys, case):
    spoil, options, message = BAD[case]
    bad = tmp_path / "bad/smoke/ft/seed0"
    shutil.copytree(runs.b, bad)
    if spoil:
        spoil(bad)
    capsys.readouterr()
    code = main(["merge", str(runs.a), str(bad), *options, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert not (tmp_path / "out").exists()  # refused before anything was written
