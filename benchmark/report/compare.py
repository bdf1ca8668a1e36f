"""One table comparing strategies run on the same sequence and seed, read from their metrics.json.

The numbers are the LP matrix's (DESIGN.md section 3): final average accuracy over the sequence's
tasks, delta-LP averaged over the control datasets, and forgetting (Chaudhry et al. 2018).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from benchmark.io import write_atomic

COLUMNS = {
    "final_avg_acc": "final avg acc",
    "delta_lp_controls": "delta-LP controls",
    "forgetting": "forgetting",
}


def comparison_table(folders: Mapping[str, Path], kind: str = "lp") -> pd.DataFrame:
    """Rows = strategies (in the given order), columns = COLUMNS' labels; NaN where n/a."""
    rows = {}
    for name, folder in folders.items():
        metrics = json.loads((Path(folder) / "metrics.json").read_text()).get(kind, {})
        rows[name] = {label: metrics.get(key) for key, label in COLUMNS.items()}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(COLUMNS.values()))
    return table.astype(float).rename_axis("strategy")


def report_comparison(folders: Mapping[str, Path]) -> str:
    """Write ``comparison_<seed>.csv`` next to the strategies' folders and return the table text.

    Run folders are ``OUT/<sequence>/<strategy>/seed<N>``, so the CSV goes to ``OUT/<sequence>``.
    """
    table = comparison_table(folders)
    first = Path(next(iter(folders.values())))
    write_atomic(first.parent.parent / f"comparison_{first.name}.csv", table.to_csv())
    text = table.to_string(float_format="{:.2f}".format, na_rep="n/a")
    return f"LP metrics (accuracy in %, {first.name}):\n{text}"
