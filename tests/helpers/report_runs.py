"""Run folders written by the runner's own RunResults from hand-made matrices: the report's tests
(tests/test_report.py, tests/test_cli_report.py) read them."""

import numpy as np

from benchmark.results import RunResults, run_dir

TASKS = ["a", "b", "c"]
CONTROLS = ["ctrl"]

# A hand-checkable zero-shot matrix: rows = stage 0..3, columns = a, b, c, ctrl.
ZS = np.array(
    [
        [10.0, 20.0, 30.0, 40.0],
        [50.0, 22.0, 33.0, 41.0],
        [45.0, 60.0, 36.0, 42.0],
        [40.0, 55.0, 70.0, 43.0],
    ]
)


def write_run(out, strategy, seed, lp, zs=None, head=None, stages=None, sequence="smoke"):
    """A run folder written by the same RunResults the runner uses."""
    folder = run_dir(out, sequence, strategy, seed)
    results = RunResults(
        folder, {"sequence": sequence, "strategy": strategy, "seed": seed}, TASKS, CONTROLS
    )
    results.write_config(
        {
            "strategy": strategy,
            "seed": seed,
            "sequence_spec": {"name": sequence, "tasks": TASKS, "controls": CONTROLS},
        }
    )
    columns = TASKS + CONTROLS
    for stage in range(stages if stages is not None else len(TASKS) + 1):
        records = []
        for j, dataset in enumerate(columns):
            role = "task" if dataset in TASKS else "control"
            base = {
                "stage": stage,
                "stage_task": "pretrained" if stage == 0 else TASKS[stage - 1],
                "dataset": dataset,
                "role": role,
            }
            records.append({**base, "kind": "lp", "accuracy": float(lp[stage, j])})
            if zs is not None:
                records.append({**base, "kind": "zs", "accuracy": float(zs[stage, j])})
            if head is not None and role == "task":
                records.append({**base, "kind": "head", "accuracy": float(head[stage, j])})
        results.append(records)
        results.write()
    results.finish()
    return folder


LP_FT0 = np.array(
    [
        [60.0, 50.0, 40.0, 70.0],
        [80.0, 52.0, 41.0, 66.0],
        [74.0, 78.0, 42.0, 64.0],
        [70.0, 72.0, 75.0, 62.0],
    ]
)
# ft seed 1: another run of the same shape; ldifs keeps the control better.
LP_FT1 = np.array(
    [
        [60.0, 52.0, 44.0, 72.0],
        [80.0, 54.0, 45.0, 68.0],
        [74.0, 80.0, 46.0, 66.0],
        [72.0, 74.0, 79.0, 63.0],
    ]
)
LP = {
    ("ft", 0): LP_FT0,
    ("ft", 1): LP_FT1,
    ("ldifs", 0): LP_FT0 + np.array([[0, 0, 0, 0], [0, 0, 0, 2], [1, 0, 0, 4], [3, 1, 0, 6.0]]),
    ("ldifs", 1): LP_FT0 + np.array([[0, 0, 0, 0], [0, 0, 0, 3], [2, 0, 0, 5], [5, 2, 0, 7.0]]),
}
