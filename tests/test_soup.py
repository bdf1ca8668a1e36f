"""Model soups (benchmark/soup/): the averaging and the greedy selection on hand numbers, then
``run_benchmark.py soup`` on tiny smoke runs: a per-stage uniform soup of two identical runs is
the run, a greedy soup of runs that kept only their last checkpoint is measured at the final
stage, the report includes soups, and ingredients that cannot be averaged are refused."""

import hashlib
import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from benchmark.soup.average import StateMismatch, average_state_dicts
from benchmark.soup.evaluate import run_config_from_json
from benchmark.soup.greedy import greedy_select
from run_benchmark import main

KEYS = ["stage", "stage_task", "dataset", "role", "kind", "accuracy"]
# Small and fast: one epoch on 96 images per task, probes on 160 train / 160 test images.
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
]


# -- averaging, by hand -------------------------------------------------------------------------
def test_uniform_average_of_state_dicts_is_the_hand_mean():
    def state(w, b, h, n):
        return {
            "w": torch.tensor(w),
            "b": torch.tensor(b),
            "h": torch.tensor(h, dtype=torch.bfloat16),
            "n": torch.tensor(n),
        }

    states = [
        state([[1.0, 2.0], [3.0, 4.0]], [0.5], [1.0, 2.0], 3),
        state([[3.0, 2.0], [1.0, 0.0]], [1.5], [2.0, 2.0], 7),
        state([[2.0, 5.0], [-1.0, 2.0]], [4.0], [3.0, 5.0], 9),
    ]
    mean = average_state_dicts(iter(states))  # read one at a time
    assert torch.equal(mean["w"], torch.tensor([[2.0, 3.0], [1.0, 2.0]]))
    assert torch.equal(mean["b"], torch.tensor([2.0]))
    assert mean["h"].dtype == torch.bfloat16
    assert torch.equal(mean["h"], torch.tensor([2.0, 3.0], dtype=torch.bfloat16))
    # integer buffers (BatchNorm num_batches_tracked) are the first state's, not a mean
    assert mean["n"].dtype == torch.int64 and int(mean["n"]) == 3


def test_the_mean_of_identical_tensors_is_exactly_that_tensor():
    x = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    for n in (2, 3, 7):  # float64 sums: no float32 rounding (0.1 + 0.1 + 0.1 != 0.3)
        assert torch.equal(average_state_dicts([{"x": x}] * n)["x"], x)


def test_state_dicts_that_cannot_be_averaged_are_refused():
    a = {"w": torch.zeros(2), "heads.0.scale": torch.tensor(100.0)}
    with pytest.raises(StateMismatch, match="missing") as info:
        average_state_dicts([a, a, {"w": torch.zeros(2)}])
    assert info.value.index == 2
    with pytest.raises(StateMismatch, match="shape|\\(3,\\)"):
        average_state_dicts([a, {**a, "w": torch.zeros(3)}])
    # legacy state dicts (heads with a separate scale): zero-shot heads and LP-initialised ones
    with pytest.raises(StateMismatch, match="heads.0.scale differs"):
        average_state_dicts([a, {**a, "heads.0.scale": torch.tensor(1.0)}])
    with pytest.raises(ValueError):
        average_state_dicts([])


# -- greedy selection, by hand ------------------------------------------------------------------
def test_greedy_keeps_an_ingredient_only_when_validation_accuracy_strictly_rises():
    individual = [70.0, 80.0, 75.0, 60.0, 75.0]
    soups = {
        (1, 2): 81.0,  # above 80: kept
        (1, 2, 4): 81.0,  # equal, not higher: left out
        (1, 2, 0): 83.0,  # kept
        (1, 2, 0, 3): 82.5,
    }  # lower: left out
    asked = []

    def accuracy(candidate):
        asked.append(candidate)
        return soups[candidate]

    greedy = greedy_select(individual, accuracy)
    assert greedy.order == (1, 2, 4, 0, 3)  # decreasing accuracy; the tie 2/4 as given
    assert greedy.kept == (1, 2, 0) and greedy.accuracy == 83.0
    assert asked == [(1, 2), (1, 2, 4), (1, 2, 0), (1, 2, 0, 3)]
    assert [s.kept for s in greedy.steps] == [True, False, True, False]
    assert [s.accuracy for s in greedy.steps] == [81.0, 81.0, 83.0, 82.5]
    assert greedy.individual == tuple(individual)


def test_greedy_soup_that_never_improves_is_the_best_ingredient():
    greedy = greedy_select([50.0, 60.0, 40.0], lambda c: 59.9)
    assert greedy.kept == (1,) and greedy.accuracy == 60.0
    assert not any(s.kept for s in greedy.steps)


