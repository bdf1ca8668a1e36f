"""The dataset registry: ``TASKS`` maps a dataset name to its TaskSpec (tasks/vision.py,
tasks/synthetic.py); ``npz:<stem>`` names a ``<data-root>/<stem>.npz`` file (tasks/npz.py)."""

from __future__ import annotations

from pathlib import Path

from benchmark.errors import CFBenchError
from tasks.base import TaskData, TaskSpec
from tasks.npz import PREFIX as NPZ_PREFIX
from tasks.npz import npz_task
from tasks.synthetic import SYNTHETIC_TASKS
from tasks.vision import VISION_TASKS

TASKS: dict[str, TaskSpec] = {**VISION_TASKS, **SYNTHETIC_TASKS}


def get_task(name: str) -> TaskSpec:
    """A registered TaskSpec, or one for ``npz:<stem>`` (the file ``<data-root>/<stem>.npz``)."""
    if name in TASKS:
        return TASKS[name]
    if name.startswith(NPZ_PREFIX) and len(name) > len(NPZ_PREFIX):
        return npz_task(name)
    raise CFBenchError(
        f"unknown dataset '{name}'; valid names: {', '.join(sorted(TASKS))}, "
        f"or {NPZ_PREFIX}<file stem> for <data-root>/<file stem>.npz"
    )


def load_task(name: str, root: Path, download: bool = True, source: str = "auto") -> TaskData:
    """A registered dataset: its prepared store, else its first source that has it
    (DatasetMissingError lists the sources tried and what to fetch)."""
    from tasks.data import open_task

    return open_task(get_task(name), Path(root).expanduser(), download, source)
