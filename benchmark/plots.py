"""Figures from saved results: pure functions, data in -> ``matplotlib.figure.Figure`` out.

Nothing here trains, reads files or touches pyplot's global state: every figure is a bare
``Figure`` attached to an Agg canvas, so the functions work headless, in tests and in threads, and
the caller decides where to save (``fig.savefig(path)``). Inputs are the saved data: accuracy
matrices (DataFrame, index = stage, columns = tasks then controls, as in ``<kind>_matrix.csv``) and
tidy records (the columns of ``records.csv``).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.transforms import blended_transform_factory

KIND_NAMES = {
    "lp": "linear-probe accuracy (%)",
    "zs": "zero-shot accuracy (%)",
    "head": "task-head accuracy (%)",
}
_STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
}


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def stage_labels(tasks: Sequence[str], stages: Sequence[int]) -> list[str]:
    """Stage 0 -> "pretrained", stage k -> "after <task k>"."""
    return ["pretrained" if s == 0 else f"after {tasks[s - 1]}" for s in stages]


def strategy_colors(strategies: Sequence[str]) -> dict[str, tuple]:
    """A fixed colour per strategy, in the given order (tab10, then tab20)."""
    palette = list(matplotlib.colormaps["tab10"].colors) + list(
        matplotlib.colormaps["tab20"].colors[1::2]
    )
    return {s: palette[i % len(palette)] for i, s in enumerate(strategies)}


def _text_color(rgba: Sequence[float]) -> str:
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _heatmap_norm(
    values: np.ndarray, vmin: float | None, vmax: float | None, center: float | None
) -> Normalize:
    """Colour norm over the finite values, or [vmin, vmax]; diverging around ``center``."""
    finite = values[np.isfinite(values)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if center is not None:
        half = max(abs(lo - center), abs(hi - center), 1e-9)
        return TwoSlopeNorm(vcenter=center, vmin=center - half, vmax=center + half)
    return Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1.0)


def _annotate_cells(ax, values, fmt, colormap, norm, boxes) -> None:
    """One text per cell ("n/a" for NaN), legible on its colour; ``boxes`` bold and outlined."""
    n_rows, n_cols = values.shape
    boxed = set(boxes)
    for i in range(n_rows):
        for j in range(n_cols):
            v = values[i, j]
            if np.isfinite(v):
                text, color = fmt.format(v), _text_color(colormap(norm(v)))
            else:
                text, color = "n/a", "0.3"
            weight = "bold" if (i, j) in boxed else "normal"
            style = {"ha": "center", "va": "center", "color": color, "fontweight": weight}
            ax.text(j, i, text, gid=f"cell-{i}-{j}", **style)
    for i, j in boxes:  # inset so the white cell grid does not hide the outline
        corner = (j - 0.45, i - 0.42)
        ax.add_patch(
            Rectangle(corner, 0.9, 0.84, fill=False, edgecolor="black", linewidth=2, zorder=4)
        )


def _label_spans(ax, spans, *, separators: bool = False, **text_style) -> None:
    """Name each non-empty (name, start, stop) column span above the axes.

    ``separators`` draws a dotted line before every span but the first column.
    """
    top = blended_transform_factory(ax.transData, ax.transAxes)
    for name, start, stop in spans:
        if stop > start:
            ax.text((start + stop - 1) / 2, 1.01, name, transform=top, **text_style)
            if separators and start > 0:
                ax.axvline(start - 0.5, color="0.5", linestyle=":", linewidth=1)


def _heatmap_grid(ax, row_labels, col_labels, n_tasks: int) -> None:
    """Tick labels, a white cell grid and the tasks | controls separator and group names."""
    n_rows, n_cols = len(row_labels), len(col_labels)
    ax.set_xticks(range(n_cols), col_labels, rotation=30, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n_rows), row_labels)
    ax.set_xticks(np.arange(-0.5, n_cols, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, n_rows, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=0.8)
    ax.tick_params(which="minor", length=0)
    if 0 < n_tasks < n_cols:
        ax.axvline(n_tasks - 0.5, color="black", linewidth=3)
    groups = [("tasks", 0, n_tasks), ("controls", n_tasks, n_cols)]
    _label_spans(ax, groups, ha="center", va="bottom")


def heatmap(
    values: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    n_tasks: int,
    *,
    title: str = "",
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    center: float | None = None,
    fmt: str = "{:.1f}",
    cbar_label: str = "",
    boxes: Sequence[tuple[int, int]] = (),
    note: str = "",
) -> Figure:
    """Annotated heatmap: one text per cell ("n/a" for NaN), tasks | controls separated.

    ``n_tasks`` leading columns are tasks; a thick line separates them from the controls.
    ``center`` gives a diverging norm centred on that value (TwoSlopeNorm). ``boxes`` are
    (row, column) cells outlined in black (e.g. the task trained at that stage).
    """
    values = np.asarray(values, dtype=float)
    n_rows, n_cols = values.shape
    if (len(row_labels), len(col_labels)) != values.shape:
        raise ValueError(
            f"{len(row_labels)} row and {len(col_labels)} column labels for a {values.shape} matrix"
        )
    norm = _heatmap_norm(values, vmin, vmax, center)
    colormap = matplotlib.colormaps[cmap].with_extremes(bad="0.85")

    with matplotlib.rc_context(_STYLE):
        label_width = 0.075 * max(len(s) for s in row_labels)
        fig = _figure(1.2 + label_width + 0.85 * n_cols, 1.7 + 0.42 * n_rows)
        ax = fig.add_subplot()
        image = ax.imshow(np.ma.masked_invalid(values), cmap=colormap, norm=norm, aspect="auto")
        _annotate_cells(ax, values, fmt, colormap, norm, boxes)
        _heatmap_grid(ax, row_labels, col_labels, n_tasks)
        if title:
            ax.set_title(title, pad=18)
        cbar = fig.colorbar(image, ax=ax, shrink=0.9, pad=0.02)
        if cbar_label:
            cbar.set_label(cbar_label)
        if note:  # a figure-level label, so constrained layout keeps it clear of the ticks
            fig.supxlabel(note, x=0.01, ha="left", fontsize=8, color="0.3")
    return fig


def _trained_boxes(stages: Sequence[int], n_tasks: int) -> list[tuple[int, int]]:
    return [(i, s - 1) for i, s in enumerate(stages) if 1 <= s <= n_tasks]


def accuracy_heatmap(
    matrix: pd.DataFrame,
    tasks: Sequence[str],
    *,
    kind: str = "lp",
    title: str = "",
    vmin: float | None = None,
    vmax: float | None = None,
) -> Figure:
    """Heatmap of one saved matrix (``<kind>_matrix.csv``): rows = stages, columns = datasets."""
    stages = [int(s) for s in matrix.index]
    n_tasks = sum(1 for c in matrix.columns if c in tasks)
    return heatmap(
        matrix.to_numpy(dtype=float),
        stage_labels(tasks, stages),
        [str(c) for c in matrix.columns],
        n_tasks,
        title=title,
        cmap="viridis",
        vmin=vmin,
        vmax=vmax,
        cbar_label=KIND_NAMES.get(kind, kind),
        boxes=_trained_boxes(stages, n_tasks),
        note="boxed: the task trained at that stage",
    )


def delta_matrix(matrix: pd.DataFrame) -> pd.DataFrame:
    """R[t, j] - R[0, j] for stages t >= 1 (stage 0 is zero by definition and left out)."""
    if 0 not in matrix.index:
        raise ValueError("the matrix has no stage 0 (pretrained) row")
    return (matrix - matrix.loc[0]).drop(index=0)


def delta_heatmap(
    matrix: pd.DataFrame, tasks: Sequence[str], *, title: str = "", limit: float | None = None
) -> Figure:
    """Delta-LP heatmap, diverging colour map centred on 0 (red = forgetting, blue = gain).

    ``limit`` fixes the colour range to [-limit, limit] (to share it between runs).
    """
    delta = delta_matrix(matrix)
    stages = [int(s) for s in delta.index]
    n_tasks = sum(1 for c in delta.columns if c in tasks)
    values = delta.to_numpy(dtype=float)
    if limit is None:
        finite = np.abs(values[np.isfinite(values)])
        limit = float(finite.max()) if finite.size else 1.0
    limit = max(limit, 1e-6)
    return heatmap(
        values,
        stage_labels(tasks, stages),
        [str(c) for c in delta.columns],
        n_tasks,
        title=title,
        cmap="RdBu",
        vmin=-limit,
        vmax=limit,
        center=0.0,
        fmt="{:+.1f}",
        cbar_label="ΔLP = R[t, j] − R[0, j] (points)",
        boxes=_trained_boxes(stages, n_tasks),
        note="boxed: the task trained at that stage; negative (red) = forgetting",
    )


def _mean_std(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Column-wise mean and sample std (ddof = 1) over rows (= seeds); std 0 for one seed."""
    return frame.mean(), frame.std(ddof=1).fillna(0.0)