def test_run_config_round_trips_through_config_json():
    from benchmark.config import build_run_config
    from tasks.sequences import SMOKE_DEFAULTS

    cfg = build_run_config(SMOKE_DEFAULTS, {"epochs": 1, "probe_max_train_samples": 160})
    config = json.loads(json.dumps(cfg.to_dict(), default=str))
    config.update(strategy_config={}, initial_weights="0" * 64, some_future_key=1)
    assert run_config_from_json(config) == cfg
    assert run_config_from_json(config, device="cpu").device == "cpu"


def test_soup_help_explains_every_option():
    from benchmark.commands.soup import build_parser as build_soup_parser

    text = " ".join(build_soup_parser().format_help().split())  # as words: any terminal width
    for word in (
        "RUN_DIR",
        "--mode",
        "uniform",
        "greedy",
        "--out",
        "--seed",
        "--device",
        "--data-root",
        "--eval-batch-size",
        "--force",
        "--debug",
        "validation",
        "--keep-checkpoints all",
        "2203.05482",
        "exit 2",
    ):
        assert word in text, word


# -- run_benchmark.py soup on smoke runs --------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """a: keeps every stage's checkpoint; twin: a copy of a (the same run with another --out);
    b: another learning rate, the last checkpoint only. All start from seed 0's random weights
    (smoke's model is random, so other seeds are other initial weights)."""
    root = tmp_path_factory.mktemp("soup")
    assert main([*SMOKE, "--out", str(root / "a"), "--keep-checkpoints", "all"]) == 0
    assert main([*SMOKE, "--out", str(root / "b"), "--lr", "3e-4"]) == 0
    a, b = root / "a/smoke/ft/seed0", root / "b/smoke/ft/seed0"
    twin = root / "twin/smoke/ft/seed0"
    shutil.copytree(a, twin)
    return SimpleNamespace(root=root, a=a, b=b, twin=twin)


@pytest.fixture(scope="module")
def soups(runs):
    """A uniform soup of a and its twin, a greedy soup of a and b (written next to a)."""
    assert main(["soup", str(runs.a), str(runs.twin), "--mode", "uniform"]) == 0
    assert main(["soup", str(runs.a), str(runs.b), "--mode", "greedy"]) == 0
    out = runs.root / "a/smoke"
    return SimpleNamespace(uniform=out / "soup-uniform/seed0", greedy=out / "soup-greedy/seed0")


def records(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "records.csv")


def test_uniform_soup_of_two_identical_runs_is_the_run_stage_by_stage(runs, soups):
    soup, run = records(soups.uniform), records(runs.a)
    assert soup[KEYS].equals(run[KEYS])
    assert set(soup.strategy) == {"soup-uniform"} and set(soup.seed) == {0}
    for name in ("lp_matrix.csv", "zs_matrix.csv", "head_matrix.csv"):
        assert (soups.uniform / name).read_bytes() == (runs.a / name).read_bytes(), name
    metrics = json.loads((soups.uniform / "metrics.json").read_text())
    assert metrics["lp"] == json.loads((runs.a / "metrics.json").read_text())["lp"]
    config = json.loads((soups.uniform / "config.json").read_text())
    soup_cfg = config["soup"]
    assert soup_cfg["mode"] == "uniform" and soup_cfg["per_stage"] is True
    assert soup_cfg["stages"] == [0, 1, 2, 3]
    assert [i["folder"] for i in soup_cfg["ingredients"]] == [str(runs.a), str(runs.twin)]
    assert all(
        i["kept"] and i["strategy"] == "ft" and i["seed"] == 0 for i in soup_cfg["ingredients"]
    )
    assert config["sequence_spec"]["tasks"] == ["synth_a", "synth_b", "synth_c"]


def test_greedy_soup_of_runs_with_the_last_checkpoint_only_is_measured_at_the_final_stage(
    runs, soups
):
    soup = records(soups.greedy)
    assert sorted(soup.stage.unique()) == [0, 3]  # rows 1..T-1 absent
    run_a = records(runs.a)
    assert soup[soup.stage == 0][KEYS].equals(run_a[run_a.stage == 0][KEYS])
    lp = json.loads((soups.greedy / "metrics.json").read_text())["lp"]
    assert math.isfinite(lp["final_avg_acc"]) and math.isfinite(lp["delta_lp_controls"])
    assert lp["forgetting"] is None and lp["bwt"] is None  # they read rows 1..T-1

    g = json.loads((soups.greedy / "config.json").read_text())["soup"]
    assert g["per_stage"] is False and g["stages"] == [0, 3]
    val = {i["folder"]: i["validation_accuracy"] for i in g["ingredients"]}
    assert set(val) == {str(runs.a), str(runs.b)} and all(0 <= v <= 100 for v in val.values())
    order = g["greedy"]["order"]
    assert order == sorted(val, key=lambda f: -val[f])  # best first
    (step,) = g["greedy"]["steps"]
    assert step["ingredients"] == order
    assert step["kept"] == (step["validation_accuracy"] > val[order[0]])
    kept = [i["folder"] for i in g["ingredients"] if i["kept"]]
    assert kept == (order if step["kept"] else order[:1])
    if not step["kept"]:  # the soup is the best run alone: its final row is that run's
        best = records(Path(order[0]))
        final_soup = soup[soup.stage == 3][KEYS].reset_index(drop=True)
        assert final_soup.equals(best[best.stage == 3][KEYS].reset_index(drop=True))


def test_report_over_the_folder_includes_both_soups(runs, soups):
    assert main(["report", str(runs.root / "a")]) == 0
    table = pd.read_csv(runs.root / "a/report/runs.csv")
    assert set(table.strategy) == {"ft", "soup-uniform", "soup-greedy"}
    greedy = table[table.strategy == "soup-greedy"].iloc[0]
    assert math.isfinite(greedy.final_avg_acc) and math.isnan(greedy.forgetting)
    assert "soup-greedy" in (runs.root / "a/report/report.md").read_text()


def test_an_existing_soup_is_not_replaced_without_force(runs, soups, capsys):
    capsys.readouterr()
    assert main(["soup", str(runs.a), str(runs.twin), "--mode", "uniform"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists; --force" in err


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    for key, value in changes.items():
        data[key] = value
    path.write_text(json.dumps(data))


def _other_sequence(folder: Path) -> None:
    spec = json.loads((folder / "config.json").read_text())["sequence_spec"]
    other = {**spec, "name": "other", "tasks": ["synth_b", "synth_a", "synth_c"]}
    _edit_json(folder / "config.json", sequence_spec=other)


def _lp_heads(folder: Path) -> None:
    """A run whose heads were LP-initialised (config.json, as ``--head-init lp`` records it)."""
    _edit_json(folder / "config.json", head_init="lp")


def _legacy_heads(folder: Path) -> None:
    """A final checkpoint written before the logit scale was folded into the head weights (a
    ``scale`` entry beside each head's W), its index made to match."""
    index = json.loads((folder / "checkpoint.json").read_text())
    path = folder / index["file"]
    state = torch.load(path, weights_only=True)
    state["model"]["heads.0.scale"] = torch.tensor(1.0)
    torch.save(state, path)
    data = path.read_bytes()
    _edit_json(folder / "checkpoint.json", bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


BAD = {
    "other-sequence": (_other_sequence, "is a run of sequence 'other'"),
    "other-initial-weights": (
        lambda f: _edit_json(f / "config.json", initial_weights="0" * 64),
        "other initial weights",
    ),
    "unfinished": (lambda f: _edit_json(f / "checkpoint.json", stage=2), "is not finished"),
    "missing-checkpoint": (lambda f: (f / "checkpoints/stage03.pt").unlink(), "cannot be read"),
    "no-checkpoint-index": (lambda f: (f / "checkpoint.json").unlink(), "no readable"),
    "heads-of-another-kind": (_lp_heads, "are LP-initialised, those of"),
    "heads-of-an-earlier-version": (_legacy_heads, "written by an earlier cfbench"),
    "other-activation": (
        lambda f: _edit_json(f / "config.json", quick_gelu=True),
        "was built with QuickGELU",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_ingredients_that_cannot_join_a_soup_are_refused_with_one_line(
    runs, tmp_path, capsys, case
):
    spoil, message = BAD[case]
    bad = tmp_path / "bad/smoke/ft/seed0"
    shutil.copytree(runs.b, bad)
    spoil(bad)
    capsys.readouterr()
    assert (
        main(["soup", str(runs.a), str(bad), "--mode", "uniform", "--out", str(tmp_path / "out")])
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err and str(bad) in err, err
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize("given, message", [(["a"], "at least 2"), (["a", "a"], "given twice")])
def test_fewer_than_two_runs_are_refused(runs, tmp_path, capsys, given, message):
    capsys.readouterr()
    folders = [str(getattr(runs, g)) for g in given]
    assert main(["soup", *folders, "--mode", "greedy", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
