"""Selection on validation: where runs of one strategy differ by strategy arguments (a grid's
``ldifs@lam=10``, ``ldifs@lam=100``), the value a paper's protocol would pick, by validation
accuracy only, and the test metrics at that value.

Validation score of a run = at the last stage, the mean over the sequence's tasks of the task
head's accuracy on that task's validation images (records of kind ``val``: held out from
fine-tuning, never the test split). A value's score is its mean over seeds; the highest wins
(ties: the first in name order).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from benchmark.metrics import BY_KEY
from benchmark.report.runs import Run
from benchmark.report.tables import format_number

VALIDATION_KIND = "val"


def base_strategy(name: str) -> tuple[str, str]:
    """``ldifs@lam=10`` -> ("ldifs", "lam=10"); a plain name has no value ("")."""
    strategy, _, value = name.partition("@")
    return strategy, value


def validation_score(run: Run) -> float:
    """Mean over tasks of the final stage's ``val`` accuracy; NaN when the run has none."""
    m = run.matrix(VALIDATION_KIND)
    last = len(run.tasks)
    if last not in m.index:
        return float("nan")
    values = m.loc[last].reindex(run.tasks).to_numpy(dtype=float)
    return float(np.mean(values)) if len(values) else float("nan")


def selection_table(runs: Sequence[Run], per_run: pd.DataFrame) -> pd.DataFrame:
    """One row per (sequence, strategy) with two or more argument values: the value chosen by
    validation, its score, the values tried with theirs, and the chosen value's test metrics
    (means over its seeds, from ``per_run``: one row per complete run)."""
    scores = pd.DataFrame(
        [
            {"sequence": r.sequence, "name": r.strategy, "seed": r.seed, "val": validation_score(r)}
            for r in runs
            if r.complete
        ]  # fmt: skip
    )
    if scores.empty:
        return pd.DataFrame()
    scores[["strategy", "value"]] = [base_strategy(n) for n in scores["name"]]
    metrics = [c for c in per_run.columns if c not in ("sequence", "strategy", "seed")]
    rows = []
    for (sequence, strategy), sub in scores.groupby(["sequence", "strategy"], sort=False):
        by_value = sub[sub["value"] != ""].groupby("name", sort=True)["val"].mean()
        if len(by_value) < 2 or by_value.isna().all():
            continue
        chosen = by_value.idxmax()
        test = per_run[(per_run["sequence"] == sequence) & (per_run["strategy"] == chosen)]
        row = {"sequence": sequence, "strategy": strategy, "chosen": base_strategy(chosen)[1],
               "val_score": by_value[chosen], "n_seeds": len(test),
               "tried": "; ".join(f"{base_strategy(n)[1]}: {format_number(v)}"
                                  for n, v in by_value.items())}  # fmt: skip
        row.update({k: test[k].mean() for k in metrics})
        rows.append(row)
    return pd.DataFrame(rows)


def selection_markdown(table: pd.DataFrame, keys: Sequence[str]) -> str:
    """The report's section text (empty when nothing was swept)."""
    if table.empty:
        return ""
    labels = [BY_KEY[k].label for k in keys]
    head = ["sequence", "strategy", "chosen", "val score", "tried (val score)", *labels]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in table.iterrows():
        cells = [f"`{row['sequence']}`", f"`{row['strategy']}`", f"`{row['chosen']}`",
                 format_number(row["val_score"]), row["tried"],
                 *(format_number(row[k]) for k in keys)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        "Chosen = the argument value with the highest validation score (mean over seeds of the "
        "final-stage task-head accuracy on the tasks' validation images, never the test "
        "split); the metric columns are that value's test metrics, mean over its seeds."
    )
    return "\n".join(lines) + "\n\n" + note + "\n"
