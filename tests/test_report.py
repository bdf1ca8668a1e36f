"""Report: metrics aggregated over seeds, tables and figures regenerated from saved run folders."""

import math
import shutil

import numpy as np
import pandas as pd
import pytest

from benchmark.errors import CFBenchError
from benchmark.metrics import mtil_avg, mtil_last, mtil_transfer, table_values
from benchmark.report.aggregate import aggregate_seeds, least_forgetting, mean_std
from benchmark.report.build import MARKER, main_report
from benchmark.report.runs import discover_runs, per_run_table
from tests.helpers.report_runs import LP, LP_FT0, ZS, write_run

# ----------------------------------------------------------------------------- pure functions


def test_mtil_metrics_on_hand_numbers():
    # Transfer: task b (j = 2) after task a: 22; task c (j = 3) after a and b: (33 + 36) / 2 = 34.5.
    assert mtil_transfer(ZS, 3) == pytest.approx((22.0 + 34.5) / 2)  # 28.25
    # The pretrained row is excluded: including it would give ((20+22)/2 + (30+33+36)/3)/2 = 27.
    assert mtil_transfer(ZS, 3) != pytest.approx(27.0)
    # Avg: rows 1..3 x task columns a..c.
    assert mtil_avg(ZS, 3) == pytest.approx((50 + 22 + 33 + 45 + 60 + 36 + 40 + 55 + 70) / 9)
    assert mtil_last(ZS, 3) == pytest.approx((40 + 55 + 70) / 3)
    assert math.isnan(mtil_transfer(ZS[:2, :2], 1))  # one task: nothing transfers
    with pytest.raises(ValueError):
        mtil_avg(ZS, 4)


def test_table_values_without_a_zero_shot_matrix_leave_mtil_nan():
    values = table_values({"lp": ZS}, 3)
    assert values["final_avg_acc"] == pytest.approx((40 + 55 + 70) / 3)
    assert values["delta_lp_controls"] == pytest.approx(3.0)
    assert all(math.isnan(values[k]) for k in ("mtil_transfer", "mtil_avg", "mtil_last"))
    assert table_values({"lp": ZS, "zs": ZS}, 3)["mtil_transfer"] == pytest.approx(28.25)


def test_mean_std_is_the_sample_std_and_nan_for_one_seed():
    mean, std = mean_std(pd.DataFrame({"a": [1.0, 2.0, 4.0], "b": [5.0, 5.0, float("nan")]}))
    # a: mean 7/3; squared deviations 16/9 + 1/9 + 25/9 = 42/9; / (n - 1 = 2) = 7/3
    assert mean["a"] == pytest.approx(7 / 3)
    assert std["a"] == pytest.approx(math.sqrt(7 / 3))  # 1.5275, ddof = 1
    assert math.isnan(mean["b"]) and math.isnan(std["b"])  # NaN propagates, not skipped
    mean, std = mean_std(pd.DataFrame({"a": [5.0]}))
    assert mean["a"] == 5.0 and math.isnan(std["a"])  # one seed: undefined, not 0


def test_aggregate_seeds_on_hand_numbers():
    per_run = pd.DataFrame(
        {
            "sequence": ["s"] * 5,
            "strategy": ["ft", "ft", "ft", "ldifs", "ldifs"],
            "seed": [2, 0, 1, 0, 1],
            "final_avg_acc": [70.0, 74.0, 72.0, 80.0, 81.0],
            "forgetting": [3.0, 1.0, 2.0, 0.5, 0.5],
        }
    )
    table = aggregate_seeds(per_run, ["final_avg_acc", "forgetting"]).set_index("strategy")
    assert table.loc["ft", "n_seeds"] == 3 and table.loc["ft", "seeds"] == "0 1 2"
    assert table.loc["ft", "final_avg_acc_mean"] == pytest.approx(72.0)
    assert table.loc["ft", "final_avg_acc_std"] == pytest.approx(2.0)  # sqrt((4 + 4 + 0) / 2)
    assert table.loc["ft", "forgetting_std"] == pytest.approx(1.0)
    assert table.loc["ldifs", "final_avg_acc_mean"] == pytest.approx(80.5)
    assert table.loc["ldifs", "final_avg_acc_std"] == pytest.approx(math.sqrt(0.5))
    assert table.loc["ldifs", "forgetting_std"] == pytest.approx(0.0)


