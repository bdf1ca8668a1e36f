"""What one stage's evaluation computes from a dataset's features: one measure per group of
record kinds (benchmark/kinds.py), each called with the same ``StageFeatures``.

- the probe: ``lp`` and ``lp_val`` (and the chosen C, carried as ``probe_c``);
- the zero-shot head: ``zs``;
- the task's head: ``head`` and ``val``;
- VRF (benchmark/vrf/evaluator.py, with the ``vrf`` strategy or ``--vrf``): ``vrf`` and ``ose``.

A measure runs for a dataset when every kind it gives applies there (``applies``: a task or any
dataset, zero-shot weights, a fitted head), in this order, which is the records' order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from benchmark.config import ProbeConfig
from benchmark.cost import Cost, timed
from benchmark.kinds import BY_NAME, HEAD, LP, LP_VAL, VAL, ZS, Kind
from benchmark.probe.fit import accuracy, linear_probe, top1
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


class ProbeMeasure:
    """lp: the linear probe (benchmark/probe/fit.py) on the test split; lp_val: the probe chosen
    on validation (its sweep's fit at the best C) on the dataset's whole validation split."""

    kinds = (LP.name, LP_VAL.name)

    def __init__(self, probe: ProbeConfig, cost: Cost | None):
        self.probe, self.cost = probe, cost

    def __call__(self, ds: EvalDataset, stage: int, f: StageFeatures) -> dict[str, float]:
        p = self.probe
        with timed(self.cost, "probe"):
            result = linear_probe(
                f.train_f,
                f.train_y,
                f.val_mask,
                f.test_f,
                f.test_y,
                ds.data.num_classes,
                p.c_grid,
                p.max_iter,
                tol=p.tol,
            )
        self._note(stage, ds.name, result)
        val_f = F.normalize(f.val_f.float(), dim=1)
        lp_val = accuracy(val_f, f.val_y, result.sweep_weight, result.sweep_bias)
        return {LP.name: result.accuracy, LP_VAL.name: lp_val, PROBE_C: result.best_c}

    def _note(self, stage: int, name: str, result) -> None:
        """Say on stdout when a probe's accuracy may not be the protocol's: its best C at the
        edge of the grid (the optimum may lie beyond), or a fit stopped by max_iter, not tol."""
        where = f"note: stage {stage}, {name}: the linear probe"
        if result.c_at_edge:
            grid = ", ".join(f"{c:g}" for c in sorted(self.probe.c_grid))
            tqdm.write(
                f"{where}'s best C is {result.best_c:g}, at the edge of the grid "
                f"({grid}); a wider grid may score higher"
            )
        if not result.converged:
            tqdm.write(
                f"{where} stopped at {self.probe.max_iter} iterations before its "
                f"tolerance {self.probe.tol:g}"
            )


class ZeroShotMeasure:
    """zs: normalize(f) against the pretrained text tower's class weights."""

    kinds = (ZS.name,)

    def __call__(self, ds: EvalDataset, stage: int, f: StageFeatures) -> dict[str, float]:
        logits = F.normalize(f.test_f, dim=1) @ ds.zs_weight.to(f.test_f.device).T
        return {ZS.name: top1(logits, f.test_y)}


class HeadMeasure:
    """head: the task's head on its test split; val: on its validation images (held out from
    fine-tuning): the ``head`` score of selection on validation (benchmark/report/selection.py)."""

    kinds = (HEAD.name, VAL.name)

    def __call__(self, ds: EvalDataset, stage: int, f: StageFeatures) -> dict[str, float]:
        with torch.no_grad():
            return {
                HEAD.name: top1(f.head(f.test_f), f.test_y),
                VAL.name: top1(f.head(f.val_f), f.val_y),
            }


def standard_measures(probe: ProbeConfig, cost: Cost | None) -> list[Measure]:
    """Every run's measures, in record order (VRF's come after them)."""
    return [ProbeMeasure(probe, cost), ZeroShotMeasure(), HeadMeasure()]


def measure_all(
    measures: Sequence[Measure], ds: EvalDataset, stage: int, f: StageFeatures
) -> dict[str, float]:
    """Every measure that applies to ``ds``, in order: accuracies (fractions) by kind."""
    out: dict[str, float] = {}
    for measure in measures:
        if runs(measure, ds, f):
            out.update(measure(ds, stage, f))
    return out
