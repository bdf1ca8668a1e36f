"""The comparison table rendered: Markdown, LaTeX and the CSV column legend.

Pure functions of the table written by ``benchmark.report.aggregate.aggregate_seeds`` (one row per
(sequence, strategy): ``<metric>_mean`` / ``<metric>_std`` per metric, ``n_seeds``, ``seeds``);
``benchmark.report`` writes their output into the report folder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from benchmark.kinds import BY_NAME, LP
from benchmark.metrics import BY_KEY, TABLE

DECIMALS = 2


def table_keys(per_run: pd.DataFrame) -> list[str]:
    """The metric columns to show: every table metric, less those of a matrix no run has (the
    zero-shot metrics when no run has a text tower)."""
    keys = []
    for m in TABLE:
        if m.table_matrix != LP.name and (per_run.empty or per_run[m.key].isna().all()):
            continue
        keys.append(m.key)
    return keys


def _definition(key: str) -> str:
    m = BY_KEY[key]
    return f"{BY_NAME[m.table_matrix].short}: {m.definition}"


def format_number(value: float, decimals: int = DECIMALS) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    text = f"{value:.{decimals}f}"
    return "0." + "0" * decimals if text.lstrip("-") == "0." + "0" * decimals else text


def _cell(mean: float, std: float, fmt_pm: str) -> str:
    if not math.isfinite(mean):
        return "n/a"
    if not math.isfinite(std):  # one seed: the sample std is undefined
        return format_number(mean)
    return f"{format_number(mean)}{fmt_pm}{format_number(std)}"


def _best(table: pd.DataFrame, key: str) -> set[int]:
    """Row positions holding the best displayed mean of a column, per sequence (>1 strategy)."""
    higher = BY_KEY[key].higher_is_better
    best: set[int] = set()
    for _, sub in table.reset_index(drop=True).groupby("sequence", sort=False):
        values = sub[f"{key}_mean"].round(DECIMALS).dropna()
        if len(sub) < 2 or values.empty:
            continue
        target = values.max() if higher else values.min()
        best |= set(values.index[values == target])
    return best


def _header(key: str) -> str:
    m = BY_KEY[key]
    return f"{m.label} {'↑' if m.higher_is_better else '↓'}"


def markdown_table(table: pd.DataFrame, keys: Sequence[str]) -> str:
    """Markdown table (best mean per sequence in bold) followed by a legend of every column."""
    table = table.reset_index(drop=True)
    head = ["sequence", "strategy", "seeds (n)", *(_header(k) for k in keys)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * len(keys)]
    best = {k: _best(table, k) for k in keys}
    for i, row in table.iterrows():
        cells = [
            f"`{row['sequence']}`",
            f"`{row['strategy']}`",
            f"{row['seeds']} (n={row['n_seeds']})",
        ]
        for k in keys:
            text = _cell(row[f"{k}_mean"], row[f"{k}_std"], " ± ")
            cells.append(f"**{text}**" if i in best[k] else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + markdown_legend(keys)


def markdown_legend(keys: Sequence[str]) -> str:
    lines = [
        "Mean ± sample standard deviation (ddof = 1) over the n seeds listed (one seed: mean "
        "only); accuracies and differences in percentage points; ↑/↓ = higher/lower is better; "
        "best mean per sequence in bold. LP = linear-probe matrix R, ZS = zero-shot matrix; "
        "rows t = 0 (pretrained) .. T (after task T), columns j = tasks in training order, "
        "then controls.",
        "",
    ]
    for k in keys:
        lines.append(f"- **{_header(k)}**: {_definition(k)}")
    return "\n".join(lines) + "\n"


_TEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _tex(text: str) -> str:
    """Escape LaTeX's special characters in plain text; Δ becomes $\\Delta$."""
    escaped = "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(text))
    return escaped.replace("Δ", r"$\Delta$")


def latex_table(table: pd.DataFrame, keys: Sequence[str]) -> str:
    """A booktabs table; the caption defines every column."""
    table = table.reset_index(drop=True)
    best = {k: _best(table, k) for k in keys}
    arrows = {True: r" $\uparrow$", False: r" $\downarrow$"}
    heads = [_tex(BY_KEY[k].label) + arrows[BY_KEY[k].higher_is_better] for k in keys]
    definitions = "; ".join(
        f"{_tex(BY_KEY[k].label)}: {BY_NAME[BY_KEY[k].table_matrix].short}, {BY_KEY[k].latex}"
        for k in keys
    )
    caption = (
        r"Comparison of strategies: mean $\pm$ sample standard deviation ($\mathrm{ddof}=1$) over "
        r"$n$ seeds (one seed: mean only); accuracies in \%, differences in points; best mean per "
        r"sequence in bold. $R$ = linear-probe (LP) accuracy matrix, $Z$ = zero-shot (ZS) matrix, "
        r"rows $t=0$ (pretrained) to $T$ (after task $T$), columns $j$ = tasks in training order, "
        r"then controls. " + definitions + "."
    )
    lines = [
        "% generated by cfbench report; needs \\usepackage{booktabs}",
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\caption{" + caption + "}",
        r"\label{tab:cfbench-comparison}",
        r"\begin{tabular}{ll" + "c" + "r" * len(keys) + "}",
        r"\toprule",
        " & ".join(["Sequence", "Strategy", "$n$", *heads]) + r" \\",
        r"\midrule",
    ]
    previous = None
    for i, row in table.iterrows():
        if previous is not None and row["sequence"] != previous:
            lines.append(r"\midrule")
        previous = row["sequence"]
        cells = [_tex(row["sequence"]), _tex(row["strategy"]), str(row["n_seeds"])]
        for k in keys:
            text = _cell(row[f"{k}_mean"], row[f"{k}_std"], r" $\pm$ ").replace("n/a", "--")
            text = "$-$" + text[1:] if text.startswith("-") and text != "--" else text
            cells.append(rf"\textbf{{{text}}}" if i in best[k] else text)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def columns_legend(keys: Sequence[str]) -> pd.DataFrame:
    rows = [
        ("sequence", "sequence name"),
        ("strategy", "strategy name"),
        ("n_seeds", "number of runs (seeds) aggregated"),
        ("seeds", "the seeds aggregated"),
    ]
    for k in keys:
        definition = _definition(k)
        rows.append((f"{k}_mean", f"mean over seeds of: {definition}"))
        rows.append((f"{k}_std", f"sample std (ddof=1) over seeds of: {definition}; empty if n=1"))
    return pd.DataFrame(rows, columns=["column", "definition"])
