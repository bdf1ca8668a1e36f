"""Saved runs read back: a run folder's identity, datasets and records, and the runs under a folder.

A run folder is one that holds ``records.csv`` (written by ``benchmark.results.RunResults``).
``run_benchmark.py report`` starts from ``discover_runs``, the TensorBoard export from ``load_run``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from benchmark import metrics
from benchmark.errors import CFBenchError
from benchmark.kinds import LP
from benchmark.report.aggregate import TABLE_KEYS
from benchmark.results import RECORD_COLUMNS, matrix

# The folder 'run_benchmark.py report' writes into; never read back as runs.
REPORT_DIR = "report"


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
    # The stages the run measures (None: every one, 0..T). A soup of runs that kept only their
    # last checkpoint measures rows 0 and T (config.json "soup" "stages"; benchmark/soup/).
    stages: list[int] | None = None
    # The protocol settings the run changed (config.json "off_protocol", benchmark/protocol.py;
    # None: a run written before cfbench recorded it).
    off_protocol: list[str] | None = None

    @property
    def columns(self) -> list[str]:
        return self.tasks + self.controls

    def matrix(self, kind: str) -> pd.DataFrame:
        return matrix(self.records, kind, self.columns)

    def metrics(self) -> dict[str, float]:
        """Every comparison-table metric (benchmark.metrics.TABLE), each from its matrix; NaN
        where a run has no such matrix (no text tower: no zero-shot metrics)."""
        stages = range(len(self.tasks) + 1)
        matrices = {}
        for kind in {m.table_matrix for m in metrics.TABLE}:
            m = self.matrix(kind)
            if len(m):  # NaN where a stage or a dataset has no value (zs: controls)
                matrices[kind] = m.reindex(index=stages, columns=self.columns).to_numpy(float)
        return metrics.table_values(matrices, len(self.tasks))

    @property
    def complete(self) -> bool:
        """Every stage 0..T (or every stage the run measures) has a linear-probe accuracy for
        every dataset."""
        lp = self.matrix(LP.name)
        stages = self.stages or list(range(len(self.tasks) + 1))
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
        stages=_soup_stages(folder),
        off_protocol=_config(folder).get("off_protocol"),
    )


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` holds a finished run (metrics.json and every stage's records); False for
    a folder that holds none or an unreadable one."""
    if not (folder / "metrics.json").exists():
        return False
    try:
        return load_run(folder).complete
    except CFBenchError:
        return False


def _config(folder: Path) -> dict:
    """The run's config.json ({} when it has none or it cannot be read)."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _soup_stages(folder: Path) -> list[int] | None:
    """The stages a soup measured (config.json "soup" "stages"); None for any other run."""
    try:
        stages = json.loads((folder / "config.json").read_text())["soup"]["stages"]
        return [int(s) for s in stages]
    except (OSError, ValueError, KeyError, TypeError):
        return None


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
    return pd.DataFrame(rows, columns=["sequence", "strategy", "seed", *TABLE_KEYS])


def check_sequences(runs: Sequence[Run]) -> None:
    """CFBenchError when two runs of one sequence disagree on its datasets."""
    seen: dict[str, Run] = {}
    for run in runs:
        other = seen.setdefault(run.sequence, run)
        if (other.tasks, other.controls) != (run.tasks, run.controls):
            raise CFBenchError(
                f"runs of sequence '{run.sequence}' disagree on its datasets: {other.folder} has "
                f"tasks {other.tasks} controls {other.controls}, {run.folder} has tasks "
                f"{run.tasks} controls {run.controls}; report them from separate folders"
            )
