"""Run folders: config.json, records.csv (tidy), <kind>_matrix.csv, probes.csv and metrics.json.

Every file is written atomically (temporary file in the same folder, then ``os.replace``), so a
crash leaves either the previous complete file or the new complete file, never a truncated one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark import metrics
from benchmark.errors import CFBenchError
from benchmark.io import write_atomic
from benchmark.kinds import LP, MATRIX_KINDS

RECORD_COLUMNS = [
    "sequence",
    "strategy",
    "seed",
    "stage",
    "stage_task",
    "dataset",
    "role",
    "kind",
    "accuracy",
]
# probes.csv: the C each stage's probe chose per dataset (the ``probe_c`` of its ``lp`` record,
# benchmark/evaluation.py); the grid it chose from is config.json's probe.c_grid
PROBE_COLUMNS = [*RECORD_COLUMNS[:-2], "c"]


def write_json(path: Path, data: Any) -> None:
    """Strict JSON: NaN (a metric that does not apply) is written as null."""
    text = json.dumps(_no_nan(data), indent=2, default=_jsonable, allow_nan=False)
    write_atomic(path, text + "\n")


def _no_nan(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_no_nan(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def safe_name(name: str) -> str:
    """A folder-safe version of a strategy name or import path."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def run_dir(out: Path, sequence: str, strategy: str, seed: int) -> Path:
    return Path(out) / safe_name(sequence) / safe_name(strategy) / f"seed{seed}"


def matrix(records: pd.DataFrame, kind: str, columns: list[str]) -> pd.DataFrame:
    """Rows = stage (0 = pretrained), columns = datasets in the given order; NaN where absent."""
    sub = records[records["kind"] == kind]
    m = sub.pivot_table(index="stage", columns="dataset", values="accuracy", aggfunc="first")
    return m.reindex(columns=[c for c in columns if c in m.columns])


class RunResults:
    """Collects records stage by stage and rewrites the run's files after each stage.

    ``records`` are those of the stages already finished (from a checkpoint when resuming)."""

    def __init__(
        self,
        folder: Path,
        identity: dict[str, Any],
        tasks: list[str],
        controls: list[str],
        records: list[dict] | None = None,
        test_images: dict[str, int] | None = None,
    ):
        self.folder = Path(folder)
        self.identity = identity  # sequence, strategy, seed
        self.tasks, self.controls = list(tasks), list(controls)
        self.records: list[dict] = list(records or [])
        # test images per dataset (the LP accuracies' sample sizes): standard errors of delta-LP
        self.test_images: dict[str, int] = dict(test_images or {})
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            probe = self.folder / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as error:
            raise CFBenchError(
                f"cannot write to {self.folder} ({error.strerror}); choose another --out"
            ) from None

    @property
    def columns(self) -> list[str]:
        return self.tasks + self.controls

    def write_config(self, config: dict[str, Any]) -> None:
        write_json(self.folder / "config.json", config)

    def note_resume(self, stage: int, execution: dict[str, Any]) -> None:
        """Add to config.json (written when the run started) that it was resumed after
        ``stage``, with the execution settings of that attempt (device, micro-batch, ...)."""
        path = self.folder / "config.json"
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError):
            return  # killed before the first write: the next start writes it
        config.setdefault("resumed", []).append({"after_stage": stage, **execution})
        write_json(path, config)

    def append(self, records: list[dict]) -> None:
        """Add one stage's records in memory (``write`` puts them on disk)."""
        self.records.extend({**self.identity, **r} for r in records)

    def write(self) -> None:
        """Rewrite records.csv and the matrices from every record so far."""
        frame = self.frame()
        write_atomic(self.folder / "records.csv", frame.to_csv(index=False))
        probes = [{**r, "c": r["probe_c"]} for r in self.records if r.get("probe_c") is not None]
        if probes:
            table = pd.DataFrame(probes, columns=PROBE_COLUMNS)
            write_atomic(self.folder / "probes.csv", table.to_csv(index=False))
        for kind in MATRIX_KINDS:
            m = matrix(frame, kind, self.columns)
            if not m.empty:
                write_atomic(self.folder / f"{kind}_matrix.csv", m.to_csv(float_format="%.4f"))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.records, columns=RECORD_COLUMNS)

    def finish(self, cost: dict | None = None) -> dict[str, Any]:
        """Compute and write metrics.json from the matrices (LP is the headline), with what the
        run cost (benchmark/cost.py)."""
        frame = self.frame()
        out: dict[str, Any] = {"units": "accuracy in percent", "definitions": metrics.DEFINITIONS}
        last = len(self.tasks)
        sizes = [self.test_images.get(c) for c in self.columns]
        n_test = None if None in sizes else sizes
        if n_test is not None:
            out["definitions"] = {**metrics.DEFINITIONS, **metrics.SE_DEFINITIONS}
            out["test_images"] = dict(zip(self.columns, sizes, strict=True))
        for kind in MATRIX_KINDS:
            m = matrix(frame, kind, self.columns)
            if m.empty or last not in m.index:
                continue
            m = m.reindex(range(last + 1))  # LP-initialised heads have no row 0: NaN metrics
            out[kind] = metrics.summarize(
                m.to_numpy(), last, list(m.columns), kind, n_test if kind == LP.name else None
            )
        if cost is not None:
            out["cost"] = cost
        write_json(self.folder / "metrics.json", out)
        return out


def print_summary(results: RunResults, log, seconds: float, cost: dict) -> None:
    summary = results.finish(cost).get(LP.name, {})
    lp = matrix(results.frame(), LP.name, results.columns)
    with pd.option_context("display.width", 200, "display.float_format", "{:.1f}".format):
        log(f"LP accuracy (%), rows = stage (0 = pretrained):\n{lp.to_string()}")
    nan = float("nan")
    se = summary.get("delta_lp_se")
    if se:
        deltas = summary.get("delta_lp", {})
        log(
            "ΔLP (± binomial SE): "
            + "  ".join(f"{name} {deltas[name]:+.1f} ± {se[name]:.1f}" for name in results.columns)
        )
    values = "  ".join(
        f"{m.label} {summary.get(m.key, nan):.2f}"
        + (
            f" ± {summary['delta_lp_controls_se']:.2f}"
            if m.key == "delta_lp_controls" and se
            else ""
        )
        for m in metrics.HEADLINE
    )
    log(f"{values}  ({seconds:.1f} s)")
    log(f"run folder: {results.folder}")
