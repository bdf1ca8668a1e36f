"""Report regenerated from saved run folders: figures, comparison table, report.md.

``main_report(RESULTS_DIR)`` finds every run folder under RESULTS_DIR (a folder holding
``records.csv``, as written by ``benchmark.results.RunResults``), recomputes every metric from the
saved records (``records.csv`` is the source; the matrix CSVs are views of it; ``config.json``
gives the task order when present) and writes RESULTS_DIR/report/:

    report.md                              figures and table, one section per sequence
    comparison.csv / .md / .tex            mean +- std over seeds per (sequence, strategy)
    comparison_columns.csv                 each table column and its definition
    runs.csv                               the same metrics for every run (one row per seed)
    <sequence>/delta_lp_bars.png           final delta-LP per past task and control, per strategy
    <sequence>/curves_<kind>.png           accuracy over stages per dataset, one line per strategy
    <sequence>/<strategy>/seed<N>/<kind>_heatmap.png and delta_lp_heatmap.png

Nothing is re-run and nothing outside RESULTS_DIR is read, so a copied results folder reports the
same on another machine. The report folder is rebuilt from scratch each time (written next to the
old one, then swapped in), so a deleted run disappears from every table and figure.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark import plots
from benchmark.aggregate import TABLE_METRICS, aggregate_seeds, least_forgetting
from benchmark.aggregate import run_metrics as compute_run_metrics
from benchmark.errors import CFBenchError
from benchmark.report_tables import (
    DECIMALS,
    columns_legend,
    format_number,
    latex_table,
    markdown_table,
    table_keys,
)
from benchmark.results import KINDS, RECORD_COLUMNS, matrix, safe_name, write_atomic

REPORT_DIR = "report"
MARKER = ".cfbench-report"


@dataclass
class Run:
    """One saved run: identity, the sequence's datasets and its tidy records."""

    folder: Path
    sequence: str
    strategy: str
    seed: int
    tasks: list[str]
    controls: list[str]
    records: pd.DataFrame = field(repr=False)

    @property
    def columns(self) -> list[str]:
        return self.tasks + self.controls

    def matrix(self, kind: str) -> pd.DataFrame:
        return matrix(self.records, kind, self.columns)

    def metrics(self) -> dict[str, float]:
        """Every comparison-table metric (LP; MTIL on the zero-shot matrix when there is one)."""
        n_tasks = len(self.tasks)
        zs = self.matrix("zs").reindex(columns=self.columns)  # NaN where a dataset has no ZS
        zs_values = zs.to_numpy(dtype=float) if len(zs) == n_tasks + 1 else None
        return compute_run_metrics(self.matrix("lp").to_numpy(dtype=float), n_tasks, zs_values)

    @property
    def complete(self) -> bool:
        """Every stage 0..T has a linear-probe accuracy for every dataset."""
        lp = self.matrix("lp")
        stages = list(range(len(self.tasks) + 1))
        return (
            list(lp.index) == stages
            and list(lp.columns) == self.columns
            and not lp.isna().to_numpy().any()
        )


def load_run(folder: Path) -> Run:
    """Read one run folder; CFBenchError (one line) when records.csv is not a cfbench record."""
    folder = Path(folder)
    path = folder / "records.csv"
    try:
        records = pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise CFBenchError(f"cannot read {path}: {error}") from None
    missing = [c for c in RECORD_COLUMNS if c not in records.columns]
    if missing:
        raise CFBenchError(f"{path} lacks the columns {', '.join(missing)}")
    if records.empty:
        raise CFBenchError(f"{path} has no records")
    identity = {}
    for key in ("sequence", "strategy", "seed"):
        values = records[key].unique()
        if len(values) != 1:
            raise CFBenchError(f"{path} mixes several values of {key}: {list(values)}")
        identity[key] = values[0]
    tasks, controls = _datasets(folder, records)
    return Run(
        folder=folder,
        sequence=str(identity["sequence"]),
        strategy=str(identity["strategy"]),
        seed=int(identity["seed"]),
        tasks=tasks,
        controls=controls,
        records=records,
    )


