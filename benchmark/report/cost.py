"""The report's cost table: what the runs of each (sequence, strategy) cost, mean over their seeds,
from the ``cost`` in each run's metrics.json (benchmark/cost.py). Runs written before the cost
was recorded have none and are left out of this table only."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pandas as pd

from benchmark.report.runs import Run

COUNTS = (
    ("images_trained", "images trained"),
    ("images_encoded", "images encoded"),
    ("prompts_encoded", "prompts encoded"),
    ("gflops", "GFLOPs"),
)
SECONDS = (
    ("train", "train s"),
    ("features", "features s"),
    ("probe", "probe s"),
    ("text", "text s"),
    ("wall", "wall s"),
)


def run_cost(run: Run) -> dict | None:
    """One run's totals, or None when its metrics.json has no cost."""
    try:
        cost = json.loads((run.folder / "metrics.json").read_text()).get("cost")
    except (OSError, ValueError):
        return None
    if not cost:
        return None
    seconds = cost.get("seconds", {})
    return {**{k: cost.get(k) for k, _ in COUNTS}, **{k: seconds.get(k) for k, _ in SECONDS}}


def cost_table(runs: Sequence[Run]) -> pd.DataFrame:
    """Mean over seeds per (sequence, strategy) of every complete run that recorded its cost."""
    rows = []
    for run in runs:
        cost = run_cost(run) if run.complete else None
        if cost is not None:
            rows.append({"sequence": run.sequence, "strategy": run.strategy, **cost})
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    groups = frame.groupby(["sequence", "strategy"], sort=False)
    keys = [k for k, _ in (*COUNTS, *SECONDS)]
    table = groups[keys].mean().reset_index()
    table.insert(2, "seeds", groups.size().to_numpy())
    return table


def cost_markdown(table: pd.DataFrame) -> str:
    labels = ["sequence", "strategy", "seeds", *(label for _, label in (*COUNTS, *SECONDS))]
    lines = ["| " + " | ".join(labels) + " |", "|" + "---|" * 3 + "---:|" * (len(labels) - 3)]
    for row in table.itertuples(index=False):
        d = row._asdict()
        cells = [f"`{d['sequence']}`", f"`{d['strategy']}`", str(d["seeds"])]
        cells += ["n/a" if pd.isna(d[k]) else f"{d[k]:,.0f}" for k, _ in COUNTS]
        cells += ["n/a" if pd.isna(d[k]) else f"{d[k]:.1f}" for k, _ in SECONDS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def cost_section(runs: Sequence[Run]) -> tuple[pd.DataFrame, list[str]]:
    """The table and the report.md lines that show it (none when no run recorded a cost)."""
    table = cost_table(runs)
    if table.empty:
        return table, []
    return table, [
        "## Cost",
        "",
        cost_markdown(table),
        "Mean over seeds of each run's `metrics.json` `cost`: images fine-tuned on, images "
        "encoded for the probes (a cached pretrained row encodes none), the encoder's GFLOPs, "
        "and wall seconds per phase on the machine the run ran on. Also as [CSV](cost.csv).",
        "",
    ]
