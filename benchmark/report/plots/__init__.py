"""Figures from saved results: pure functions, data in -> ``matplotlib.figure.Figure`` out.

Nothing here trains, reads files or touches pyplot's global state: every figure is a bare
``Figure`` attached to an Agg canvas, so the functions work headless, in tests and in threads, and
the caller decides where to save (``fig.savefig(path)``). Inputs are the saved data: accuracy
matrices (DataFrame, index = stage, columns = tasks then controls, as in ``<kind>_matrix.csv``) and
tidy records (the columns of ``records.csv``).
"""

from benchmark.report.plots.bars import delta_lp_bars, final_delta_lp
from benchmark.report.plots.curves import stage_curves
from benchmark.report.plots.heatmaps import accuracy_heatmap, delta_heatmap, delta_matrix, heatmap
from benchmark.report.plots.style import stage_labels, strategy_colors

__all__ = [
    "accuracy_heatmap",
    "delta_heatmap",
    "delta_lp_bars",
    "delta_matrix",
    "final_delta_lp",
    "heatmap",
    "stage_curves",
    "stage_labels",
    "strategy_colors",
]
