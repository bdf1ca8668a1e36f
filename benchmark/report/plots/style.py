"""What every cfbench figure shares: style, figure creation, labels and colours."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

STYLE = {
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


def figure(width: float, height: float) -> Figure:
    """A bare Figure on an Agg canvas (no pyplot state), constrained layout."""
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


def label_spans(ax, spans, *, separators: bool = False, **text_style) -> None:
    """Name each non-empty (name, start, stop) column span above the axes.

    ``separators`` draws a dotted line before every span but the first column.
    """
    top = blended_transform_factory(ax.transData, ax.transAxes)
    for name, start, stop in spans:
        if stop > start:
            ax.text((start + stop - 1) / 2, 1.01, name, transform=top, **text_style)
            if separators and start > 0:
                ax.axvline(start - 0.5, color="0.5", linestyle=":", linewidth=1)
