"""Accuracy over stages: one panel per dataset, one line per strategy."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from benchmark.kinds import LP
from benchmark.kinds import label as kind_label
from benchmark.report.aggregate import mean_std
from benchmark.report.plots.style import STYLE, figure, strategy_colors


def _curve_panel(ax, data, dataset, tasks, strategies, colors, n_stages: int) -> None:
    """One dataset's panel: a mean line (and +- std band) per strategy, the task's stage dashed."""
    for strategy in strategies:
        runs = data[data["strategy"] == strategy].pivot_table(
            index="seed", columns="stage", values="accuracy", aggfunc="first"
        )
        if runs.empty:
            continue
        mean, std = mean_std(runs)
        stages = mean.index.to_numpy()
        color = colors[strategy]
        ax.plot(stages, mean.to_numpy(), marker="o", markersize=3.5, color=color)
        if len(runs) > 1:
            low, high = (mean - std).to_numpy(), (mean + std).to_numpy()
            ax.fill_between(stages, low, high, color=color, alpha=0.2, linewidth=0)
    if dataset in tasks:
        j = list(tasks).index(dataset) + 1
        ax.axvline(j, color="0.4", linestyle="--", linewidth=0.9)
        ax.set_title(f"{dataset} (task {j})")
    else:
        ax.set_title(f"{dataset} (control)")
    ax.set_xticks(range(n_stages), ["pre"] + [str(s) for s in range(1, n_stages)])
    ax.set_xlim(-0.2, n_stages - 0.8)
    ax.grid(color="0.92")


def _curves_legend(fig: Figure, sub: pd.DataFrame, strategies, colors) -> None:
    """A legend below the panels: one entry per strategy with its number of seeds."""
    handles = [Line2D([], [], color=colors[s], marker="o") for s in strategies]
    counts = {s: sub[sub["strategy"] == s]["seed"].nunique() for s in strategies}
    legend = fig.legend(
        handles,
        [f"{s} (n={counts[s]})" for s in strategies],
        loc="outside lower center",
        ncols=min(len(strategies), 6),
        title="line: mean over seeds; band: ± sample std (ddof=1); "
        "dashed: stage at which the task is trained",
        frameon=False,
    )
    legend.get_title().set_fontsize(8)


def stage_curves(
    records: pd.DataFrame,
    tasks: Sequence[str],
    controls: Sequence[str],
    *,
    kind: str = LP.name,
    strategies: Sequence[str] | None = None,
    title: str = "",
    columns: int = 4,
) -> Figure:
    """Accuracy over stages, one panel per dataset, one line per strategy.

    Lines are the mean over seeds; the band is +- the sample std (ddof = 1) when there are several
    seeds. A dashed line marks the stage at which a task is trained.
    """
    sub = records[records["kind"] == kind]
    strategies = list(strategies or dict.fromkeys(sub["strategy"]))
    colors = strategy_colors(strategies)
    datasets = [d for d in list(tasks) + list(controls) if d in set(sub["dataset"])]
    n_stages = len(tasks) + 1
    nrows = max(1, -(-len(datasets) // columns))
    ncols = max(1, -(-len(datasets) // nrows))  # balanced rows: 9 panels -> 3 x 3, not 4 + 4 + 1
    with matplotlib.rc_context(STYLE):
        fig = figure(0.6 + 3.1 * ncols, 0.9 + 2.5 * nrows)
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
        for ax in axes[len(datasets) :]:
            ax.set_axis_off()
        for ax, dataset in zip(axes, datasets, strict=False):
            data = sub[sub["dataset"] == dataset]
            _curve_panel(ax, data, dataset, tasks, strategies, colors, n_stages)
        for i, ax in enumerate(axes[: len(datasets)]):
            if i % ncols == 0:
                ax.set_ylabel(kind_label(kind))
            if i + ncols >= len(datasets):  # no panel below this one
                ax.set_xlabel("stage (k = after task k)")
        if title:
            fig.suptitle(title)
        _curves_legend(fig, sub, strategies, colors)
    return fig
