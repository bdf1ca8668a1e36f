"""The validation scores a selection maximises (benchmark/report/selection.py computes them;
``run_benchmark.py select --score`` names one). A module of its own so that the command line's
help reads them without importing pandas."""

from __future__ import annotations

from benchmark.kinds import LP_VAL, VAL

# score name -> (record kind, whether the controls count, one-line definition)
SCORES = {
    "tasks": (
        LP_VAL.name,
        False,
        "mean over tasks of the final-stage linear-probe accuracy on the "
        "validation part of each task's train split",
    ),
    "all": (
        LP_VAL.name,
        True,
        "mean over tasks and controls of the final-stage linear-probe "
        "accuracy on the validation part of each dataset's train split",
    ),
    "head": (
        VAL.name,
        False,
        "mean over tasks of the final-stage task-head accuracy on each task's validation images",
    ),
}
DEFAULT_SCORE = "tasks"
