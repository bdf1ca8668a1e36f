"""Continual-learning metrics: pure functions of an accuracy matrix.

``R`` has rows t = 0 (pretrained) .. T (after task T) and one column per dataset; the first
``n_tasks`` columns are the sequence's tasks in training order (task j, 1-based, is trained at
stage j), the remaining columns are controls. Accuracies may be in [0, 1] or percent; every
function returns the unit it was given. Missing entries are NaN.
"""

from __future__ import annotations

import numpy as np

DEFINITIONS = {
    "final_avg_acc": "mean_j R[T, j] over sequence tasks",
    "delta_lp": "R[T, j] - R[0, j] per dataset (negative = forgetting)",
    "delta_lp_controls": "mean of R[T, j] - R[0, j] over control datasets",
    "delta_lp_past_tasks": "mean of R[T, j] - R[0, j] over tasks 1..T-1 (all but the last)",
    "forgetting": "mean over j < T of max_{t in [j, T-1]} R[t, j] - R[T, j] (Chaudhry et al. 2018)",
    "bwt": "mean over j < T of R[T, j] - R[j, j] (Lopez-Paz & Ranzato 2017)",
}


def _check(r: np.ndarray, n_tasks: int) -> np.ndarray:
    r = np.asarray(r, dtype=float)
    if r.ndim != 2 or r.shape[0] != n_tasks + 1 or r.shape[1] < n_tasks:
        raise ValueError(
            f"expected a matrix with {n_tasks + 1} rows and >= {n_tasks} columns, "
            f"got shape {r.shape}"
        )
    return r


def final_average_accuracy(r: np.ndarray, n_tasks: int) -> float:
    r = _check(r, n_tasks)
    return float(np.mean(r[-1, :n_tasks]))


def delta_lp(r: np.ndarray, n_tasks: int) -> np.ndarray:
    """R[T, j] - R[0, j] for every column (tasks then controls)."""
    r = _check(r, n_tasks)
    return r[-1] - r[0]


def _mean_or_nan(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def delta_lp_controls(r: np.ndarray, n_tasks: int) -> float:
    return _mean_or_nan(delta_lp(r, n_tasks)[n_tasks:])


def delta_lp_past_tasks(r: np.ndarray, n_tasks: int) -> float:
    return _mean_or_nan(delta_lp(r, n_tasks)[: n_tasks - 1])


def forgetting(r: np.ndarray, n_tasks: int) -> float:
    """Average forgetting: best accuracy on task j after learning it (before T) minus final."""
    r = _check(r, n_tasks)
    big_t = n_tasks
    values = [np.max(r[j + 1 : big_t, j]) - r[big_t, j] for j in range(big_t - 1)]
    return _mean_or_nan(np.array(values))


def backward_transfer(r: np.ndarray, n_tasks: int) -> float:
    """BWT: final accuracy on task j minus accuracy right after learning it, over j < T."""
    r = _check(r, n_tasks)
    values = [r[n_tasks, j] - r[j + 1, j] for j in range(n_tasks - 1)]
    return _mean_or_nan(np.array(values))


def summarize(r: np.ndarray, n_tasks: int, columns: list[str]) -> dict:
    """Every metric of this module for one matrix, as a JSON-ready dict."""
    d = delta_lp(r, n_tasks)
    return {
        "final_avg_acc": final_average_accuracy(r, n_tasks),
        "delta_lp": {name: float(v) for name, v in zip(columns, d, strict=True)},
        "delta_lp_controls": delta_lp_controls(r, n_tasks),
        "delta_lp_past_tasks": delta_lp_past_tasks(r, n_tasks),
        "forgetting": forgetting(r, n_tasks),
        "bwt": backward_transfer(r, n_tasks),
    }
