"""Selection on validation (benchmark/report/selection.py): the value with the best validation score
wins even when another value has the better test numbers, and the report shows it."""

import numpy as np
import pandas as pd
import pytest

from benchmark.report.build import main_report
from benchmark.report.runs import discover_runs, per_run_table
from benchmark.report.selection import base_strategy, selection_table, validation_score
from benchmark.results import RunResults, run_dir

TASKS, CONTROLS = ["a", "b"], ["ctrl"]


def write(out, name, seed, final_lp, val, lp_val=None):
    """A complete 2-task run whose last stage has LP ``final_lp`` (a, b, ctrl), LP validation
    accuracies ``lp_val`` (a, b, ctrl; default: ``val`` and 50 on ctrl) and task-head
    validation accuracies ``val`` (a, b); earlier stages are flat 50."""
    lp_val = (*val, 50.0) if lp_val is None else lp_val
    folder = run_dir(out, "seq", name, seed)
    results = RunResults(
        folder, {"sequence": "seq", "strategy": name, "seed": seed}, TASKS, CONTROLS
    )
    results.write_config({"sequence_spec": {"name": "seq", "tasks": TASKS, "controls": CONTROLS}})
    for stage in range(3):
        records = []
        lp = final_lp if stage == 2 else (50.0, 50.0, 50.0)
        for j, dataset in enumerate(TASKS + CONTROLS):
            task = "pretrained" if stage == 0 else TASKS[stage - 1]
            role = "task" if dataset in TASKS else "control"
            base = {"stage": stage, "stage_task": task, "dataset": dataset, "role": role}
            records.append({**base, "kind": "lp", "accuracy": lp[j]})
            if stage == 2:
                records.append({**base, "kind": "lp_val", "accuracy": lp_val[j]})
            if dataset in TASKS and stage == 2:
                records.append({**base, "kind": "val", "accuracy": val[j]})
        results.append(records)
    results.write()


@pytest.fixture
def swept(tmp_path):
    # lam=1: better on test (final acc 90), worse on validation (mean 60 over seeds);
    # lam=10: final acc 70, validation mean (80 + 76) / 2 = 78 -> chosen.
    write(tmp_path, "ldifs@lam=1", 0, (90.0, 90.0, 40.0), (60.0, 60.0))
    write(tmp_path, "ldifs@lam=1", 1, (90.0, 90.0, 40.0), (58.0, 62.0))
    write(tmp_path, "ldifs@lam=10", 0, (70.0, 70.0, 48.0), (80.0, 80.0))
    write(tmp_path, "ldifs@lam=10", 1, (70.0, 70.0, 46.0), (76.0, 76.0))
    write(tmp_path, "ft", 0, (95.0, 95.0, 30.0), (99.0, 99.0))  # one value only: not a sweep
    return tmp_path


def test_base_strategy_splits_the_run_name():
    assert base_strategy("ldifs@lam=10,anchor=pretrained") == ("ldifs", "lam=10,anchor=pretrained")
    assert base_strategy("ft") == ("ft", "")


def test_the_value_is_chosen_on_validation_not_test(swept):
    runs, _ = discover_runs(swept)
    scores = {(r.strategy, r.seed): validation_score(r) for r in runs}
    assert scores[("ldifs@lam=10", 1)] == pytest.approx(76.0)
    table = selection_table(runs, per_run_table(runs))
    assert list(table["strategy"]) == ["ldifs"]  # ft was run at one value: nothing to select
    row = table.iloc[0]
    assert row["chosen"] == "lam=10" and row["val_score"] == pytest.approx(78.0)
    assert row["tried"] == "lam=1: 60.00; lam=10: 78.00"
    # the chosen value's test metrics, mean over its two seeds
    assert row["final_avg_acc"] == pytest.approx(70.0)
    assert row["delta_lp_controls"] == pytest.approx(((48 - 50) + (46 - 50)) / 2)
    assert row["n_seeds"] == 2


def test_the_report_has_the_selection_section(swept):
    out = main_report(swept)
    text = (out / "report.md").read_text()
    assert "## Selection on validation" in text and "| `seq` | `ldifs` | `lam=10` | 78.00 |" in text
    csv = pd.read_csv(out / "selection.csv")
    assert csv.loc[0, "chosen"] == "lam=10"


def test_runs_without_validation_records_choose_nothing(tmp_path):
    write(tmp_path, "l2sp@alpha=1", 0, (60.0, 60.0, 50.0), (np.nan, np.nan))
    write(tmp_path, "l2sp@alpha=2", 0, (60.0, 60.0, 50.0), (np.nan, np.nan))
    runs, _ = discover_runs(tmp_path)
    assert selection_table(runs, per_run_table(runs)).empty


def test_the_three_scores_read_their_own_records(tmp_path):
    # tasks: lp_val over a, b; all: lp_val over a, b, ctrl; head: val over a, b
    write(tmp_path, "ewc@lam=1", 0, (60.0, 60.0, 50.0), (10.0, 20.0), (70.0, 80.0, 30.0))
    (run,), _ = discover_runs(tmp_path)
    assert validation_score(run) == pytest.approx(75.0)  # the default is "tasks"
    assert validation_score(run, "all") == pytest.approx(60.0)
    assert validation_score(run, "head") == pytest.approx(15.0)


def test_the_score_decides_between_accuracy_and_retention(tmp_path):
    # lam=1 is better on the tasks' validation, lam=100 on tasks and controls together
    write(tmp_path, "ldifs@lam=1", 0, (60.0, 60.0, 50.0), (0.0, 0.0), (80.0, 80.0, 20.0))
    write(tmp_path, "ldifs@lam=100", 0, (60.0, 60.0, 50.0), (0.0, 0.0), (76.0, 76.0, 40.0))
    runs, _ = discover_runs(tmp_path)
    per_run = per_run_table(runs)
    assert selection_table(runs, per_run, "tasks").iloc[0]["chosen"] == "lam=1"
    assert selection_table(runs, per_run, "all").iloc[0]["chosen"] == "lam=100"


def test_a_tie_is_broken_as_select_breaks_it(tmp_path):
    # equal validation scores at lam=100 and lam=3: the report and ``select`` both choose lam=3,
    # the smaller value (name order, the report's old rule, would choose lam=100)
    from benchmark.grid.select import choose

    write(tmp_path, "ldifs@lam=100", 0, (90.0, 90.0, 40.0), (70.0, 70.0))
    write(tmp_path, "ldifs@lam=3", 0, (60.0, 60.0, 40.0), (70.0, 70.0))
    runs, _ = discover_runs(tmp_path)
    table = selection_table(runs, per_run_table(runs))
    assert table.iloc[0]["chosen"] == "lam=3"
    assert table.iloc[0]["final_avg_acc"] == pytest.approx(60.0)
    means = {base_strategy(r.strategy)[1]: {"mean": validation_score(r)} for r in runs}
    assert choose(means) == "lam=3"
