"""Annotated heatmaps of accuracy matrices and of delta-LP (stages x datasets)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from benchmark import metrics
from benchmark.kinds import LP
from benchmark.kinds import label as kind_label
from benchmark.report.plots.style import STYLE, figure, label_spans, stage_labels


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
    label_spans(ax, groups, ha="center", va="bottom")


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

    with matplotlib.rc_context(STYLE):
        label_width = 0.075 * max(len(s) for s in row_labels)
        fig = figure(1.2 + label_width + 0.85 * n_cols, 1.7 + 0.42 * n_rows)
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
    kind: str = LP.name,
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
        cbar_label=kind_label(kind),
        boxes=_trained_boxes(stages, n_tasks),
        note="boxed: the task trained at that stage",
    )


def delta_matrix(matrix: pd.DataFrame) -> pd.DataFrame:
    """R[t, j] - R[0, j] for stages t >= 1 (stage 0 is zero by definition and left out)."""
    if 0 not in matrix.index:
        raise ValueError("the matrix has no stage 0 (pretrained) row")
    ordered = matrix.loc[[0] + [t for t in matrix.index if t != 0]]
    delta = metrics.delta_from_pretrained(ordered.to_numpy(dtype=float))
    return pd.DataFrame(delta, index=ordered.index, columns=ordered.columns).drop(index=0)


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