def test_least_forgetting_breaks_ties_by_forgetting_and_falls_back_to_past_tasks():
    table = pd.DataFrame(
        {
            "strategy": ["ft", "l2sp", "ldifs"],
            "delta_lp_controls_mean": [-5.0, -1.001, -1.0],  # equal at 2 decimals
            "delta_lp_past_tasks_mean": [1.0, 2.0, 3.0],
            "forgetting_mean": [4.0, 1.0, 2.0],
        }
    )
    assert least_forgetting(table) == (["l2sp"], "delta_lp_controls_mean")
    table["delta_lp_controls_mean"] = float("nan")
    assert least_forgetting(table) == (["ldifs"], "delta_lp_past_tasks_mean")


# ----------------------------------------------------------------------------- run folders


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Two strategies x two seeds of the smoke sequence, and the report written on them."""
    out = tmp_path_factory.mktemp("results")
    for (strategy, seed), lp in LP.items():
        write_run(out, strategy, seed, lp, zs=ZS + seed, head=lp - 5.0)
    return out, main_report(out)


# Every metric of every run, by hand from the matrices above (T = 3 tasks a, b, c; task j is
# trained at stage j; one control). The ldifs matrices written out:
#   ldifs seed 0                     ldifs seed 1
#   [60, 50, 40, 70]                 [60, 50, 40, 70]
#   [80, 52, 41, 68]                 [80, 52, 41, 69]
#   [75, 78, 42, 68]                 [76, 78, 42, 69]
#   [73, 73, 75, 68]                 [75, 74, 75, 69]
# final avg acc = mean of the last row over a, b, c
#   ft0 (70 + 72 + 75) / 3 = 217/3   ft1 (72 + 74 + 79) / 3 = 225/3
#   ld0 (73 + 73 + 75) / 3 = 221/3   ld1 (75 + 74 + 75) / 3 = 224/3
# delta-LP controls = R[3, ctrl] - R[0, ctrl]
#   ft0 62 - 70 = -8   ft1 63 - 72 = -9   ld0 68 - 70 = -2   ld1 69 - 70 = -1
# delta-LP past tasks = mean over a, b of R[3, j] - R[0, j]
#   ft0 (10 + 22) / 2 = 16   ft1 (12 + 22) / 2 = 17   ld0 (13 + 23) / 2 = 18   ld1 (15 + 24) / 2
# forgetting: a = max(R[1, a], R[2, a]) - R[3, a], b = R[2, b] - R[3, b], then their mean
#   ft0 (80 - 70, 78 - 72) = (10, 6) -> 8     ft1 (80 - 72, 80 - 74) = (8, 6) -> 7
#   ld0 (80 - 73, 78 - 73) = (7, 5) -> 6      ld1 (80 - 75, 78 - 74) = (5, 4) -> 4.5
# BWT: a = R[3, a] - R[1, a], b = R[3, b] - R[2, b], then their mean
#   ft0 (-10, -6) -> -8   ft1 (-8, -6) -> -7   ld0 (-7, -5) -> -6   ld1 (-5, -4) -> -4.5
# MTIL on the zero-shot matrix (ZS for seed 0, ZS + 1 for seed 1, the same for both strategies):
#   transfer: b after a: 22; c after a and b: (33 + 36) / 2 = 34.5; (22 + 34.5) / 2 = 28.25
#   avg: (50 + 22 + 33 + 45 + 60 + 36 + 40 + 55 + 70) / 9 = 411/9;  last: (40 + 55 + 70) / 3 = 55
PER_SEED = {
    "ft": {
        "final_avg_acc": (217 / 3, 225 / 3),
        "delta_lp_controls": (-8.0, -9.0),
        "delta_lp_past_tasks": (16.0, 17.0),
        "forgetting": (8.0, 7.0),
        "bwt": (-8.0, -7.0),
        "mtil_transfer": (28.25, 29.25),
        "mtil_avg": (411 / 9, 420 / 9),
        "mtil_last": (55.0, 56.0),
    },
    "ldifs": {
        "final_avg_acc": (221 / 3, 224 / 3),
        "delta_lp_controls": (-2.0, -1.0),
        "delta_lp_past_tasks": (18.0, 19.5),
        "forgetting": (6.0, 4.5),
        "bwt": (-6.0, -4.5),
        "mtil_transfer": (28.25, 29.25),
        "mtil_avg": (411 / 9, 420 / 9),
        "mtil_last": (55.0, 56.0),
    },
}
# Mean and sample std (ddof = 1) over the two seeds: for two values a, b the mean is (a + b) / 2
# and the std sqrt(2 * ((a - b) / 2)^2 / 1) = |a - b| / sqrt(2): a difference of 1 gives 0.7071,
# of 1.5 gives 1.0607, of 8/3 (ft's final acc, 72.33 vs 75) gives 1.8856.
MTIL_MEAN_STD = {
    "mtil_transfer": (28.75, 0.7071),
    "mtil_avg": (46.1667, 0.7071),
    "mtil_last": (55.5, 0.7071),
}
MEAN_STD = {
    "ft": {
        "final_avg_acc": (73.6667, 1.8856),  # 442 / 6
        "delta_lp_controls": (-8.5, 0.7071),
        "delta_lp_past_tasks": (16.5, 0.7071),
        "forgetting": (7.5, 0.7071),
        "bwt": (-7.5, 0.7071),
        **MTIL_MEAN_STD,
    },
    "ldifs": {
        "final_avg_acc": (74.1667, 0.7071),  # 445 / 6
        "delta_lp_controls": (-1.5, 0.7071),
        "delta_lp_past_tasks": (18.75, 1.0607),
        "forgetting": (5.25, 1.0607),
        "bwt": (-5.25, 1.0607),
        **MTIL_MEAN_STD,
    },
}
# The same, as the Markdown table shows them (2 decimals); the best mean of each column in bold:
# ldifs on every LP column (forgetting: lower is better), both strategies on the tied MTIL ones.
MARKDOWN_CELLS = {
    "ft": [
        "73.67 ± 1.89",
        "-8.50 ± 0.71",
        "16.50 ± 0.71",
        "7.50 ± 0.71",
        "-7.50 ± 0.71",
        "**28.75 ± 0.71**",
        "**46.17 ± 0.71**",
        "**55.50 ± 0.71**",
    ],
    "ldifs": [
        "**74.17 ± 0.71**",
        "**-1.50 ± 0.71**",
        "**18.75 ± 1.06**",
        "**5.25 ± 1.06**",
        "**-5.25 ± 1.06**",
        "**28.75 ± 0.71**",
        "**46.17 ± 0.71**",
        "**55.50 ± 0.71**",
    ],
}


def test_report_writes_every_file(results):
    out, report = results
    assert report == out / "report"
    names = [
        "report.md",
        "comparison.csv",
        "comparison.md",
        "comparison.tex",
        "comparison_columns.csv",
        "runs.csv",
        "smoke/delta_lp_bars.png",
        "smoke/curves_lp.png",
        "smoke/curves_zs.png",
        "smoke/curves_head.png",
    ]
    for strategy, seed in LP:
        for kind in ("lp", "zs", "head", "delta_lp"):
            names.append(f"smoke/{strategy}/seed{seed}/{kind}_heatmap.png")
    for name in names:
        assert (report / name).is_file(), name
        assert (report / name).stat().st_size > 0, name
    md = (report / "report.md").read_text()
    for name in names:
        if name.endswith(".png"):
            assert f"]({name})" in md, name  # embedded with a relative path
    assert (report / "comparison.md").read_text() in md


def test_runs_csv_holds_every_metric_of_every_run(results):
    _, report = results
    runs = pd.read_csv(report / "runs.csv")
    assert [(r.strategy, r.seed) for r in runs.itertuples()] == list(LP)
    for (strategy, seed), row in zip(LP, runs.to_dict("records"), strict=True):
        for key, values in PER_SEED[strategy].items():
            assert row[key] == pytest.approx(values[seed], abs=1e-4), (strategy, seed, key)


def test_comparison_table_is_mean_and_sample_std_over_seeds(results):
    _, report = results
    table = pd.read_csv(report / "comparison.csv").set_index("strategy")
    assert list(table.index) == ["ft", "ldifs"]
    assert (table["n_seeds"] == 2).all() and (table["seeds"] == "0 1").all()
    for strategy, expected in MEAN_STD.items():
        for key, (mean, std) in expected.items():
            assert table.loc[strategy, f"{key}_mean"] == pytest.approx(mean, abs=1e-4), key
            assert table.loc[strategy, f"{key}_std"] == pytest.approx(std, abs=1e-4), key
    assert set(table.columns) == {"sequence", "n_seeds", "seeds"} | {
        f"{key}_{s}" for key in MEAN_STD["ft"] for s in ("mean", "std")
    }


def test_markdown_table_shows_mean_and_std_and_the_best_in_bold(results):
    _, report = results
    lines = (report / "comparison.md").read_text().splitlines()
    for strategy, cells in MARKDOWN_CELLS.items():
        (row,) = [line for line in lines if line.startswith(f"| `smoke` | `{strategy}` |")]
        cells_shown = [c.strip() for c in row.strip("|").split("|")]
        assert cells_shown == ["`smoke`", f"`{strategy}`", "0 1 (n=2)", *cells]


def test_every_column_names_its_definition(results):
    _, report = results
    md = (report / "comparison.md").read_text()
    tex = (report / "comparison.tex").read_text()
    legend = pd.read_csv(report / "comparison_columns.csv").set_index("column")["definition"]
    for label, definition in [
        ("Final acc", "mean_j R[T, j] over sequence tasks"),
        ("ΔLP controls", "over control datasets"),
        ("ΔLP past tasks", "over tasks 1..T-1"),
        ("Forgetting", "Chaudhry"),
        ("BWT", "Lopez-Paz"),
        ("Transfer", "mean over tasks j = 2..T of mean_{t = 1..j-1} ZS[t, j]"),
        ("Avg", "stages t = 1..T and tasks j = 1..T"),
        ("Last", "mean_j ZS[T, j]"),
    ]:
        assert label in md.splitlines()[0]  # the header
        assert any(
            line.startswith(f"- **{label}") and definition in line for line in md.splitlines()
        )
        assert label.replace("Δ", r"$\Delta$") in tex
    caption = next(line for line in tex.splitlines() if line.startswith(r"\caption"))
    for needle in ("Chaudhry", "Lopez-Paz", "ZSCL", r"\mathrm{ddof}=1", r"R_{T,c}-R_{0,c}"):
        assert needle in caption
    assert "ddof = 1" in md and "sample" in md
    assert "ddof=1" in legend["final_avg_acc_std"]
    assert "ldifs" in tex and r"\textbf{" in tex


def test_report_names_the_strategy_that_forgets_least(results):
    _, report = results
    md = (report / "report.md").read_text()
    assert "On `smoke`, `ldifs` forgets least: highest mean ΔLP on controls (-1.50 points" in md


def test_deleting_a_run_changes_the_table_on_a_copied_folder(results, tmp_path):
    out, _ = results
    copy = tmp_path / "copied"
    shutil.copytree(out, copy)  # another machine: only the files travel
    before = pd.read_csv(copy / "report" / "comparison.csv").set_index("strategy")
    shutil.rmtree(copy / "smoke" / "ldifs" / "seed1")
    report = main_report(copy)
    after = pd.read_csv(report / "comparison.csv").set_index("strategy")
    assert after.loc["ldifs", "n_seeds"] == 1 and after.loc["ldifs", "seeds"] == "0"
    assert math.isnan(after.loc["ldifs", "final_avg_acc_std"])  # one seed: no sample std
    # the one seed left: (73 + 73 + 75) / 3 = 221/3 (PER_SEED above)
    assert after.loc["ldifs", "final_avg_acc_mean"] == pytest.approx(73.6667, abs=1e-4)
    assert after.loc["ldifs", "final_avg_acc_mean"] != before.loc["ldifs", "final_avg_acc_mean"]
    pd.testing.assert_series_equal(after.loc["ft"], before.loc["ft"])  # untouched
    assert not (report / "smoke" / "ldifs" / "seed1").exists()  # stale figures are gone
    assert "seed1/lp_heatmap" not in (report / "report.md").read_text().split("`ldifs`, seed 0")[1]
    runs = pd.read_csv(report / "runs.csv")
    assert len(runs) == 3


def test_no_runs_is_a_one_line_error(tmp_path):
    with pytest.raises(CFBenchError, match="no runs under") as error:
        main_report(tmp_path)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "report").exists()  # nothing half-written
    with pytest.raises(CFBenchError, match="does not exist"):
        main_report(tmp_path / "nosuch")


def test_a_foreign_report_folder_is_not_overwritten(tmp_path):
    write_run(tmp_path, "ft", 0, LP_FT0)
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "mine.txt").write_text("keep")
    with pytest.raises(CFBenchError, match="not written by"):
        main_report(tmp_path)
    assert (tmp_path / "report" / "mine.txt").read_text() == "keep"
    assert not (tmp_path / "report" / MARKER).exists()


def test_incomplete_and_duplicate_runs_are_left_out_of_the_table(tmp_path):
    write_run(tmp_path, "ft", 0, LP_FT0)
    write_run(tmp_path, "ft", 1, LP_FT0, stages=2)  # interrupted after task a
    dup = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "smoke", dup / "smoke")
    runs, notes = discover_runs(tmp_path)
    assert [(r.strategy, r.seed) for r in runs] == [("ft", 0), ("ft", 1)]
    assert [r.complete for r in runs] == [True, False]
    assert len(notes) == 2 and all("same sequence, strategy and seed" in n for n in notes)
    table = per_run_table(runs)
    assert list(table["seed"]) == [0]
    assert math.isnan(table.loc[0, "mtil_avg"])  # no zero-shot matrix in these runs


def test_tensorboard_logs_scalars_per_stage_and_heatmaps(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from benchmark.report.tensorboard import log_run

    folder = write_run(tmp_path, "ft", 0, LP_FT0, zs=ZS, head=LP_FT0 - 5)
    log_dir = log_run(folder)
    assert log_dir == folder / "tensorboard"
    events = EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("lp/b")] == [
        (0, 50.0),
        (1, 52.0),
        (2, 78.0),
        (3, 72.0),
    ]
    assert [e.value for e in events.Scalars("delta_lp/ctrl")] == [-4.0, -6.0, -8.0]
    assert events.Scalars("summary/mtil_transfer")[0].value == pytest.approx(28.25)
    assert set(events.Tags()["images"]) == {
        "heatmaps/lp",
        "heatmaps/zs",
        "heatmaps/head",
        "heatmaps/delta_lp",
    }
    # the report does not mistake the event folder for a run
    runs, notes = discover_runs(tmp_path)
    assert len(runs) == 1 and not notes


def test_report_on_a_real_smoke_run_matches_its_metrics_json(tmp_path):
    """End to end: the runner's own files (one short real run) are what the report reads."""
    import json

    from run_benchmark import main

    assert main(["--sequence", "smoke", "--epochs", "1", "--out", str(tmp_path)]) == 0
    report = main_report(tmp_path)
    table = pd.read_csv(report / "comparison.csv").set_index("strategy")
    saved = json.loads((tmp_path / "smoke" / "ft" / "seed0" / "metrics.json").read_text())["lp"]
    for key in ("final_avg_acc", "delta_lp_controls", "delta_lp_past_tasks", "forgetting", "bwt"):
        assert table.loc["ft", f"{key}_mean"] == pytest.approx(saved[key], abs=1e-3), key
    assert np.isfinite(table.loc["ft", "mtil_avg_mean"])  # the tiny CLIP model has zero-shot heads
    for name in ("lp", "zs", "head", "delta_lp"):
        assert (report / "smoke" / "ft" / "seed0" / f"{name}_heatmap.png").is_file()
