"""Datasets and sequences: the package's public API.

``TASKS`` / ``get_task`` / ``load_task`` (tasks/registry.py): the datasets; ``SEQUENCES`` /
``get_sequence`` / ``load_sequence_file`` (tasks/sequences.py): the sequences.
"""

from __future__ import annotations

from tasks.base import TaskData, TaskSpec
from tasks.registry import TASKS, get_task, load_task
from tasks.sequences import SEQUENCES, SequenceSpec, get_sequence, load_sequence_file

__all__ = [
    "TASKS",
    "SEQUENCES",
    "SequenceSpec",
    "TaskData",
    "TaskSpec",
    "get_sequence",
    "get_task",
    "load_task",
    "load_sequence_file",
]
