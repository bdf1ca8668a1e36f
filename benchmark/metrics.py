"""Continual-learning metrics: pure functions of an accuracy matrix, and their one registry.

``R`` has rows t = 0 (pretrained) .. T (after task T) and one column per dataset; the first
``n_tasks`` columns are the sequence's tasks in training order (task j, 1-based, is trained at
stage j), the remaining columns are controls. Accuracies may be in [0, 1] or percent; every
function returns the unit it was given. Missing entries are NaN and propagate.

``METRICS`` is the registry: ``metrics.json``, the report's tables, legends and LaTeX caption,
``compare``, TensorBoard and the README's table all read it (docs/design.md section 10). Adding a
metric = one ``Metric`` entry and its test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from benchmark.kinds import LP, ZS


def _check(r: np.ndarray, n_tasks: int) -> np.ndarray:
    r = np.asarray(r, dtype=float)
    if r.ndim != 2 or r.shape[0] != n_tasks + 1 or r.shape[1] < n_tasks or n_tasks < 1:
        raise ValueError(
            f"expected a matrix with {n_tasks + 1} rows and >= {n_tasks} columns, "
            f"got shape {r.shape}"
        )
    return r


def _mean_or_nan(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.mean(values)) if values.size else float("nan")


def delta_from_pretrained(r: np.ndarray) -> np.ndarray:
    """R[t, j] - R[0, j] for every stage t and column j (row 0 is zero by definition)."""
    r = np.asarray(r, dtype=float)
    return r - r[0]


def final_average_accuracy(r: np.ndarray, n_tasks: int) -> float:
    r = _check(r, n_tasks)
    return float(np.mean(r[-1, :n_tasks]))


def delta_lp(r: np.ndarray, n_tasks: int) -> np.ndarray:
    """R[T, j] - R[0, j] for every column (tasks then controls)."""
    return delta_from_pretrained(_check(r, n_tasks))[-1]


def delta_lp_controls(r: np.ndarray, n_tasks: int) -> float:
    return _mean_or_nan(delta_lp(r, n_tasks)[n_tasks:])


def delta_lp_past_tasks(r: np.ndarray, n_tasks: int) -> float:
    return _mean_or_nan(delta_lp(r, n_tasks)[: n_tasks - 1])


def forgetting(r: np.ndarray, n_tasks: int) -> float:
    """Average forgetting: best accuracy on task j after learning it (before T) minus final."""
    r = _check(r, n_tasks)
    big_t = n_tasks
    return _mean_or_nan([np.max(r[j + 1 : big_t, j]) - r[big_t, j] for j in range(big_t - 1)])


def backward_transfer(r: np.ndarray, n_tasks: int) -> float:
    """BWT: final accuracy on task j minus accuracy right after learning it, over j < T."""
    r = _check(r, n_tasks)
    return _mean_or_nan([r[n_tasks, j] - r[j + 1, j] for j in range(n_tasks - 1)])


def delta_lp_se(r: np.ndarray, n_tasks: int, n_test: np.ndarray) -> np.ndarray:
    """Binomial standard error of R[T, j] - R[0, j] per column, R in percent, each accuracy an
    estimate on ``n_test[j]`` test images: sqrt(p0 (1 - p0) / n + pT (1 - pT) / n). The two
    accuracies are treated as independent; they share the test images, so this bounds the
    paired error from above unless the two models' errors are anti-correlated."""
    r = _check(r, n_tasks) / 100.0
    n = np.asarray(n_test, dtype=float)
    p0, pt = r[0], r[-1]
    return 100.0 * np.sqrt(p0 * (1 - p0) / n + pt * (1 - pt) / n)


def mean_se(se: np.ndarray) -> float:
    """Standard error of the mean of independent estimates with standard errors ``se``."""
    se = np.asarray(se, dtype=float)
    return float(np.sqrt(np.sum(se**2)) / se.size) if se.size else float("nan")


