"""Run-level metrics for the comparison table and their aggregation over seeds (pure functions).

``R`` follows ``benchmark.metrics``: rows t = 0 (pretrained) .. T (after task T), the first
``n_tasks`` columns are the sequence's tasks in training order, then controls.

MTIL metrics (ZSCL, Zheng et al., ICCV 2023, arXiv 2303.06628) are computed on the zero-shot
matrix over the task columns only (controls are not part of MTIL). With task j 1-based and trained
at stage j:

- Transfer = mean over j = 2..T of mean_{t = 1..j-1} R[t, j]: the zero-shot accuracy on task j after
  each *earlier* task, before j itself is trained. The pretrained row t = 0 is *not* included (it is
  the "zero-shot" baseline ZSCL reports separately), so this is the upper-right triangle of the
  T x T matrix of rows 1..T, averaged first per task and then over tasks.
- Avg = mean of R[t, j] over rows t = 1..T and task columns j = 1..T.
- Last = mean_j R[T, j] over task columns.

Seeds are aggregated with the mean and the *sample* standard deviation (ddof = 1); with one seed
the standard deviation is undefined and reported as NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from benchmark import metrics

MTIL_DEFINITIONS = {
    "mtil_transfer": "mean over tasks j = 2..T of mean_{t = 1..j-1} ZS[t, j] (zero-shot accuracy "
    "on task j after each earlier task, before j is trained; pretrained row excluded)",
    "mtil_avg": "mean of ZS[t, j] over stages t = 1..T and tasks j = 1..T",
    "mtil_last": "mean_j ZS[T, j] over tasks",
}

# Columns of the comparison table, in order: key -> (short label, definition, higher is better).
TABLE_METRICS: dict[str, tuple[str, str, bool]] = {
    "final_avg_acc": ("Final acc", "LP: " + metrics.DEFINITIONS["final_avg_acc"], True),
    "delta_lp_controls": ("ΔLP controls", "LP: " + metrics.DEFINITIONS["delta_lp_controls"], True),
    "delta_lp_past_tasks": (
        "ΔLP past tasks",
        "LP: " + metrics.DEFINITIONS["delta_lp_past_tasks"],
        True,
    ),
    "forgetting": ("Forgetting", "LP: " + metrics.DEFINITIONS["forgetting"], False),
    "bwt": ("BWT", "LP: " + metrics.DEFINITIONS["bwt"], True),
    "mtil_transfer": ("Transfer", "ZS: " + MTIL_DEFINITIONS["mtil_transfer"], True),
    "mtil_avg": ("Avg", "ZS: " + MTIL_DEFINITIONS["mtil_avg"], True),
    "mtil_last": ("Last", "ZS: " + MTIL_DEFINITIONS["mtil_last"], True),
}
MTIL_KEYS = ("mtil_transfer", "mtil_avg", "mtil_last")


def _square(r: np.ndarray, n_tasks: int) -> np.ndarray:
    """Rows 1..T and task columns 1..T of a (T+1) x (>= T) matrix."""
    r = np.asarray(r, dtype=float)
    if r.ndim != 2 or r.shape[0] != n_tasks + 1 or r.shape[1] < n_tasks or n_tasks < 1:
        raise ValueError(
            f"expected a matrix with {n_tasks + 1} rows and >= {n_tasks} columns, "
            f"got shape {r.shape}"
        )
    return r[1:, :n_tasks]


def mtil_transfer(r: np.ndarray, n_tasks: int) -> float:
    """Mean over tasks j >= 2 of the mean of R[1..j-1, j]; NaN for a single task."""
    s = _square(r, n_tasks)
    per_task = [np.mean(s[: j - 1, j - 1]) for j in range(2, n_tasks + 1)]
    return float(np.mean(per_task)) if per_task else float("nan")


def mtil_avg(r: np.ndarray, n_tasks: int) -> float:
    return float(np.mean(_square(r, n_tasks)))


def mtil_last(r: np.ndarray, n_tasks: int) -> float:
    return float(np.mean(_square(r, n_tasks)[-1]))


def run_metrics(lp: np.ndarray, n_tasks: int, zs: np.ndarray | None = None) -> dict[str, float]:
    """Every column of the comparison table for one run (NaN where a metric does not apply)."""
    out = {
        "final_avg_acc": metrics.final_average_accuracy(lp, n_tasks),
        "delta_lp_controls": metrics.delta_lp_controls(lp, n_tasks),
        "delta_lp_past_tasks": metrics.delta_lp_past_tasks(lp, n_tasks),
        "forgetting": metrics.forgetting(lp, n_tasks),
        "bwt": metrics.backward_transfer(lp, n_tasks),
    }
    has_zs = zs is not None and not np.isnan(np.asarray(zs, dtype=float)[:, :n_tasks]).any()
    out["mtil_transfer"] = mtil_transfer(zs, n_tasks) if has_zs else float("nan")
    out["mtil_avg"] = mtil_avg(zs, n_tasks) if has_zs else float("nan")
    out["mtil_last"] = mtil_last(zs, n_tasks) if has_zs else float("nan")
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample std with ddof = 1, n). std is NaN when n < 2; NaN values propagate."""
    v = np.asarray(values, dtype=float)
    n = len(v)
    if n == 0:
        return float("nan"), float("nan"), 0
    mean = float(np.mean(v))
    std = float(np.std(v, ddof=1)) if n > 1 else float("nan")
    return mean, std, n


def aggregate_seeds(
    per_run: pd.DataFrame,
    keys: Sequence[str] = tuple(TABLE_METRICS),
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
        for key in keys:
            mean, std, _ = mean_std(sub[key].to_numpy())
            row[f"{key}_mean"], row[f"{key}_std"] = mean, std
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
