"""The report's one sentence on who forgets least, said only as strongly as the runs allow.

The strategy with the highest mean ΔLP on the controls (benchmark/report/aggregate.py
``least_forgetting``) is named, and then, in the same sentence:

- every other strategy whose mean is within the standard error of the difference, when there is
  one: the leader does not forget measurably less than those. A strategy's standard error is
  std / sqrt(n) over its n seeds (sample std, ddof = 1), and with one seed the binomial standard
  error of its ΔLP from the finite test sets (benchmark/report/seeds.py ``run_values``), the only
  noise one run shows; the difference's is sqrt(se_a^2 + se_b^2).
- runs made off the protocol (config.json "off_protocol", benchmark/protocol.py): random or other
  weights, fewer epochs, caps. Their ranking is a test of the code, and the sentence says so
  first, listing what was changed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from benchmark.report.aggregate import least_forgetting
from benchmark.report.runs import Run
from benchmark.report.seeds import run_values
from benchmark.report.tables import DECIMALS, format_number

_SE_KEYS = {
    "delta_lp_controls_mean": "delta_lp_controls_se",
    "delta_lp_past_tasks_mean": "delta_lp_past_tasks_se",
}


def strategy_se(table: pd.DataFrame, runs: Sequence[Run], key: str) -> dict[str, float]:
    """Per strategy: the standard error of its mean ``key`` (module docstring); NaN if unknown."""
    out = {}
    for row in table.itertuples(index=False):
        n, std = int(row.n_seeds), getattr(row, key.replace("_mean", "_std"))
        if n >= 2:
            out[row.strategy] = float(std) / math.sqrt(n)
            continue
        mine = [r for r in runs if r.strategy == row.strategy and r.complete]
        out[row.strategy] = run_values(mine[0])[_SE_KEYS[key]] if mine else float("nan")
    return out


def within_noise(table: pd.DataFrame, se: dict[str, float], leader: str, key: str) -> list:
    """(strategy, mean, se of the difference) of every other strategy whose mean is within the
    standard error of its difference from ``leader``'s."""
    values = table.set_index("strategy")[key]
    best = values[leader]
    close = []
    for strategy, value in values.drop(leader).dropna().sort_values(ascending=False).items():
        diff_se = math.sqrt(se.get(leader, math.nan) ** 2 + se.get(strategy, math.nan) ** 2)
        if not math.isnan(diff_se) and best - value <= diff_se:
            close.append((strategy, float(value), diff_se))
    return close


def off_protocol_text(runs: Sequence[Run]) -> str:
    """What the runs changed from the protocol, merged over runs ("" when none did)."""
    changes = dict.fromkeys(c for r in runs for c in (r.off_protocol or ()))
    return "; ".join(changes)


def forgets_least_sentence(sequence: str, table: pd.DataFrame, runs: Sequence[Run]) -> str:
    """The sentence for one sequence (``table``: its rows of the comparison table)."""
    if table.empty:
        return f"No complete run of `{sequence}` to rank."
    winners, key = least_forgetting(table, DECIMALS)
    if not winners:
        return f"No strategy on `{sequence}` can be ranked: it has no controls and no past tasks."
    what = "controls" if key == "delta_lp_controls_mean" else "past tasks"
    value = table.set_index("strategy").loc[winners[0], key]
    names = " and ".join(f"`{w}`" for w in winners)
    changed = off_protocol_text(runs)
    lead = (
        f"**Off the protocol** ({changed}): these runs test the code, they are not a benchmark "
        "result. "
        if changed
        else ""
    )
    if len(table) == 1:
        return (
            f"{lead}On `{sequence}` only {names} was run, so it forgets least by default "
            f"(mean ΔLP on {what}: {format_number(value)} points)."
        )
    note = "" if what == "controls" else "; the sequence has no controls"
    verb = "forgets" if len(winners) == 1 else "tie as the strategies that forget"
    sentence = (
        f"{lead}On `{sequence}`, {names} {verb} least: highest mean ΔLP on {what} "
        f"({format_number(value)} points{note}; ties broken by lower forgetting)."
    )
    close = within_noise(table, strategy_se(table, runs, key), winners[0], key)
    close = [c for c in close if c[0] not in winners]
    if close:
        others = ", ".join(
            f"`{s}` ({format_number(v)}, difference SE {format_number(e)})" for s, v, e in close
        )
        sentence += (
            f" That is within the standard error of the difference from {others}: these runs "
            f"do not show that {names} forgets less than {'it' if len(close) == 1 else 'they'}."
        )
    return sentence
