"""Seeds and noise: the compact mean ± std table, the binomial standard error of delta-LP next to
it, and which differences from a baseline strategy exceed two standard deviations.

- Mean ± std over seeds: ``aggregate.mean_std`` (sample std, ddof = 1).
- SE: the binomial standard error of each run's delta-LP on the controls
  (``metrics.delta_lp_se`` over the test-set sizes in config.json's ``test_images``), averaged
  over the seeds: the noise of one run's number from its finite test sets alone.
- A difference from the baseline "exceeds 2 std" when the mean over seeds of the paired
  per-seed difference (strategy minus baseline, same seed) is larger in magnitude than twice the
  sample std of those differences. Pairing removes what the two share (data order, probe
  subsets); with 3 seeds it is a coarse screen, not a test with a stated error rate.

``seeds_section`` is what ``report`` writes under "Seeds and noise", and the README's offline
table is that text (tests/test_offline_table.py regenerates it from results/offline-3seeds/).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from benchmark import metrics
from benchmark.kinds import LP
from benchmark.metrics import BY_KEY
from benchmark.report.aggregate import mean_std
from benchmark.report.runs import Run
from benchmark.report.tables import format_number

KEYS = ("final_avg_acc", "delta_lp_controls", "forgetting")  # compared with the baseline
BASELINE = "ft"


def run_values(run: Run) -> dict[str, float]:
    """The run's table metrics, its delta-LP per control, and the binomial SE of its delta-LP on
    the controls and on the past tasks."""
    values = run.metrics()
    lp = run.matrix(LP.name).reindex(index=range(len(run.tasks) + 1), columns=run.columns)
    r = lp.to_numpy(float)
    delta = metrics.delta_lp(r, len(run.tasks))
    for name, d in zip(run.columns, delta, strict=True):
        values[f"delta:{name}"] = float(d)
    sizes = _test_images(run)
    se = past = float("nan")
    if sizes and all(c in sizes for c in run.columns):
        per = metrics.delta_lp_se(r, len(run.tasks), np.array([sizes[c] for c in run.columns]))
        se = metrics.mean_se(per[len(run.tasks) :])
        past = metrics.mean_se(per[: len(run.tasks) - 1])  # tasks j < T
    values["delta_lp_controls_se"], values["delta_lp_past_tasks_se"] = se, past
    return values


def _test_images(run: Run) -> dict[str, int] | None:
    try:
        return json.loads((run.folder / "config.json").read_text()).get("test_images")
    except (OSError, ValueError):
        return None


def per_seed(runs: Sequence[Run]) -> pd.DataFrame:
    rows = [{"strategy": r.strategy, "seed": r.seed, **run_values(r)} for r in runs if r.complete]
    return pd.DataFrame(rows)


def _pm(mean: float, std: float) -> str:
    if not math.isfinite(std):
        return format_number(mean)
    return f"{format_number(mean)} ± {format_number(std)}"


def compact_table(frame: pd.DataFrame, controls: Sequence[str]) -> str:
    """strategy | final acc | ΔLP controls | SE | ΔLP per control | forgetting (mean ± std)."""
    head = [
        "strategy",
        "seeds",
        BY_KEY["final_avg_acc"].label,
        BY_KEY["delta_lp_controls"].label,
        "SE",
        *(f"ΔLP {c}" for c in controls),
        BY_KEY["forgetting"].label,
    ]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * (len(head) - 2)]
    for strategy, sub in frame.groupby("strategy", sort=False):
        cols = [
            "final_avg_acc",
            "delta_lp_controls",
            *(f"delta:{c}" for c in controls),
            "forgetting",
        ]
        mean, std = mean_std(sub[cols].astype(float))
        cells = [
            f"`{strategy}`",
            str(len(sub)),
            _pm(mean.iloc[0], std.iloc[0]),
            _pm(mean.iloc[1], std.iloc[1]),
            format_number(float(sub["delta_lp_controls_se"].mean())),
        ]
        cells += [_pm(mean[c], std[c]) for c in cols[2:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_differences(frame: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """Per strategy and key: mean and sample std of (strategy - baseline) over shared seeds."""
    base = frame[frame["strategy"] == baseline].set_index("seed")
    rows = []
    for strategy, sub in frame[frame["strategy"] != baseline].groupby("strategy", sort=False):
        sub = sub.set_index("seed")
        seeds = sorted(set(sub.index) & set(base.index))
        for key in KEYS:
            d = (sub.loc[seeds, key] - base.loc[seeds, key]).astype(float)
            mean, std = mean_std(d.to_frame())
            m, s = float(mean.iloc[0]), float(std.iloc[0])
            exceeds = math.isfinite(s) and abs(m) > 2 * s
            rows.append(
                {
                    "strategy": strategy,
                    "key": key,
                    "n": len(seeds),
                    "mean": m,
                    "std": s,
                    "exceeds": exceeds,
                }
            )
    return pd.DataFrame(rows, columns=["strategy", "key", "n", "mean", "std", "exceeds"])


def differences_text(diffs: pd.DataFrame, baseline: str = BASELINE) -> str:
    """One line per key: the strategies whose paired difference exceeds 2 std, with it."""
    lines = []
    for key in KEYS:
        sub = diffs[(diffs["key"] == key) & diffs["exceeds"]]
        label = BY_KEY[key].label
        found = ", ".join(f"`{r.strategy}` {r.mean:+.2f} ± {r.std:.2f}" for r in sub.itertuples())
        lines.append(f"- {label}: {found or 'none'}")
    return (
        f"Differences from `{baseline}` beyond 2 std (paired over seeds: mean ± std of "
        f"strategy minus `{baseline}`):\n\n" + "\n".join(lines)
    )


def seeds_section(runs: Sequence[Run], baseline: str = BASELINE) -> str:
    """The table and the differences for one sequence's runs ("" without complete runs)."""
    frame = per_seed(runs)
    if frame.empty:
        return ""
    text = compact_table(frame, runs[0].controls)
    if (frame["strategy"] == baseline).any() and frame["seed"].nunique() > 1:
        text += "\n\n" + differences_text(paired_differences(frame, baseline), baseline)
    return text + "\n"