def final_delta_lp(records: pd.DataFrame, tasks: Sequence[str]) -> pd.DataFrame:
    """Delta-LP R[T, j] - R[0, j] of every run: rows = (strategy, seed), columns = datasets."""
    lp = records[records["kind"] == "lp"]
    last = len(tasks)
    table = lp.pivot_table(
        index=["strategy", "seed"], columns=["stage", "dataset"], values="accuracy", aggfunc="first"
    )
    return table[last] - table[0]


def _bar_groups(
    records: pd.DataFrame, tasks: Sequence[str], controls: Sequence[str]
) -> tuple[pd.DataFrame, list[str]]:
    """Final delta-LP of every run over the bar groups, and the groups in drawing order.

    Groups: past tasks (tasks 1..T-1), controls, then their per-run means ("mean past tasks",
    "mean controls") when there are any.
    """
    past = list(tasks[:-1])
    delta = final_delta_lp(records, tasks)
    delta = delta.reindex(columns=past + list(controls))
    groups = past + list(controls)
    summary = {}
    if past:
        summary["mean past tasks"] = delta[past].mean(axis=1)
    if controls:
        summary["mean controls"] = delta[list(controls)].mean(axis=1)
    delta = delta.assign(**summary)
    groups += list(summary)
    return delta, groups


