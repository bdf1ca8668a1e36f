"""benchmark/report/seeds.py: the compact mean ± std table, the binomial SE next to delta-LP, and
the paired differences beyond 2 std, against numbers worked by hand."""

import math

import pytest

from benchmark.report.runs import discover_runs
from benchmark.report.seeds import paired_differences, per_seed, seeds_section
from benchmark.results import RunResults, run_dir

TASKS, CONTROLS = ["a", "b"], ["c1", "c2"]
N = {"a": 100, "b": 100, "c1": 400, "c2": 100}


def write(out, name, seed, final):
    """A complete 2-task run: row 0 is 50 everywhere, rows 1 and 2 are ``final`` (a, b, c1, c2)."""
    folder = run_dir(out, "seq", name, seed)
    results = RunResults(
        folder, {"sequence": "seq", "strategy": name, "seed": seed}, TASKS, CONTROLS
    )
    results.write_config(
        {"sequence_spec": {"name": "seq", "tasks": TASKS, "controls": CONTROLS}, "test_images": N}
    )
    for stage in range(3):
        row = (50.0,) * 4 if stage == 0 else final
        results.append(
            [
                {
                    "stage": stage,
                    "stage_task": "x",
                    "dataset": d,
                    "role": "task" if d in TASKS else "control",
                    "kind": "lp",
                    "accuracy": row[j],
                }
                for j, d in enumerate(TASKS + CONTROLS)
            ]
        )
    results.write()


@pytest.fixture
def runs(tmp_path):
    # ft: controls (c1, c2) deltas -20/-10, -30/-10, -25/-15 -> delta_lp_controls -15, -20, -20
    write(tmp_path, "ft", 0, (80.0, 70.0, 30.0, 40.0))
    write(tmp_path, "ft", 1, (80.0, 70.0, 20.0, 40.0))
    write(tmp_path, "ft", 2, (80.0, 70.0, 25.0, 35.0))
    # ldifs: controls -5/-5, -10/0, -5/-5 -> -5, -5, -5: paired differences +10, +15, +15
    write(tmp_path, "ldifs", 0, (78.0, 70.0, 45.0, 45.0))
    write(tmp_path, "ldifs", 1, (78.0, 72.0, 40.0, 50.0))
    write(tmp_path, "ldifs", 2, (90.0, 60.0, 45.0, 45.0))
    return discover_runs(tmp_path)[0]


def test_per_seed_values_and_standard_error(runs):
    frame = per_seed(runs).set_index(["strategy", "seed"])
    assert frame.loc[("ft", 1), "delta_lp_controls"] == pytest.approx(-20.0)
    assert frame.loc[("ft", 1), "delta:c1"] == pytest.approx(-30.0)
    # SE of the controls' mean delta for ft seed 0: c1 50 -> 30 on 400, c2 50 -> 40 on 100
    se_c1 = 100 * math.sqrt(0.25 / 400 + 0.3 * 0.7 / 400)
    se_c2 = 100 * math.sqrt(0.25 / 100 + 0.4 * 0.6 / 100)
    expected = math.sqrt(se_c1**2 + se_c2**2) / 2
    assert frame.loc[("ft", 0), "delta_lp_controls_se"] == pytest.approx(expected)


def test_paired_differences_by_hand(runs):
    diffs = paired_differences(per_seed(runs)).set_index(["strategy", "key"])
    row = diffs.loc[("ldifs", "delta_lp_controls")]
    # differences 10, 15, 15: mean 13.333, sample std sqrt(((−3.333)^2 + 2 * 1.667^2) / 2)
    assert row["mean"] == pytest.approx(40 / 3)
    assert row["std"] == pytest.approx(math.sqrt(((10 - 40 / 3) ** 2 + 2 * (15 - 40 / 3) ** 2) / 2))
    assert row["exceeds"]  # 13.3 > 2 * 2.89
    acc = diffs.loc[("ldifs", "final_avg_acc")]
    # final acc: ft 75, 75, 75; ldifs 74, 75, 75 -> differences -1, 0, 0
    assert acc["mean"] == pytest.approx(-1 / 3) and not acc["exceeds"]


def test_section_text(runs):
    text = seeds_section(runs)
    lines = text.splitlines()
    assert lines[0].startswith("| strategy | seeds | Final acc | ΔLP controls | SE | ΔLP c1 |")
    ft = next(line for line in lines if line.startswith("| `ft` "))
    # ΔLP controls -15, -20, -20: mean -18.33, sample std 2.89
    assert "| -18.33 ± 2.89 |" in ft and ft.split(" | ")[1] == "3"
    assert "- ΔLP controls: `ldifs` +13.33 ± 2.89" in text
    assert "- Final acc: none" in text
