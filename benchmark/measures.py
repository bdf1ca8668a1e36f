"""The contract of a measure: what one stage's evaluation computes from a dataset's features,
one measure per group of record kinds (benchmark/kinds.py), each called with the same
``StageFeatures``. The standard measures are the evaluation's (benchmark/evaluation.py):

- the probe: ``lp`` and ``lp_val`` (and the chosen C, carried as ``probe_c``);
- the zero-shot head: ``zs``;
- the task's head: ``head`` and ``val``;

then VRF's (benchmark/vrf/evaluator.py, with the ``vrf`` strategy or ``--vrf``): ``vrf``, ``ose``.
A measure runs for a dataset when every kind it gives applies there (``applies``: a task or any
dataset, zero-shot weights, a fitted head), in this order, which is the records' order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from benchmark.kinds import BY_NAME, Kind
from tasks.base import TaskData

# The probe's chosen C: not an accuracy but carried with them (and in the row-0 cache), then put
# on the stage's ``lp`` record as ``probe_c`` (benchmark/results.py writes it to probes.csv).
PROBE_C = "probe_c"


@dataclass
class EvalDataset:
    name: str
    role: str  # "task" or "control"
    task_label: int | None  # head index for tasks, None for controls
    data: TaskData
    zs_weight: torch.Tensor | None = None  # [C, D] zero-shot class weights (CLIP only)
    # The first stage whose model has this task's head fitted: 0 for zero-shot heads; an LP-init
    # head is fitted when its task starts (task_label + 1). Before it, no head or val record.
    head_from: int = 0


@dataclass
class StageFeatures:
    """What the evaluation extracted for one dataset at one stage (current encoder)."""

    train_idx: object  # np.ndarray: the probe's train indices into the train split
    val_mask: torch.Tensor  # [n] bool: the validation part of them
    test_idx: object  # np.ndarray: the test indices
    train_f: torch.Tensor  # [n, D] raw embeddings
    train_y: torch.Tensor
    test_f: torch.Tensor
    test_y: torch.Tensor
    val_f: torch.Tensor  # the whole validation split: the probe's validation part and the rest
    val_y: torch.Tensor
    head: nn.Module | None  # the task's head when fitted at this stage; None: none (yet)


class Measure(Protocol):
    kinds: tuple[str, ...]  # the record kinds it gives (benchmark/kinds.py)

    def __call__(self, ds: EvalDataset, stage: int, f: StageFeatures) -> dict[str, float]: ...


def applies(kind: Kind, ds: EvalDataset, f: StageFeatures) -> bool:
    """Whether ``kind`` has a record for ``ds`` at this stage."""
    return (
        (kind.per == "dataset" or ds.role == "task")
        and (not kind.needs_text or ds.zs_weight is not None)
        and (not kind.needs_head or f.head is not None)
    )


def runs(measure: Measure, ds: EvalDataset, f: StageFeatures) -> bool:
    return all(applies(BY_NAME[k], ds, f) for k in measure.kinds)


def measure_all(
    measures: Sequence[Measure], ds: EvalDataset, stage: int, f: StageFeatures
) -> dict[str, float]:
    """Every measure that applies to ``ds``, in order: accuracies (fractions) by kind."""
    out: dict[str, float] = {}
    for measure in measures:
        if runs(measure, ds, f):
            out.update(measure(ds, stage, f))
    return out
