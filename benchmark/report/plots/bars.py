"""Bars of the final delta-LP per past task and control, one bar per strategy."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from benchmark import metrics
from benchmark.kinds import LP
from benchmark.report.aggregate import mean_std
from benchmark.report.plots.style import STYLE, figure, label_spans, strategy_colors


def _lp_matrices(records: pd.DataFrame, tasks: Sequence[str]):
    """Each run's LP matrix (stages 0..T, datasets with the tasks first, NaN where absent):
    yields ((strategy, seed), matrix, datasets)."""
    lp = records[records["kind"] == LP.name]
    datasets = list(tasks) + [d for d in dict.fromkeys(lp["dataset"]) if d not in tasks]
    for key, run in lp.groupby(["strategy", "seed"], sort=False):
        m = run.pivot_table(index="stage", columns="dataset", values="accuracy", aggfunc="first")
        yield (
            key,
            m.reindex(index=range(len(tasks) + 1), columns=datasets).to_numpy(float),
            datasets,
        )


def final_delta_lp(records: pd.DataFrame, tasks: Sequence[str]) -> pd.DataFrame:
    """Delta-LP R[T, j] - R[0, j] of every run (benchmark.metrics.delta_lp): rows = (strategy,
    seed), columns = datasets (tasks first); NaN where a run lacks the entry."""
    return _per_run(
        records,
        tasks,
        lambda m, n, datasets: dict(zip(datasets, metrics.delta_lp(m, n), strict=True)),
    )


def _per_run(records, tasks, values) -> pd.DataFrame:
    rows = {
        key: values(m, len(tasks), datasets) for key, m, datasets in _lp_matrices(records, tasks)
    }
    index = pd.MultiIndex.from_tuples(list(rows), names=["strategy", "seed"])
    return pd.DataFrame(list(rows.values()), index=index)


def _bar_groups(
    records: pd.DataFrame, tasks: Sequence[str], controls: Sequence[str]
) -> tuple[pd.DataFrame, list[str]]:
    """Final delta-LP of every run over the bar groups, and the groups in drawing order.

    Groups: past tasks (tasks 1..T-1), controls, then their per-run means ("mean past tasks",
    "mean controls": the comparison table's metrics) when there are any.
    """
    past = list(tasks[:-1])
    groups = past + list(controls)

    def values(m, n, datasets) -> dict:
        out = dict(zip(datasets, metrics.delta_lp(m, n), strict=True))
        if past:
            out["mean past tasks"] = metrics.delta_lp_past_tasks(m, n)
        if controls:
            out["mean controls"] = metrics.delta_lp_controls(m, n)
        return out

    delta = _per_run(records, tasks, values)
    groups += [g for g in ("mean past tasks", "mean controls") if g in delta.columns]
    return delta.reindex(columns=groups), groups


def _draw_bars(ax, delta: pd.DataFrame, groups: list[str], strategies, colors) -> None:
    """Side-by-side bars per group, one per strategy: mean over seeds, +- std for several."""
    width = 0.8 / max(1, len(strategies))
    x = np.arange(len(groups))
    for k, strategy in enumerate(strategies):
        if strategy not in delta.index.get_level_values("strategy"):
            continue
        runs = delta.xs(strategy, level="strategy")
        mean, std = mean_std(runs[groups])
        offset = (k - (len(strategies) - 1) / 2) * width
        ax.bar(
            x + offset,
            mean.to_numpy(),
            width,
            yerr=std.to_numpy() if len(runs) > 1 else None,
            capsize=3,
            color=colors[strategy],
            label=f"{strategy} (n={len(runs)})",
            edgecolor="black",
            linewidth=0.5,
        )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, groups, rotation=30, ha="right", rotation_mode="anchor")


def delta_lp_bars(
    records: pd.DataFrame,
    tasks: Sequence[str],
    controls: Sequence[str],
    *,
    strategies: Sequence[str] | None = None,
    title: str = "",
) -> Figure:
    """Final delta-LP per past task and control, one bar per strategy (mean over seeds, +- std).

    Two summary groups at the right: the mean over past tasks (tasks 1..T-1) and over controls,
    averaged per run first, as in the comparison table.
    """
    strategies = list(strategies or dict.fromkeys(records["strategy"]))
    colors = strategy_colors(strategies)
    n_past, n_controls = len(tasks[:-1]), len(controls)
    delta, groups = _bar_groups(records, tasks, controls)

    with matplotlib.rc_context(STYLE):
        per_group = 0.3 + 0.16 * max(1, len(strategies))
        fig = figure(min(10.0, max(5.0, 2.8 + per_group * len(groups))), 4.2)
        ax = fig.add_subplot()
        if not groups:
            ax.text(0.5, 0.5, "no past tasks or controls", ha="center", va="center")
            ax.set_axis_off()
            return fig
        _draw_bars(ax, delta, groups, strategies, colors)
        ax.set_ylabel("ΔLP = R[T, j] − R[0, j] (points)")
        spans = [
            ("past tasks", 0, n_past),
            ("controls", n_past, n_past + n_controls),
            ("averages", n_past + n_controls, len(groups)),
        ]
        label_spans(ax, spans, separators=True, ha="center")
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.grid(axis="y", color="0.9")
        ax.set_axisbelow(True)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="strategy (seeds)")
        if title:
            ax.set_title(title, pad=18)
        fig.supxlabel(
            "bars: mean over seeds; error bars: sample std (ddof=1); negative = forgetting",
            x=0.01,
            ha="left",
            fontsize=8,
            color="0.3",
        )
    return fig