# MTIL metrics (ZSCL, Zheng et al., ICCV 2023, arXiv 2303.06628), on the zero-shot matrix over the
# task columns only (controls are not part of MTIL), on rows 1..T: the pretrained row 0 is the
# zero-shot baseline ZSCL reports separately.
def _square(r: np.ndarray, n_tasks: int) -> np.ndarray:
    """Rows 1..T and task columns 1..T of a (T+1) x (>= T) matrix."""
    return _check(r, n_tasks)[1:, :n_tasks]


def mtil_transfer(r: np.ndarray, n_tasks: int) -> float:
    """Mean over tasks j >= 2 of the mean of R[1..j-1, j]; NaN for a single task."""
    s = _square(r, n_tasks)
    return _mean_or_nan([np.mean(s[: j - 1, j - 1]) for j in range(2, n_tasks + 1)])


def mtil_avg(r: np.ndarray, n_tasks: int) -> float:
    return float(np.mean(_square(r, n_tasks)))


def mtil_last(r: np.ndarray, n_tasks: int) -> float:
    return float(np.mean(_square(r, n_tasks)[-1]))


@dataclass(frozen=True)
class Metric:
    """One metric: how it is named, defined, typeset, ranked, and computed.

    ``matrix``: "any" = a metric of every accuracy matrix (``metrics.json`` holds it for lp, zs
    and head; the comparison tables read the LP one); "zs" = of the zero-shot matrix only.
    ``per_dataset``: one value per dataset (``metrics.json`` only, not a table column).
    ``headline``: also a column of the short table ``--strategy all`` prints (compare.py).
    """

    key: str
    label: str  # short column header
    definition: str  # plain text: metrics.json "definitions", legends, the README table
    latex: str  # for the LaTeX caption; R = the matrix named by ``matrix``
    higher_is_better: bool
    matrix: str  # "any" or "zs"
    fn: Callable[[np.ndarray, int], float | np.ndarray]
    per_dataset: bool = False
    headline: bool = False  # a column of the table printed after --strategy all

    @property
    def table_matrix(self) -> str:
        """The matrix a comparison table reads it from."""
        return LP.name if self.matrix == "any" else self.matrix


