"""The report's figures: files written for one run and for one sequence, from saved runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.kinds import LP, MATRIX_KINDS
from benchmark.kinds import label as kind_label
from benchmark.report import plots
from benchmark.report.runs import Run
from benchmark.results import safe_name


def _limits(runs: Sequence[Run], kind: str) -> tuple[float, float]:
    values = np.concatenate([r.matrix(kind).to_numpy(dtype=float).ravel() for r in runs] or [[]])
    values = values[np.isfinite(values)]
    return (float(values.min()), float(values.max())) if values.size else (0.0, 100.0)


def _delta_limit(runs: Sequence[Run]) -> float:
    deltas = [plots.delta_matrix(r.matrix(LP.name)).to_numpy(dtype=float).ravel() for r in runs]
    values = np.abs(np.concatenate(deltas or [[]]))
    values = values[np.isfinite(values)]
    return float(values.max()) if values.size else 1.0


def _save(fig, path: Path, formats: Sequence[str]) -> list[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in formats:
        target = path.with_suffix(f".{ext}")
        fig.savefig(target)
        out.append(target)
    return out


def run_figures(run: Run, runs: Sequence[Run], root: Path, formats) -> dict[str, Path]:
    """Heatmaps of every matrix of the run, delta-LP's after LP's (the report's order); colour
    ranges shared per sequence."""
    folder = root / safe_name(run.sequence) / safe_name(run.strategy) / f"seed{run.seed}"
    label = f"{run.sequence} · {run.strategy} · seed {run.seed}"
    figures: dict[str, Path] = {}
    for kind in MATRIX_KINDS:
        m = run.matrix(kind)
        if m.empty:
            continue
        low, high = _limits(runs, kind)
        fig = plots.accuracy_heatmap(
            m, run.tasks, kind=kind, title=f"{label}: {kind_label(kind)}", vmin=low, vmax=high
        )
        figures[kind] = _save(fig, folder / f"{kind}_heatmap", formats)[0]
        if kind == LP.name and 0 in m.index and len(m) > 1:
            fig = plots.delta_heatmap(
                m,
                run.tasks,
                title=f"{label}: ΔLP relative to the pretrained encoder",
                limit=_delta_limit([r for r in runs if 0 in r.matrix(LP.name).index]),
            )
            figures["delta_lp"] = _save(fig, folder / "delta_lp_heatmap", formats)[0]
    return figures


def sequence_figures(runs: Sequence[Run], root: Path, formats) -> dict[str, Path]:
    """Delta-LP bars and accuracy-over-stages curves of the complete runs of one sequence."""
    complete = [r for r in runs if r.complete]
    if not complete:
        return {}
    first = complete[0]
    folder = root / safe_name(first.sequence)
    records = pd.concat([r.records for r in complete], ignore_index=True)
    strategies = list(dict.fromkeys(r.strategy for r in complete))
    figures = {}
    fig = plots.delta_lp_bars(
        records,
        first.tasks,
        first.controls,
        strategies=strategies,
        title=f"{first.sequence}: final ΔLP per dataset",
    )
    figures["delta_lp_bars"] = _save(fig, folder / "delta_lp_bars", formats)[0]
    for kind in MATRIX_KINDS:
        if (records["kind"] == kind).any():
            fig = plots.stage_curves(
                records,
                first.tasks,
                first.controls,
                kind=kind,
                strategies=strategies,
                title=f"{first.sequence}: {kind_label(kind)} over stages",
            )
            figures[f"curves_{kind}"] = _save(fig, folder / f"curves_{kind}", formats)[0]
    return figures
