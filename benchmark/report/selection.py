"""Selection on validation: where runs of one strategy differ by strategy arguments (a grid's
``ldifs@lam=10``, ``ldifs@lam=100``), the value a paper's protocol would pick, by validation
accuracy only, and the test metrics at that value.

Validation score of a run (``SCORES``; never a test split), at the last stage:

- ``tasks`` (default): mean over the sequence's tasks of the linear probe's validation accuracy
  (records of kind ``lp_val``: the probe's accuracy at its chosen C on the validation part of the
  probe's train split, held out from fine-tuning): the validation counterpart of the final
  average accuracy, i.e. the papers' "accuracy on the downstream validation set";
- ``all``: the same mean over the tasks and the controls (trades accuracy for retention);
- ``head``: mean over the tasks of the task head's accuracy on the validation images (``val``).

A value's score is its mean over seeds; the highest wins. Ties go to the smallest value
(``choose_value``; arguments compared key by key, numerically where both are numbers): for a
strategy weight (``lam``, ``alpha``) the weakest regularisation. ``run_benchmark.py select``
breaks ties with the same function.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from benchmark.metrics import BY_KEY
from benchmark.report.runs import Run
from benchmark.report.scores import DEFAULT_SCORE, SCORES
from benchmark.report.tables import format_number


def value_order(label: str) -> tuple:
    """A value label (``lam=10``, ``lam=10,anchor=pretrained``) as a sort key: its arguments in
    order, each number compared as a number (1e-3 < 0.1 < 3 < 10), text after numbers."""
    key = []
    for part in label.split(","):
        name, _, value = part.partition("=")
        try:
            key.append((name, 0, float(value), ""))
        except ValueError:
            key.append((name, 1, 0.0, value))
    return tuple(key)


def choose_value(scores: dict[str, float]) -> str | None:
    """The value label with the highest score (NaN: not scored; None when none is); ties go to
    the smallest value (``value_order``). Shared by ``select`` and the report's Selection."""
    finite = {k: v for k, v in scores.items() if not np.isnan(v)}
    if not finite:
        return None
    best = max(finite.values())
    return min((k for k, v in finite.items() if v == best), key=value_order)


def base_strategy(name: str) -> tuple[str, str]:
    """``ldifs@lam=10`` -> ("ldifs", "lam=10"); a plain name has no value ("")."""
    strategy, _, value = name.partition("@")
    return strategy, value


def validation_score(run: Run, score: str = DEFAULT_SCORE) -> float:
    """The run's validation score (``SCORES``); NaN when the run lacks a value it needs."""
    kind, with_controls, _ = SCORES[score]
    m = run.matrix(kind)
    last = len(run.tasks)
    if last not in m.index:
        return float("nan")
    columns = run.tasks + (run.controls if with_controls else [])
    values = m.loc[last].reindex(columns).to_numpy(dtype=float)
    return float(np.mean(values)) if len(values) else float("nan")


def selection_table(
    runs: Sequence[Run], per_run: pd.DataFrame, score: str = DEFAULT_SCORE
) -> pd.DataFrame:
    """One row per (sequence, strategy) with two or more argument values: the value chosen by
    validation, its score, the values tried with theirs, and the chosen value's test metrics
    (means over its seeds, from ``per_run``: one row per complete run)."""
    scores = pd.DataFrame(
        [
            {
                "sequence": r.sequence,
                "name": r.strategy,
                "seed": r.seed,
                "val": validation_score(r, score),
            }
            for r in runs
            if r.complete
        ]
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
        values = {base_strategy(n)[1]: v for n, v in by_value.items()}
        chosen = f"{strategy}@{choose_value(values)}"
        test = per_run[(per_run["sequence"] == sequence) & (per_run["strategy"] == chosen)]
        row = {
            "sequence": sequence,
            "strategy": strategy,
            "chosen": base_strategy(chosen)[1],
            "val_score": by_value[chosen],
            "n_seeds": len(test),
            "tried": "; ".join(
                f"{base_strategy(n)[1]}: {format_number(v)}" for n, v in by_value.items()
            ),
        }
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
        cells = [
            f"`{row['sequence']}`",
            f"`{row['strategy']}`",
            f"`{row['chosen']}`",
            format_number(row["val_score"]),
            row["tried"],
            *(format_number(row[k]) for k in keys),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        f"Chosen = the argument value with the highest validation score, mean over seeds of the "
        f"{SCORES[DEFAULT_SCORE][2]} (never the test split); the metric columns are that "
        f"value's test metrics, mean over its seeds."
    )
    return "\n".join(lines) + "\n\n" + note + "\n"
