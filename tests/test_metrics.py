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


def test_summarize_names_every_metric():
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
    assert set(metrics.DEFINITIONS) == set(s)