METRICS: tuple[Metric, ...] = (
    Metric(
        "final_avg_acc",
        "Final acc",
        "mean_j R[T, j] over sequence tasks",
        r"$\frac{1}{T}\sum_{j=1}^{T} R_{T,j}$",
        True,
        "any",
        final_average_accuracy,
        headline=True,
    ),
    Metric(
        "delta_lp",
        "ΔLP",
        "R[T, j] - R[0, j] per dataset (negative = forgetting)",
        r"$R_{T,j}-R_{0,j}$ per dataset $j$",
        True,
        "any",
        delta_lp,
        per_dataset=True,
    ),
    Metric(
        "delta_lp_controls",
        "ΔLP controls",
        "mean of R[T, j] - R[0, j] over control datasets",
        r"mean over controls $c$ of $R_{T,c}-R_{0,c}$ (negative = forgetting)",
        True,
        "any",
        delta_lp_controls,
        headline=True,
    ),
    Metric(
        "delta_lp_past_tasks",
        "ΔLP past tasks",
        "mean of R[T, j] - R[0, j] over tasks 1..T-1 (all but the last)",
        r"mean over tasks $j<T$ of $R_{T,j}-R_{0,j}$",
        True,
        "any",
        delta_lp_past_tasks,
    ),
    Metric(
        "forgetting",
        "Forgetting",
        "mean over j < T of max_{t in [j, T-1]} R[t, j] - R[T, j] (Chaudhry et al. 2018)",
        r"$\frac{1}{T-1}\sum_{j<T}\big(\max_{t\in[j,T-1]} R_{t,j}-R_{T,j}\big)$"
        r" (Chaudhry et al., 2018)",
        False,
        "any",
        forgetting,
        headline=True,
    ),
    Metric(
        "bwt",
        "BWT",
        "mean over j < T of R[T, j] - R[j, j] (Lopez-Paz & Ranzato 2017)",
        r"$\frac{1}{T-1}\sum_{j<T}\big(R_{T,j}-R_{j,j}\big)$ (Lopez-Paz \& Ranzato, 2017)",
        True,
        "any",
        backward_transfer,
    ),
    Metric(
        "mtil_transfer",
        "Transfer",
        "mean over tasks j = 2..T of mean_{t = 1..j-1} ZS[t, j] (zero-shot accuracy on task j "
        "after each earlier task, before j is trained; pretrained row excluded)",
        r"$\frac{1}{T-1}\sum_{j=2}^{T}\frac{1}{j-1}\sum_{t=1}^{j-1} Z_{t,j}$"
        r" (zero-shot accuracy on task $j$ after each earlier task; ZSCL, Zheng et al., 2023)",
        True,
        ZS.name,
        mtil_transfer,
    ),
    Metric(
        "mtil_avg",
        "Avg",
        "mean of ZS[t, j] over stages t = 1..T and tasks j = 1..T",
        r"$\frac{1}{T^2}\sum_{t=1}^{T}\sum_{j=1}^{T} Z_{t,j}$",
        True,
        ZS.name,
        mtil_avg,
    ),
    Metric(
        "mtil_last",
        "Last",
        "mean_j ZS[T, j] over tasks",
        r"$\frac{1}{T}\sum_{j=1}^{T} Z_{T,j}$",
        True,
        ZS.name,
        mtil_last,
    ),
)
BY_KEY: dict[str, Metric] = {m.key: m for m in METRICS}
# The comparison table's columns, in order: every scalar metric.
TABLE: tuple[Metric, ...] = tuple(m for m in METRICS if not m.per_dataset)
DEFINITIONS: dict[str, str] = {m.key: m.definition for m in METRICS}
SE_DEFINITIONS = {
    "delta_lp_se": "binomial standard error of delta_lp per dataset: sqrt(p0 (1 - p0) / n + "
    "pT (1 - pT) / n), n = the dataset's test images (metrics.json 'test_images')",
    "delta_lp_controls_se": "standard error of delta_lp_controls: sqrt(sum_c se_c^2) / #controls",
}
HEADLINE: tuple[Metric, ...] = tuple(m for m in TABLE if m.headline)


def of_matrix(kind: str) -> tuple[Metric, ...]:
    """The metrics ``metrics.json`` reports for one kind of matrix (lp, zs, head)."""
    return tuple(m for m in METRICS if m.matrix in ("any", kind))


def summarize(
    r: np.ndarray, n_tasks: int, columns: list[str], kind: str = LP.name, n_test=None
) -> dict:
    """Every metric of one matrix, as a JSON-ready dict (per-dataset ones by column name); with
    the test-set sizes ``n_test`` (per column), also the binomial standard errors of delta-LP."""
    out = {}
    for m in of_matrix(kind):
        value = m.fn(r, n_tasks)
        if m.per_dataset:
            out[m.key] = {name: float(v) for name, v in zip(columns, value, strict=True)}
        else:
            out[m.key] = value
    if n_test is not None:
        se = delta_lp_se(r, n_tasks, n_test)
        out["delta_lp_se"] = {name: float(v) for name, v in zip(columns, se, strict=True)}
        out["delta_lp_controls_se"] = mean_se(se[n_tasks:])
    return out


def table_values(matrices: Mapping[str, np.ndarray | None], n_tasks: int) -> dict[str, float]:
    """Every comparison-table metric of one run, from its matrices by kind (each (T+1) rows, NaN
    where absent; a kind missing or None gives NaN for its metrics)."""
    out = {}
    for m in TABLE:
        r = matrices.get(m.table_matrix)
        out[m.key] = float("nan") if r is None else m.fn(r, n_tasks)
    return out
