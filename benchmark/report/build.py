"""Report regenerated from saved run folders: figures, comparison table, report.md.

``main_report(RESULTS_DIR)`` finds every run folder under RESULTS_DIR (a folder holding
``records.csv``, as written by ``benchmark.results.RunResults``), recomputes every metric from the
saved records (``records.csv`` is the source; the matrix CSVs are views of it; ``config.json``
gives the task order when present) and writes RESULTS_DIR/report/:

    report.md                              figures and table, one section per sequence
    comparison.csv / .md / .tex            mean +- std over seeds per (sequence, strategy)
    comparison_columns.csv                 each table column and its definition
    cost.csv                               what the runs cost (metrics.json "cost"), mean over seeds
    selection.csv                          swept strategies: the value chosen on validation
    runs.csv                               the same metrics for every run (one row per seed)
    <sequence>/delta_lp_bars.png           final delta-LP per past task and control, per strategy
    <sequence>/curves_<kind>.png           accuracy over stages per dataset, one line per strategy
    <sequence>/<strategy>/seed<N>/<kind>_heatmap.png and delta_lp_heatmap.png

Nothing is re-run and nothing outside RESULTS_DIR is read, so a copied results folder reports the
same on another machine. The report folder is rebuilt from scratch each time (written next to the
old one, then swapped in), so a deleted run disappears from every table and figure.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from benchmark.errors import CFBenchError
from benchmark.io import write_atomic
from benchmark.metrics import HEADLINE
from benchmark.report.aggregate import aggregate_seeds
from benchmark.report.cost import cost_section
from benchmark.report.figures import run_figures, sequence_figures
from benchmark.report.ranking import forgets_least_sentence, off_protocol_text
from benchmark.report.runs import REPORT_DIR, Run, check_sequences, discover_runs, per_run_table
from benchmark.report.seeds import seeds_section
from benchmark.report.selection import selection_markdown, selection_table
from benchmark.report.tables import (
    columns_legend,
    latex_table,
    markdown_table,
    table_keys,
)

MARKER = ".cfbench-report"


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


_FIGURE_CAPTIONS = {
    "delta_lp_bars": "Final ΔLP = R[T, j] − R[0, j] per past task and control",
    "curves_lp": "Linear-probe accuracy over stages",
    "curves_zs": "Zero-shot accuracy over stages",
    "curves_head": "Task-head accuracy over stages",
    "curves_vrf": "VRF accuracy over stages (task head + zero-shot model)",
    "curves_ose": "Fixed-weight output ensemble (ose) accuracy over stages",
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


def _selection_section(runs: Sequence[Run], out: Path) -> list[str]:
    """Where a strategy was run at several argument values (a grid): the value chosen on
    validation and its test metrics (selection.csv); nothing when no strategy was swept."""
    per_run = per_run_table(runs)
    chosen = selection_table(runs, per_run)
    if chosen.empty:
        return []
    chosen.to_csv(out / "selection.csv", index=False, float_format="%.4f")
    keys = [m.key for m in HEADLINE]
    return [
        "## Selection on validation",
        "",
        selection_markdown(chosen, keys),
        "Also as [CSV](selection.csv).",
        "",
    ]


def _off_protocol_lines(runs: Sequence[Run]) -> list[str]:
    """Under the comparison table: the rows whose runs were made off the protocol, and how."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.sequence, run.strategy), []).append(run)
    lines = []
    for (sequence, strategy), members in groups.items():
        changed = off_protocol_text(members)
        if changed:
            lines.append(f"- `{sequence}` `{strategy}`: {changed}")
    if not lines:
        return []
    head = (
        "**Off the protocol.** These rows come from runs that changed settings of their "
        "sequence's protocol; their numbers test the code and are not benchmark results:"
    )
    return [head, "", *lines, ""]


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
        forgets_least_sentence(sequence, table[table["sequence"] == sequence], seq_runs),
        "",
    ]
    noise = seeds_section(seq_runs)
    if noise:
        lines += ["### Seeds and noise", "", noise]
    for name, path in sequence_figures(seq_runs, out, formats).items():
        caption = _FIGURE_CAPTIONS[name]
        lines += [f"### {caption}", "", f"![{caption}]({_relative(path, out)})", ""]
    lines += ["### Runs", ""]
    for run in seq_runs:
        run_figs = run_figures(run, seq_runs, out, formats)
        lines += [f"#### `{run.strategy}`, seed {run.seed}", ""]
        for name, path in run_figs.items():
            alt = f"{name} {run.strategy} seed {run.seed}"
            lines += [f"![{alt}]({_relative(path, out)})", ""]
    return lines


def build_report(results_dir: Path, out: Path, formats: Sequence[str] = ("png",)) -> None:
    """Write the whole report into ``out`` (an empty folder)."""
    runs, notes = discover_runs(results_dir)
    if not runs:
        raise CFBenchError(
            f"no runs under {results_dir} (a run folder holds records.csv; run "
            "'python run_benchmark.py --out DIR' first)"
        )
    check_sequences(runs)
    for run in runs:
        if not run.complete:
            notes.append(
                f"`{_relative(run.folder, results_dir)}` is incomplete (interrupted?): its "
                "heatmaps are drawn but it is left out of the table, bars and curves"
            )
    table, md_table = _write_tables(runs, out)
    lines = _report_head(len(runs), results_dir, md_table)
    lines += _off_protocol_lines([r for r in runs if r.complete])
    lines += _selection_section(runs, out)
    costs, cost_lines = cost_section(runs)
    if cost_lines:
        costs.to_csv(out / "cost.csv", index=False, float_format="%.4f")
        lines += cost_lines
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