def _draw_bars(ax, delta: pd.DataFrame, groups: list[str], strategies, colors) -> None:
    """Side-by-side bars per group, one per strategy: mean over seeds, +- std for several."""
    width = 0.8 / max(1, len(strategies))
    x = np.arange(len(groups))
    for k, strategy in enumerate(strategies):
        if strategy not in delta.index.get_level_values("strategy"):
            continue
        runs = delta.xs(strategy, level="strategy")
        mean, std = _mean_std(runs[groups])
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

    with matplotlib.rc_context(_STYLE):
        per_group = 0.3 + 0.16 * max(1, len(strategies))
        fig = _figure(min(10.0, max(5.0, 2.8 + per_group * len(groups))), 4.2)
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
        _label_spans(ax, spans, separators=True, ha="center")
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


def _curve_panel(ax, data, dataset, tasks, strategies, colors, n_stages: int) -> None:
    """One dataset's panel: a mean line (and +- std band) per strategy, the task's stage dashed."""
    for strategy in strategies:
        runs = data[data["strategy"] == strategy].pivot_table(
            index="seed", columns="stage", values="accuracy", aggfunc="first"
        )
        if runs.empty:
            continue
        mean, std = _mean_std(runs)
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
    kind: str = "lp",
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
    with matplotlib.rc_context(_STYLE):
        fig = _figure(0.6 + 3.1 * ncols, 0.9 + 2.5 * nrows)
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
        for ax in axes[len(datasets) :]:
            ax.set_axis_off()
        for ax, dataset in zip(axes, datasets, strict=False):
            data = sub[sub["dataset"] == dataset]
            _curve_panel(ax, data, dataset, tasks, strategies, colors, n_stages)
        for i, ax in enumerate(axes[: len(datasets)]):
            if i % ncols == 0:
                ax.set_ylabel(KIND_NAMES.get(kind, kind))
            if i + ncols >= len(datasets):  # no panel below this one
                ax.set_xlabel("stage (k = after task k)")
        if title:
            fig.suptitle(title)
        _curves_legend(fig, sub, strategies, colors)
    return fig
