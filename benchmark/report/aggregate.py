"""Run metrics aggregated over seeds, and the ranking of strategies (pure functions).

The metrics themselves and their definitions are the registry in ``benchmark.metrics``.

Seeds are aggregated with the mean and the *sample* standard deviation (ddof = 1). With one seed
the standard deviation is undefined and is NaN (tables show the mean only; figures draw no error
bar); NaN values propagate (docs/design.md section 10). ``mean_std`` is that one convention.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from benchmark import metrics

TABLE_KEYS = tuple(m.key for m in metrics.TABLE)


def mean_std(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Column-wise mean and sample std (ddof = 1) over the rows (= seeds): std NaN for one row,
    NaN entries propagate."""
    return frame.mean(skipna=False), frame.std(ddof=1, skipna=False)


def aggregate_seeds(
    per_run: pd.DataFrame,
    keys: Sequence[str] = TABLE_KEYS,
    by: Sequence[str] = ("sequence", "strategy"),
) -> pd.DataFrame:
    """One row per group: ``n_seeds``, ``seeds`` ("0 1 2") and ``<key>_mean`` / ``<key>_std``.

    ``per_run`` has one row per run with the ``by`` columns, ``seed`` and the metric columns.
    Groups keep the order in which they first appear.
    """
    rows = []
    for group, sub in per_run.groupby(list(by), sort=False):
        group = group if isinstance(group, tuple) else (group,)
        row: dict = dict(zip(by, group, strict=True))
        row["n_seeds"] = len(sub)
        row["seeds"] = " ".join(str(s) for s in sorted(sub["seed"]))
        mean, std = mean_std(sub[list(keys)].astype(float))
        for key in keys:
            row[f"{key}_mean"], row[f"{key}_std"] = float(mean[key]), float(std[key])
        rows.append(row)
    columns = [*by, "n_seeds", "seeds"] + [f"{k}_{s}" for k in keys for s in ("mean", "std")]
    return pd.DataFrame(rows, columns=columns)


def least_forgetting(table: pd.DataFrame, decimals: int = 2) -> tuple[list[str], str]:
    """Strategies of one sequence that forget least, and the criterion used.

    Highest mean delta-LP on controls; ties (equal at the displayed precision) broken by the lowest
    mean forgetting. A sequence without controls is ranked by delta-LP on past tasks instead.
    Returns every strategy still tied after both criteria.
    """
    key = "delta_lp_controls_mean"
    if table[key].isna().all():
        key = "delta_lp_past_tasks_mean"
    ranked = table.dropna(subset=[key])
    if ranked.empty:
        return [], key
    primary = ranked[key].round(decimals)
    ranked = ranked[primary == primary.max()]
    secondary = ranked["forgetting_mean"].round(decimals)
    if secondary.notna().any():
        ranked = ranked[secondary == secondary.min()]
    return list(ranked["strategy"]), key
