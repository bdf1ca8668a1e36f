from pathlib import Path

import numpy as np
import pytest

from benchmark import metrics

# 3 tasks + 1 control; rows: stage 0 (pretrained) .. 3.
R = np.array(
    [
        [50.0, 40.0, 30.0, 80.0],
        [90.0, 45.0, 35.0, 70.0],
        [70.0, 95.0, 20.0, 60.0],
        [60.0, 85.0, 99.0, 75.0],
    ]
)


def test_final_average_accuracy():
    assert metrics.final_average_accuracy(R, 3) == pytest.approx((60 + 85 + 99) / 3)


def test_delta_lp_per_dataset_and_averages():
    np.testing.assert_allclose(metrics.delta_lp(R, 3), [10.0, 45.0, 69.0, -5.0])
    assert metrics.delta_lp_controls(R, 3) == pytest.approx(-5.0)
    # past tasks = tasks 1 and 2 (all but the last): (10 + 45) / 2
    assert metrics.delta_lp_past_tasks(R, 3) == pytest.approx(27.5)


def test_forgetting_by_hand():
    # task 1: max(R[1,0], R[2,0]) - R[3,0] = 90 - 60 = 30
    # task 2: max(R[2,1]) - R[3,1] = 95 - 85 = 10
    assert metrics.forgetting(R, 3) == pytest.approx(20.0)


def test_bwt_by_hand():
    # (R[3,0] - R[1,0]) + (R[3,1] - R[2,1]) = (60 - 90) + (85 - 95) = -40 -> mean -20
    assert metrics.backward_transfer(R, 3) == pytest.approx(-20.0)


def test_forgetting_uses_best_earlier_stage_not_just_diagonal():
    r = np.array([[10.0, 10.0, 10.0], [50.0, 10.0, 10.0], [80.0, 60.0, 10.0], [40.0, 60.0, 70.0]])
    # task 1 peaks at stage 2 (80), ends at 40 -> 40; task 2: 60 - 60 = 0
    assert metrics.forgetting(r, 3) == pytest.approx(20.0)
    assert metrics.backward_transfer(r, 3) == pytest.approx(((40 - 50) + (60 - 60)) / 2)


def test_single_task_sequence_has_no_forgetting_defined():
    r = np.array([[10.0, 20.0], [30.0, 25.0]])
    assert np.isnan(metrics.forgetting(r, 1))
    assert np.isnan(metrics.delta_lp_past_tasks(r, 1))
    assert metrics.delta_lp_controls(r, 1) == pytest.approx(5.0)


def test_shape_is_checked():
    with pytest.raises(ValueError, match="4 rows"):
        metrics.final_average_accuracy(R[:3], 3)


def test_summarize_names_every_metric_of_the_matrix():
    s = metrics.summarize(R, 3, ["a", "b", "c", "ctrl"])
    assert set(s) == {
        "final_avg_acc",
        "delta_lp",
        "delta_lp_controls",
        "delta_lp_past_tasks",
        "forgetting",
        "bwt",
    }
    assert s["delta_lp"]["ctrl"] == pytest.approx(-5.0)
    assert s["forgetting"] == pytest.approx(20.0)


def test_the_zero_shot_matrix_also_gets_the_mtil_metrics_by_hand():
    # R read as a zero-shot matrix; rows 1..3, task columns a, b, c:
    # transfer = mean(R[1, b], mean(R[1, c], R[2, c])) = mean(45, (35 + 20) / 2) = 36.25
    # avg = (90 + 45 + 35 + 70 + 95 + 20 + 60 + 85 + 99) / 9 = 599 / 9; last = (60 + 85 + 99) / 3
    s = metrics.summarize(R, 3, ["a", "b", "c", "ctrl"], kind="zs")
    assert s["mtil_transfer"] == pytest.approx(36.25)
    assert s["mtil_avg"] == pytest.approx(599 / 9)
    assert s["mtil_last"] == pytest.approx(244 / 3)
    assert s["final_avg_acc"] == pytest.approx(244 / 3)  # the same row, read as "any" matrix


def test_table_values_take_each_metric_from_its_matrix_and_nan_without_it():
    lp = R
    zs = R[:, [2, 1, 0, 3]]  # another matrix: the MTIL values must come from this one
    both = metrics.table_values({"lp": lp, "zs": zs}, 3)
    assert both["final_avg_acc"] == pytest.approx((60 + 85 + 99) / 3)
    assert both["mtil_avg"] == pytest.approx(599 / 9)  # the same cells, reordered
    # transfer on zs: columns (c, b, a): mean(R[1, b], mean(R[1, a], R[2, a])) = mean(45, 80)
    assert both["mtil_transfer"] == pytest.approx(62.5)
    no_zs = metrics.table_values({"lp": lp}, 3)
    assert set(no_zs) == {m.key for m in metrics.TABLE}
    assert all(np.isnan(no_zs[k]) for k in ("mtil_transfer", "mtil_avg", "mtil_last"))
    assert no_zs["forgetting"] == pytest.approx(20.0)


def test_delta_from_pretrained_is_every_row_minus_row_0():
    d = metrics.delta_from_pretrained(R)
    np.testing.assert_allclose(d[0], 0.0)
    np.testing.assert_allclose(d[2], [20.0, 55.0, -10.0, -20.0])  # row 2 - row 0 by hand
    np.testing.assert_allclose(d[-1], metrics.delta_lp(R, 3))


def test_registry_entries_are_complete_and_unique():
    keys = [m.key for m in metrics.METRICS]
    assert len(keys) == len(set(keys))
    for m in metrics.METRICS:
        assert m.label and m.definition and m.latex.count("$") % 2 == 0, m.key
        assert m.matrix in ("any", "zs")
    assert [m.key for m in metrics.HEADLINE] == ["final_avg_acc", "delta_lp_controls", "forgetting"]
    assert set(metrics.DEFINITIONS) == set(keys)


def test_readme_metric_table_is_the_registry():
    """README's table (key, label, matrices, definition) row for row, in the registry's order."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("## Metrics (") :]
    section = section[: section.index("\n## ", 1)]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    parsed = [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]
    expected = [
        [f"`{m.key}`", m.label, "LP, ZS and head" if m.matrix == "any" else "ZS only", m.definition]
        for m in metrics.METRICS
    ]
    assert parsed == expected
