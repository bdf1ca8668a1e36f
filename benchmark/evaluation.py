"""The evaluation of one stage: the records of every kind (benchmark/kinds.py) for every dataset.

The runner calls ``evaluate`` for row 0 (the pretrained encoder and the initial heads) and after
every task, once ``Trainer.train_task`` has returned, so every strategy plugin's
``after_training_exp`` has already run (WiSE-FT's interpolated weights are what is measured).
For every task and control dataset it extracts image embeddings of the train, test and validation
images once, then runs the measures that apply (benchmark/measures.py), each from those features
(the first three groups are this module's):

- lp:   the linear probe (benchmark/probe/fit.py) scored on the test split;
- zs:   the pretrained text tower's zero-shot head on the current encoder (CLIP only);
- head: the task's own trained head (task-incremental; tasks only, once fitted);
- lp_val: the probe chosen on validation (its sweep's fit at the best C, fitted on the probe's
  train subset minus its validation images) scored on the dataset's whole validation split (the
  subset's validation part plus the validation images the subset left out; every dataset; never
  a test image, never fine-tuned on): the score ``run_benchmark.py select`` ranks by. The images
  that chose C are among those it is scored on (all of them without a probe subset: then lp_val
  is the best of the sweep's validation scores, a maximum over the grid): it ranks values on
  validation; it is not an unbiased accuracy (``lp`` is, on the test split);
- val:  the task head on the same validation images: selection's ``head`` score;
- vrf, ose: with a VRF measure (benchmark/vrf/; the ``vrf`` strategy or ``--vrf``), the task head
  ensembled with the pretrained zero-shot model, from the same features (tasks already trained,
  stages >= 1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from benchmark.checkpoint import faults
from benchmark.config import ProbeConfig
from benchmark.cost import Cost, timed
from benchmark.kinds import HEAD, LP, LP_VAL, ROW0_KINDS, VAL, ZS
from benchmark.measures import PROBE_C, EvalDataset, Measure, StageFeatures, measure_all
from benchmark.phases import phase, smaller_eval_batch
from benchmark.probe.features import FeaturePass, Transformed, extract_features
from benchmark.probe.fit import accuracy, linear_probe, top1
from benchmark.probe.splits import probe_split, subsample, validation_rest
from benchmark.row0_cache import Row0Cache, tensor_digest
from tasks.base import TaskData, targets_of

# The kinds of a row-0 cache entry, in its key, so that an entry computed before a kind existed
# is not reused without it; and "probe_c2", the probe's chosen C (``PROBE_C``) from the solver
# whose stopping rule is relative to the objective's weight-dependent part (issue 22): older
# entries are recomputed.
ROW0_KEY_KINDS = " ".join((*ROW0_KINDS, "probe_c2"))


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


def eval_datasets(
    sequence, data: dict[str, TaskData], zero_shot: dict[str, torch.Tensor], head_init: str
) -> list[EvalDataset]:
    """The sequence's tasks then controls (``sequence``: tasks.SequenceSpec), with their zero-shot
    class weights where ``zero_shot`` has them (benchmark/model/text.py; empty: no text tower).
    ``head_init``: "zs" (every head fitted from the start) or "lp" (each when its task starts)."""
    out = []
    for name in list(sequence.tasks) + list(sequence.controls):
        is_task = name in sequence.tasks
        label = sequence.tasks.index(name) if is_task else None
        out.append(
            EvalDataset(
                name,
                "task" if is_task else "control",
                label,
                data[name],
                zero_shot.get(name),
                head_from=0 if head_init == "zs" or label is None else label + 1,
            )
        )
    return out


class MatrixEvaluation:
    """Evaluates every dataset at one stage; ``evaluate`` returns the stage's records: dicts with
    keys stage, stage_task, dataset, role, kind, accuracy (percent). ``measures``: run after the
    standard ones (probe, zero-shot, head), e.g. VRF's (benchmark/vrf/evaluator.py)."""

    def __init__(
        self,
        datasets: list[EvalDataset],
        transform: Callable,
        probe: ProbeConfig,
        device: torch.device,
        task_names: list[str],
        features: FeaturePass,
        row0_cache: Row0Cache | None = None,
        measures: Sequence[Measure] = (),
    ):
        self.datasets, self.transform, self.probe = datasets, transform, probe
        self.device, self.task_names = device, task_names
        self.features, self.row0_cache = features, row0_cache
        self.measures = [*standard_measures(probe, features.cost), *measures]
        self.batch_size = features.batch_size

    def evaluate(self, model: torch.nn.Module, stage: int) -> list[dict]:
        """Row ``stage`` (0 = pretrained, t = after task t) of every matrix, as records."""
        with phase(smaller_eval_batch(f"evaluating stage {stage}", self.batch_size)):
            return self._evaluate(model, stage)

    def _evaluate(self, model: torch.nn.Module, stage: int) -> list[dict]:
        stage_task = "pretrained" if stage == 0 else self.task_names[stage - 1]
        records = []
        for ds in self.datasets:
            key = self._row0_key(model, ds) if stage == 0 and self.row0_cache else None
            accuracies = self.row0_cache.get(key) if key else None
            if accuracies is None:
                accuracies = self.evaluate_dataset(model, ds, stage)
                if key:
                    self.row0_cache.put(key, accuracies)
            faults.reached("eval")
            accuracies = dict(accuracies)
            probe_c = accuracies.pop(PROBE_C, None)
            for kind, acc in accuracies.items():
                records.append(
                    dict(
                        stage=stage,
                        stage_task=stage_task,
                        dataset=ds.name,
                        role=ds.role,
                        kind=kind,
                        accuracy=100.0 * acc,
                        **({PROBE_C: probe_c} if kind == LP.name and probe_c is not None else {}),
                    )
                )
        return records

    def _row0_key(self, model: torch.nn.Module, ds: EvalDataset) -> str | None:
        head = model.heads[str(ds.task_label)] if ds.task_label is not None else None
        extra = {
            "role": ds.role,
            "zs": tensor_digest(ds.zs_weight),
            "kinds": ROW0_KEY_KINDS,
            "head": tensor_digest(*(head.weight, head.bias) if head else [None]),
            "pipeline": "device" if self.features.pipeline else "pil",
            "autocast": str(self.features.autocast),
            "transform": repr(self.transform),
        }
        return self.row0_cache.key(ds.name, ds.data.provenance, extra)

    def evaluate_dataset(
        self, model: torch.nn.Module, ds: EvalDataset, stage: int
    ) -> dict[str, float]:
        """Every kind of ``ds`` at ``stage`` (fractions, and the probe's C), from one extraction."""
        return measure_all(self.measures, ds, stage, self.extract(model, ds, stage))

    def extract(self, model: torch.nn.Module, ds: EvalDataset, stage: int) -> StageFeatures:
        """The current encoder's features of the probe's train subset, the test subset and the
        validation images the subset left out, and the task's head if fitted at ``stage``."""
        n_train = len(ds.data.train)
        idx, val_mask = probe_split(n_train, self.probe.max_train_samples)
        rest = validation_rest(n_train, idx, val_mask)  # the validation images idx left out
        test_idx = subsample(len(ds.data.test), self.probe.max_test_samples)
        features = extract_features(
            model.encoder,
            [
                Transformed(ds.data.train, self.transform, idx),
                Transformed(ds.data.test, self.transform, test_idx),
                Transformed(ds.data.train, self.transform, rest),
            ],
            desc=f"features {ds.name}",
            **self.features.kwargs(),
        )
        n_idx, n_test = len(idx), len(test_idx)
        train_f, test_f = features[:n_idx], features[n_idx : n_idx + n_test]
        targets = np.asarray(targets_of(ds.data.train))
        train_y = torch.as_tensor(targets[idx], device=self.device)
        test_y = torch.as_tensor(np.asarray(targets_of(ds.data.test))[test_idx], device=self.device)
        mask = torch.as_tensor(val_mask, device=self.device)
        val_f = torch.cat([train_f[mask], features[n_idx + n_test :]])
        val_y = torch.cat([train_y[mask], torch.as_tensor(targets[rest], device=self.device)])
        fitted = ds.task_label is not None and stage >= ds.head_from
        head = model.heads[str(ds.task_label)] if fitted else None
        return StageFeatures(
            idx, mask, test_idx, train_f, train_y, test_f, test_y, val_f, val_y, head
        )
