"""The evaluation plugin: fills the LP, zero-shot and head accuracy matrices.

Row 0 is measured by the runner before the first task starts (the pretrained encoder and the
initial heads), row t after task t (after every plugin's ``after_training_exp``, so WiSE-FT's
interpolated weights are what is measured: keep this plugin last). For every task and control
dataset it extracts image embeddings of the train and test splits once, then

- lp:   fits the linear probe (probe.py) and scores it on the test split;
- zs:   scores the pretrained text tower's zero-shot head on the current encoder (CLIP only);
- head: scores the task's own trained head (task-incremental; tasks only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from avalanche.training.plugins import SupervisedPlugin
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from benchmark import faults
from benchmark.config import ProbeConfig
from benchmark.probe import linear_probe, subsample, top1
from tasks.base import TaskData, targets_of, validation_split


@dataclass
class EvalDataset:
    name: str
    role: str  # "task" or "control"
    task_label: int | None  # head index for tasks, None for controls
    data: TaskData
    zs_weight: torch.Tensor | None = None  # [C, D] zero-shot class weights (CLIP only)


class Transformed(Dataset):
    """Apply a transform to the images of a (PIL image, label) dataset, optionally on a subset."""

    def __init__(self, base: Dataset, transform: Callable, indices: np.ndarray | None = None):
        self.base, self.transform = base, transform
        self.indices = np.arange(len(base)) if indices is None else indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        image, label = self.base[int(self.indices[i])]
        return self.transform(image), label


@torch.no_grad()
def extract_features(
    encoder: torch.nn.Module,
    dataset: Dataset,
    device: torch.device,
    batch_size: int = 256,
    workers: int = 0,
    desc: str = "features",
) -> torch.Tensor:
    """Embeddings [N, D] (float32, on ``device``) in dataset order; bf16 autocast on CUDA."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    was_training = encoder.training
    encoder.eval()
    chunks = []
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    with amp:
        for images, _ in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=None):
            chunks.append(encoder(images.to(device, non_blocking=True)).float())
    encoder.train(was_training)
    return torch.cat(chunks)


def probe_split(n: int, max_n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the probe's train split (maybe subsampled) and a mask of its validation part."""
    _, val_idx = validation_split(n)
    idx = subsample(n, max_n)
    mask = np.isin(idx, val_idx)
    if not mask.any() or mask.all():  # a small subsample can miss the fixed split entirely
        _, val_pos = validation_split(len(idx))
        mask = np.isin(np.arange(len(idx)), val_pos)
    return idx, mask


class MatrixEvaluation(SupervisedPlugin):
    """Evaluate every dataset after each task (``evaluate`` for row 0); report rows through
    ``on_stage``.

    ``on_stage(stage, records)`` receives dicts with keys stage, stage_task, dataset, role, kind,
    accuracy (percent).
    """

    def __init__(
        self,
        datasets: list[EvalDataset],
        transform: Callable,
        probe: ProbeConfig,
        device: torch.device,
        task_names: list[str],
        on_stage: Callable[[int, list[dict]], None],
        workers: int = 0,
    ):
        super().__init__()
        self.datasets, self.transform, self.probe = datasets, transform, probe
        self.device, self.task_names, self.on_stage = device, task_names, on_stage
        self.workers = workers
        self.next_stage = 0  # the runner sets it past a restored checkpoint's stage
        self.busy = False  # True while a stage is being evaluated

    def after_training_exp(self, strategy, **kwargs):
        self.evaluate(strategy.model)

    def evaluate(self, model: torch.nn.Module) -> list[dict]:
        stage = self.next_stage
        stage_task = "pretrained" if stage == 0 else self.task_names[stage - 1]
        records = []
        self.busy = True
        for ds in self.datasets:
            accuracies = self.evaluate_dataset(model, ds)
            faults.reached("eval")
            for kind, acc in accuracies.items():
                records.append(
                    dict(
                        stage=stage,
                        stage_task=stage_task,
                        dataset=ds.name,
                        role=ds.role,
                        kind=kind,
                        accuracy=100.0 * acc,
                    )
                )
        self.busy = False
        self.next_stage += 1
        self.on_stage(stage, records)
        return records

    def evaluate_dataset(self, model: torch.nn.Module, ds: EvalDataset) -> dict[str, float]:
        encoder = model.encoder
        n_train = len(ds.data.train)
        idx, val_mask = probe_split(n_train, self.probe.max_train_samples)
        kw = dict(device=self.device, batch_size=self.probe.batch_size, workers=self.workers)
        train_f = extract_features(
            encoder,
            Transformed(ds.data.train, self.transform, idx),
            desc=f"features {ds.name} train",
            **kw,
        )
        test_idx = subsample(len(ds.data.test), self.probe.max_test_samples)
        test_f = extract_features(
            encoder,
            Transformed(ds.data.test, self.transform, test_idx),
            desc=f"features {ds.name} test",
            **kw,
        )
        train_y = torch.as_tensor(np.asarray(targets_of(ds.data.train))[idx], device=self.device)
        test_y = torch.as_tensor(np.asarray(targets_of(ds.data.test))[test_idx], device=self.device)
        result = linear_probe(
            train_f,
            train_y,
            torch.as_tensor(val_mask, device=self.device),
            test_f,
            test_y,
            ds.data.num_classes,
            self.probe.c_grid,
            self.probe.max_iter,
        )
        out = {"lp": result.accuracy}
        if ds.zs_weight is not None:
            logits = F.normalize(test_f, dim=1) @ ds.zs_weight.to(self.device).T
            out["zs"] = top1(logits, test_y)
        head = model.heads[str(ds.task_label)] if ds.task_label is not None else None
        if head is not None and bool(head.weight.any()):  # all-zero: LP-init head not fitted yet
            with torch.no_grad():
                out["head"] = top1(head(test_f), test_y)
        return out
