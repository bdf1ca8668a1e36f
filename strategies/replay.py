"""Experience replay (ER): Chaudhry et al., "On Tiny Episodic Memories in Continual Learning",
arXiv:1902.10486 (Rolnick et al., NeurIPS 2019, arXiv:1811.11682), as Avalanche's ``ReplayPlugin``:

    loss = CE(new batch ∪ memory batch),

memory = a uniform random sample of every past task, ``mem_size`` images in all, split evenly over
the tasks seen (Avalanche's experience-balanced buffer). After the first task every step sees a
batch of new images plus ``batch_size_mem`` remembered ones, so the effective batch doubles by
default (docs/design.md section 5); the learning-rate schedule still counts steps over the new data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from avalanche.benchmarks.utils import concat_datasets
from avalanche.training.plugins import ReplayPlugin
from avalanche.training.storage_policy import ExemplarsBuffer

from benchmark.plugin import StrategyPlugin


@dataclass(frozen=True)
class Config:
    """mem_size = 2000: 400 images per past task on a 5-task sequence, 1-4 % of each dataset's
    training set (cheap next to the data it protects; enough for a clear effect). batch_size_mem
    = None: as many remembered images per step as new ones (Avalanche's default)."""

    mem_size: int = 2000  # images in the memory, over all past tasks
    batch_size_mem: int | None = None  # remembered images per step (None: the training batch)

    def __post_init__(self):
        if self.mem_size < 1:
            raise ValueError(f"mem_size must be >= 1, got {self.mem_size}")
        if self.batch_size_mem is not None and self.batch_size_mem < 1:
            raise ValueError(f"batch_size_mem must be >= 1, got {self.batch_size_mem}")


def balanced_sizes(max_size: int, groups: int) -> list[int]:
    """Memory per task when ``groups`` tasks share ``max_size`` images: equal shares, the
    remainder to the earliest tasks (Avalanche's experience-balanced buffer, adaptive size)."""
    sizes = [max_size // groups] * groups
    for i in range(max_size - sum(sizes)):
        sizes[i] += 1
    return sizes


class IndexedMemory(ExemplarsBuffer):
    """An experience-balanced memory that holds, per past task, the indices of its kept images in
    that task's training dataset: the stream's own (``StrategyContext.train_datasets``), so a
    restored memory points at the images it was drawn from. The state is a few integers."""

    def __init__(self, max_size: int, train_datasets):
        super().__init__(max_size)
        self.train_datasets = train_datasets  # task index -> its training dataset in the stream
        self.kept: dict[int, torch.Tensor] = {}

    @property
    def buffer(self):
        """The remembered images, task by task (what Avalanche's ReplayDataLoader samples)."""
        parts = [self.train_datasets[t].subset(idx.tolist()) for t, idx in self.kept.items()]
        return concat_datasets(parts)

    def post_adapt(self, agent, exp):
        """After a task: keep a uniform random sample of it, and shrink every earlier task's
        sample to its new share (their first images: still uniform samples)."""
        task = len(self.kept)
        sizes = balanced_sizes(self.max_size, task + 1)
        self.kept[task] = torch.randperm(len(self.train_datasets[task]))[: sizes[-1]]
        for (t, idx), n in zip(list(self.kept.items()), sizes, strict=True):
            self.kept[t] = idx[:n]

    def resize(self, strategy, new_size: int) -> None:
        self.max_size = new_size

    def state_dict(self) -> dict:
        return {"kept": {t: idx.clone() for t, idx in self.kept.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.kept.clear()
        for task, indices in sorted(state["kept"].items()):
            if len(indices) and int(indices.max()) >= len(self.train_datasets[int(task)]):
                raise ValueError(f"replay state does not match task {task}'s training split")
            self.kept[int(task)] = indices.long()


class CheckpointableReplay(ReplayPlugin, StrategyPlugin):
    def __init__(self, context, mem_size: int, batch_size_mem: int | None):
        if context.train_datasets is None:
            raise ValueError("replay needs the stream's training datasets (StrategyContext)")
        super().__init__(
            mem_size=mem_size,
            batch_size_mem=batch_size_mem,
            storage_policy=IndexedMemory(mem_size, context.train_datasets),
        )

    def after_training_exp(self, strategy, **kwargs):
        # What Avalanche's ReplayPlugin does through the deprecated ``storage_policy.update``,
        # without its deprecation warning on every task.
        self.storage_policy.post_adapt(strategy, strategy.experience)

    def state_dict(self) -> dict:
        return self.storage_policy.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.storage_policy.load_state_dict(state)


def build(context, config: Config) -> list:
    return [CheckpointableReplay(context, config.mem_size, config.batch_size_mem)]