def _datasets(folder: Path, records: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Tasks in training order and controls: config.json when it has them, else the records."""
    try:
        spec = json.loads((folder / "config.json").read_text())["sequence_spec"]
        return [str(t) for t in spec["tasks"]], [str(c) for c in spec["controls"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    # The runner writes every stage's records in sequence order: tasks, then controls.
    first = records.drop_duplicates("dataset")
    tasks = first.loc[first["role"] == "task", "dataset"].astype(str).tolist()
    controls = first.loc[first["role"] == "control", "dataset"].astype(str).tolist()
    return tasks, controls


def discover_runs(results_dir: Path) -> tuple[list[Run], list[str]]:
    """Every readable run under results_dir, sorted, and notes on the folders left out."""
    results_dir = Path(results_dir)
    runs: list[Run] = []
    notes: list[str] = []
    for path in sorted(results_dir.rglob("records.csv")):
        relative = path.parent.relative_to(results_dir)
        if relative.parts[:1] == (REPORT_DIR,) or any(p.startswith(".") for p in relative.parts):
            continue
        try:
            runs.append(load_run(path.parent))
        except CFBenchError as error:
            notes.append(f"skipped `{relative}`: {error}")
    runs.sort(key=lambda r: (r.sequence, r.strategy, r.seed, str(r.folder)))
    unique: dict[tuple, Run] = {}
    for run in runs:
        key = (run.sequence, run.strategy, run.seed)
        if key in unique:
            notes.append(
                f"skipped `{run.folder.relative_to(results_dir)}`: same sequence, strategy and "
                f"seed as `{unique[key].folder.relative_to(results_dir)}`"
            )
        else:
            unique[key] = run
    return list(unique.values()), notes


def per_run_table(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per complete run: identity and every comparison-table metric."""
    rows = []
    for run in runs:
        if not run.complete:
            continue
        rows.append(
            {"sequence": run.sequence, "strategy": run.strategy, "seed": run.seed, **run.metrics()}
        )
    return pd.DataFrame(rows, columns=["sequence", "strategy", "seed", *TABLE_METRICS])


def forgets_least_sentence(sequence: str, table: pd.DataFrame) -> str:
    """One sentence naming the strategy with the highest mean delta-LP on controls."""
    winners, key = least_forgetting(table, DECIMALS)
    what = "controls" if key == "delta_lp_controls_mean" else "past tasks"
    if table.empty:
        return f"No complete run of `{sequence}` to rank."
    if not winners:
        return f"No strategy on `{sequence}` can be ranked: it has no controls and no past tasks."
    value = table.set_index("strategy").loc[winners[0], key]
    names = " and ".join(f"`{w}`" for w in winners)
    if len(table) == 1:
        return (
            f"On `{sequence}` only {names} was run, so it forgets least by default "
            f"(mean ΔLP on {what}: {format_number(value)} points)."
        )
    note = "" if what == "controls" else "; the sequence has no controls"
    verb = "forgets" if len(winners) == 1 else "tie as the strategies that forget"
    return (
        f"On `{sequence}`, {names} {verb} least: highest mean ΔLP on {what} "
        f"({format_number(value)} points{note}; ties broken by lower forgetting)."
    )


# ----------------------------------------------------------------------------- figures


def _limits(runs: Sequence[Run], kind: str) -> tuple[float, float]:
    values = np.concatenate([r.matrix(kind).to_numpy(dtype=float).ravel() for r in runs] or [[]])
    values = values[np.isfinite(values)]
    return (float(values.min()), float(values.max())) if values.size else (0.0, 100.0)


def _delta_limit(runs: Sequence[Run]) -> float:
    deltas = [plots.delta_matrix(r.matrix("lp")).to_numpy(dtype=float).ravel() for r in runs]
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


def _run_figures(run: Run, runs: Sequence[Run], root: Path, formats) -> dict[str, Path]:
    """Heatmaps of every matrix of the run and of delta-LP; colour ranges shared per sequence."""
    folder = root / safe_name(run.sequence) / safe_name(run.strategy) / f"seed{run.seed}"
    label = f"{run.sequence} · {run.strategy} · seed {run.seed}"
    figures: dict[str, Path] = {}
    for kind in KINDS:
        m = run.matrix(kind)
        if m.empty:
            continue
        low, high = _limits(runs, kind)
        fig = plots.accuracy_heatmap(
            m, run.tasks, kind=kind, title=f"{label}: {plots.KIND_NAMES[kind]}", vmin=low, vmax=high
        )
        figures[kind] = _save(fig, folder / f"{kind}_heatmap", formats)[0]
    lp = run.matrix("lp")
    if 0 in lp.index and len(lp) > 1:
        fig = plots.delta_heatmap(
            lp,
            run.tasks,
            title=f"{label}: ΔLP relative to the pretrained encoder",
            limit=_delta_limit([r for r in runs if 0 in r.matrix("lp").index]),
        )
        figures["delta_lp"] = _save(fig, folder / "delta_lp_heatmap", formats)[0]
    return figures


def _sequence_figures(runs: Sequence[Run], root: Path, formats) -> dict[str, Path]:
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
    for kind in KINDS:
        if (records["kind"] == kind).any():
            fig = plots.stage_curves(
                records,
                first.tasks,
                first.controls,
                kind=kind,
                strategies=strategies,
                title=f"{first.sequence}: {plots.KIND_NAMES[kind]} over stages",
            )
            figures[f"curves_{kind}"] = _save(fig, folder / f"curves_{kind}", formats)[0]
    return figures


# ----------------------------------------------------------------------------- the report


def _check_sequences(runs: Sequence[Run]) -> None:
    seen: dict[str, Run] = {}
    for run in runs:
        other = seen.setdefault(run.sequence, run)
        if (other.tasks, other.controls) != (run.tasks, run.controls):
            raise CFBenchError(
                f"runs of sequence '{run.sequence}' disagree on its datasets: {other.folder} has "
                f"tasks {other.tasks} controls {other.controls}, {run.folder} has tasks "
                f"{run.tasks} controls {run.controls}; report them from separate folders"
            )


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


_FIGURE_CAPTIONS = {
    "delta_lp_bars": "Final ΔLP = R[T, j] − R[0, j] per past task and control",
    "curves_lp": "Linear-probe accuracy over stages",
    "curves_zs": "Zero-shot accuracy over stages",
    "curves_head": "Task-head accuracy over stages",
}


def _write_tables(runs: Sequence[Run], out: Path) -> tuple[pd.DataFrame, str]:
    """Write runs.csv and comparison.*; return the comparison table and its Markdown text."""
    per_run = per_run_table(runs)
    keys = table_keys(per_run)
    table = aggregate_seeds(per_run, keys)
    per_run.to_csv(out / "runs.csv", index=False, float_format="%.4f")
    table.to_csv(out / "comparison.csv", index=False, float_format="%.4f")
    columns_legend(keys).to_csv(out / "comparison_columns.csv", index=False)
    md_table = markdown_table(table, keys) if len(table) else "No complete run.\n"
    write_atomic(out / "comparison.md", md_table)
    write_atomic(out / "comparison.tex", latex_table(table, keys))
    return table, md_table


def _report_head(n_runs: int, results_dir: Path, md_table: str) -> list[str]:
    """The title, what the report was made from, and the comparison table."""
    return [
        "# cfbench report",
        "",
        f"Regenerated from the {n_runs} run folder(s) under `{Path(results_dir).name}` "
        "(`python run_benchmark.py report RESULTS_DIR`); it reads only the saved run folders and "
        "re-runs nothing. Metrics are recomputed from each run's `records.csv`.",
        "",
        "## Comparison",
        "",
        md_table,
        "Also as [CSV](comparison.csv) (columns defined in "
        "[comparison_columns.csv](comparison_columns.csv)), [LaTeX](comparison.tex); "
        "per-run values in [runs.csv](runs.csv).",
        "",
    ]


def _sequence_section(
    seq_runs: Sequence[Run], table: pd.DataFrame, out: Path, formats: Sequence[str]
) -> list[str]:
    """One sequence's section: its datasets, who forgets least, its figures and its runs'."""
    first = seq_runs[0]
    sequence = first.sequence
    lines = [
        f"## Sequence `{sequence}`",
        "",
        f"Tasks in training order: {', '.join(f'`{t}`' for t in first.tasks)}. "
        f"Controls: {', '.join(f'`{c}`' for c in first.controls) or 'none'}.",
        "",
        forgets_least_sentence(sequence, table[table["sequence"] == sequence]),
        "",
    ]
    for name, path in _sequence_figures(seq_runs, out, formats).items():
        caption = _FIGURE_CAPTIONS[name]
        lines += [f"### {caption}", "", f"![{caption}]({_relative(path, out)})", ""]
    lines += ["### Runs", ""]
    for run in seq_runs:
        run_figs = _run_figures(run, seq_runs, out, formats)
        lines += [f"#### `{run.strategy}`, seed {run.seed}", ""]
        for name in ("lp", "delta_lp", "zs", "head"):
            if name in run_figs:
                alt = f"{name} {run.strategy} seed {run.seed}"
                lines += [f"![{alt}]({_relative(run_figs[name], out)})", ""]
    return lines


def build_report(results_dir: Path, out: Path, formats: Sequence[str] = ("png",)) -> None:
    """Write the whole report into ``out`` (an empty folder)."""
    runs, notes = discover_runs(results_dir)
    if not runs:
        raise CFBenchError(
            f"no runs under {results_dir} (a run folder holds records.csv; run "
            "'python run_benchmark.py --out DIR' first)"
        )
    _check_sequences(runs)
    for run in runs:
        if not run.complete:
            notes.append(
                f"`{_relative(run.folder, results_dir)}` is incomplete (interrupted?): its "
                "heatmaps are drawn but it is left out of the table, bars and curves"
            )
    table, md_table = _write_tables(runs, out)
    lines = _report_head(len(runs), results_dir, md_table)
    for sequence in dict.fromkeys(r.sequence for r in runs):
        seq_runs = [r for r in runs if r.sequence == sequence]
        lines += _sequence_section(seq_runs, table, out, formats)
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    write_atomic(out / "report.md", "\n".join(lines))


def main_report(results_dir: Path, formats: Sequence[str] = ("png",)) -> Path:
    """Regenerate RESULTS_DIR/report/ from the run folders under RESULTS_DIR and return it.

    Raises CFBenchError (one line) when RESULTS_DIR holds no run, or when RESULTS_DIR/report
    exists but was not written by this function (it is replaced wholesale).
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise CFBenchError(f"results folder {results_dir} does not exist")
    target = results_dir / REPORT_DIR
    if target.exists() and not (target / MARKER).is_file():
        raise CFBenchError(
            f"{target} exists and was not written by 'run_benchmark.py report'; move it away "
            "(the report folder is rebuilt from scratch)"
        )
    staging = Path(tempfile.mkdtemp(prefix=".report-", dir=results_dir))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; the report is meant to be shared
        (staging / MARKER).write_text("written by cfbench report; rebuilt on every run\n")
        build_report(results_dir, staging, formats)
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=".report-old-", dir=results_dir))
            os.replace(target, old / REPORT_DIR)
        os.replace(staging, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
