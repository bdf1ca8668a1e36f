"""One table comparing strategies run on the same sequence and seed, read from their metrics.json.

Its columns are the registry's headline metrics (benchmark.metrics.HEADLINE: final average
accuracy over the sequence's tasks, delta-LP averaged over the control datasets, forgetting),
each read from the matrix the registry names (LP).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from benchmark.io import write_atomic
from benchmark.metrics import HEADLINE


def comparison_table(folders: Mapping[str, Path]) -> pd.DataFrame:
    """Rows = strategies (in the given order), columns = the headline metrics' labels; NaN where
    a run's metrics.json lacks one."""
    rows = {}
    for name, folder in folders.items():
        saved = json.loads((Path(folder) / "metrics.json").read_text())
        rows[name] = {m.label: saved.get(m.table_matrix, {}).get(m.key) for m in HEADLINE}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=[m.label for m in HEADLINE])
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
