"""Plot functions: pure (data in, Figure out), annotated with the data they were given."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from benchmark.report import plots

TASKS = ["a", "b"]
CONTROLS = ["c"]


def _cells(fig: Figure) -> dict[tuple[int, int], str]:
    """Annotation texts of a heatmap, keyed by (row, column)."""
    ax = fig.axes[0]
    return {
        (int(round(t.get_position()[1])), int(round(t.get_position()[0]))): t.get_text()
        for t in ax.texts
        if (t.get_gid() or "").startswith("cell")
    }


def _matrix(values) -> pd.DataFrame:
    m = pd.DataFrame(values, columns=TASKS + CONTROLS, dtype=float)
    m.index.name = "stage"
    return m


LP = _matrix([[50.0, 60.0, 70.0], [80.0, 55.5, 68.0], [75.0, 90.25, 61.0]])


def test_heatmap_has_one_annotation_per_cell_with_its_value():
    values = np.array([[1.0, 2.25, np.nan], [-3.5, 40.0, 0.0]])
    fig = plots.heatmap(values, ["r0", "r1"], ["x", "y", "z"], n_tasks=2, fmt="{:.2f}")
    assert isinstance(fig, Figure)
    assert _cells(fig) == {
        (0, 0): "1.00",
        (0, 1): "2.25",
        (0, 2): "n/a",
        (1, 0): "-3.50",
        (1, 1): "40.00",
        (1, 2): "0.00",
    }
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["r0", "r1"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y", "z"]


def test_accuracy_heatmap_labels_stages_and_separates_tasks_from_controls():
    fig = plots.accuracy_heatmap(LP, TASKS, kind="lp", title="t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["pretrained", "after a", "after b"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    cells = _cells(fig)
    assert len(cells) == LP.size
    assert cells[(2, 1)] == "90.2" and cells[(1, 0)] == "80.0" and cells[(0, 2)] == "70.0"
    # the separator: a vertical line between the last task (x = 1) and the first control (x = 2)
    assert any(np.allclose(line.get_xdata(), 1.5) for line in ax.lines)
    assert {t.get_text() for t in ax.texts} >= {"tasks", "controls"}
    # the task trained at each stage is outlined
    assert len(ax.patches) == 2
    assert plt.get_fignums() == []  # pure: nothing registered with pyplot


def test_delta_heatmap_is_diverging_and_centred_on_zero():
    fig = plots.delta_heatmap(LP, TASKS, title="d")
    ax = fig.axes[0]
    image = ax.images[0]
    assert image.norm.vmin == pytest.approx(-image.norm.vmax)
    assert image.norm(0.0) == pytest.approx(0.5)
    assert image.cmap.name.startswith("RdBu")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["after a", "after b"]
    cells = _cells(fig)
    assert len(cells) == 2 * 3
    # R[t, j] - R[0, j]
    assert cells[(0, 0)] == "+30.0" and cells[(1, 1)] == "+30.2" and cells[(1, 2)] == "-9.0"
    limited = plots.delta_heatmap(LP, TASKS, limit=50.0).axes[0].images[0].norm
    assert (limited.vmin, limited.vmax) == (-50.0, 50.0)


def _records(values: dict[tuple[str, int], pd.DataFrame]) -> pd.DataFrame:
    rows = []
    for (strategy, seed), m in values.items():
        for stage, row in m.iterrows():
            for dataset, acc in row.items():
                role = "task" if dataset in TASKS else "control"
                rows.append(
                    {"strategy": strategy, "seed": seed, "stage": stage, "dataset": dataset}
                    | {"role": role, "kind": "lp", "accuracy": acc}
                )
    return pd.DataFrame(rows)


RECORDS = _records(
    {
        ("ft", 0): LP,
        ("ft", 1): LP + 2.0,
        ("ldifs", 0): _matrix([[50.0, 60.0, 70.0], [80.0, 61.0, 70.0], [79.0, 90.0, 69.0]]),
    }
)


def test_delta_lp_bars_are_means_over_seeds_with_std_error_bars():
    fig = plots.delta_lp_bars(RECORDS, TASKS, CONTROLS, strategies=["ft", "ldifs"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "a",
        "c",
        "mean past tasks",
        "mean controls",
    ]
    ft, ldifs = [c for c in ax.containers if isinstance(c, BarContainer)]
    # ft: delta of the past task a = 75 - 50 = 25 on both seeds (the +2 shift cancels); control c:
    # 61 - 70 = -9 on both seeds.
    assert [p.get_height() for p in ft.patches] == pytest.approx([25.0, -9.0, 25.0, -9.0])
    assert [p.get_height() for p in ldifs.patches] == pytest.approx([29.0, -1.0, 29.0, -1.0])
    assert ft.errorbar is not None and ldifs.errorbar is None  # one ldifs seed: no std
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["ft (n=2)", "ldifs (n=1)"]


def test_stage_curves_plot_the_mean_over_seeds_and_a_band_for_several_seeds():
    fig = plots.stage_curves(RECORDS, TASKS, CONTROLS, kind="lp", strategies=["ft", "ldifs"])
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["a (task 1)", "b (task 2)", "c (control)"]
    lines = [line for line in panels[1].lines if len(line.get_xdata()) == 3]
    ft, ldifs = lines
    assert list(ft.get_ydata()) == pytest.approx([61.0, 56.5, 91.25])  # mean of b and b + 2
    assert list(ldifs.get_ydata()) == pytest.approx([60.0, 61.0, 90.0])
    assert len(panels[1].collections) == 1  # the ft band; ldifs has one seed
    band = panels[1].collections[0].get_paths()[0].vertices
    std = np.std([0.0, 2.0], ddof=1)
    assert band[:, 1].max() == pytest.approx(91.25 + std)


def test_figures_save_headless(tmp_path):
    fig = plots.accuracy_heatmap(LP, TASKS)
    fig.savefig(tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 1000
