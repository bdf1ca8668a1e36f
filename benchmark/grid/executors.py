"""Where a grid's cells run: one after another in this process (``local``), or as Ray tasks.

A worker is ``worker(argv, log_path) -> dict`` (benchmark/commands/cells.py ``run_cell``): it runs
one cell's command and returns {"status": "done" | "skipped" | "failed", "error": one line or None,
"seconds": float, "folder": str}. A cell that fails for a reason of its own (bad input, a NaN loss:
a CFBenchError) comes back as "failed" and is not retried. A Ray worker that dies (a killed process,
a lost node) raises in Ray, which retries the task up to ``max_retries`` times; the retry runs the
same command, which resumes from the run's last checkpoint in the shared ``--out``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tqdm.auto import tqdm

from benchmark.errors import CFBenchError
from benchmark.grid.spec import Cell

Worker = Callable[[list[str], str | None], dict]


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: start a local Ray
    gpus_per_run: float = 1.0  # when the cluster has GPUs (fractional for small models)
    cpus_per_run: float = 1.0  # otherwise
    max_retries: int = 2  # retries of a cell whose worker died


class GridProgress:
    """One bar over the grid: runs done / running / failed, elapsed, and a remaining-time estimate
    from the finished runs' wall times and the number running at once."""

    def __init__(self, total: int, parallel: int = 1):
        self.bar = tqdm(total=total, desc="grid", unit="run", dynamic_ncols=True, disable=None)
        self.parallel, self.failed, self.running = max(1, parallel), 0, 0
        self.seconds: list[float] = []

    def start(self, n: int = 1) -> None:
        self.running += n
        self._show()

    def finish(self, result: dict) -> None:
        self.running -= 1
        self.failed += result["status"] == "failed"
        if result["status"] == "done":
            self.seconds.append(result["seconds"])
        self.bar.update(1)
        self._show()

    def _show(self) -> None:
        left = self.bar.total - self.bar.n
        eta = ""
        if self.seconds and left:
            eta = f"{sum(self.seconds) / len(self.seconds) * left / self.parallel / 60:.1f} min"
        self.bar.set_postfix(
            running=self.running, failed=self.failed, left=eta or "?", refresh=True
        )

    def close(self) -> None:
        self.bar.close()


def run_local(cells: Sequence[Cell], worker: Worker) -> list[dict]:
    """Every cell in this process, one after another; its output goes to the console."""
    progress, results = GridProgress(len(cells)), []
    for cell in cells:
        progress.start()
        result = worker(cell.argv(), None)
        progress.finish(result)
        results.append(result)
    progress.close()
    return results


def _import_ray():
    try:
        import ray
    except ImportError:
        raise CFBenchError(
            '--executor ray needs Ray, an optional extra: pip install "cfbench[ray]"'
        ) from None
    return ray


def run_ray(cells: Sequence[Cell], worker: Worker, options: RayOptions, log_path) -> list[dict]:
    """Every cell as a Ray task; ``log_path(cell)`` is where the cell's output goes (its run
    folder's grid.log: a worker's console is not the user's)."""
    ray = _import_ray()
    if not ray.is_initialized():
        try:
            ray.init(address=options.address, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as error:
            where = options.address or "a local Ray"
            raise CFBenchError(f"cannot start or reach {where}: {error}") from None
    resources = ray.cluster_resources()
    if resources.get("GPU", 0) > 0:
        demand = {"num_gpus": options.gpus_per_run, "num_cpus": 1}
        parallel = int(resources["GPU"] // options.gpus_per_run)
    else:
        demand = {"num_cpus": options.cpus_per_run}
        parallel = int(resources.get("CPU", 1) // options.cpus_per_run)
    task = ray.remote(max_retries=options.max_retries, **demand)(worker)
    refs = {}
    for cell in cells:
        runtime = {"runtime_env": {"env_vars": dict(cell.env)}} if cell.env else {}
        refs[task.options(**runtime).remote(cell.argv(), str(log_path(cell)))] = cell
    progress = GridProgress(len(cells), parallel)
    progress.start(min(parallel, len(cells)))
    results: dict = {}
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        try:
            result = ray.get(ready[0])
        except ray.exceptions.RayTaskError as error:  # a bug in the run, not a lost worker
            cause = error.cause if error.cause is not None else error
            first = (str(cause).strip().splitlines() or [""])[0]
            crash = f"crashed: {type(cause).__name__}: {first} (run it alone with --debug)"
            result = {"status": "failed", "seconds": float("nan"), "folder": None, "error": crash}
        except Exception as error:  # noqa: BLE001 - the worker died more often than retried
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            lost = f"worker lost after {options.max_retries} retries: {first}"
            result = {"status": "failed", "seconds": float("nan"), "folder": None, "error": lost}
        results[ready[0]] = result
        progress.finish(result)
        if len(pending) >= parallel:
            progress.start()
    progress.close()
    return [results[ref] for ref in refs]


def summary(cells: Sequence[Cell], results: Sequence[dict]) -> str:
    """One line per cell: done / failed (its one-line error) / skipped (already complete)."""
    width = max(len(c.label) for c in cells)
    lines = [f"{'cell':<{width}}  status   seconds  note"]
    for cell, r in zip(cells, results, strict=True):
        note = r.get("error") or ("already complete" if r["status"] == "skipped" else "")
        lines.append(f"{cell.label:<{width}}  {r['status']:<7}  {r['seconds']:7.1f}  {note}")
    done = sum(r["status"] != "failed" for r in results)
    lines.append(f"{done} of {len(results)} cells succeeded")
    return "\n".join(lines)
