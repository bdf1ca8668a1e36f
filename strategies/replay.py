"""Experience replay (ER): Chaudhry et al., "On Tiny Episodic Memories in Continual Learning",
arXiv:1902.10486 (Rolnick et al., NeurIPS 2019, arXiv:1811.11682), as Avalanche's ``ReplayPlugin``:

    loss = CE(new batch ∪ memory batch),

memory = a uniform random sample of every past task, ``mem_size`` images in all, split evenly over
the tasks seen (Avalanche's experience-balanced buffer). After the first task every step sees a
batch of new images plus ``batch_size_mem`` remembered ones, so the effective batch doubles by
default (DESIGN.md section 5); the learning-rate schedule still counts steps over the new data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from avalanche.training.plugins import ReplayPlugin
from avalanche.training.storage_policy import ExperienceBalancedBuffer, ReservoirSamplingBuffer

from benchmark.streams import task_aware, training_split


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


class IndexedBuffer(ExperienceBalancedBuffer):
    """Avalanche's experience-balanced buffer, holding for each task the indices of its kept images
    in that task's training dataset, so the state is a few integers and can be rebuilt."""

    def __init__(self, max_size: int, dataset_of):
        super().__init__(max_size, adaptive_size=True)
        self.dataset_of = dataset_of  # task index -> its training dataset (as the stream has it)
        self.kept: dict[int, torch.Tensor] = {}

    def _add(self, group: int, dataset, indices: torch.Tensor) -> None:
        buffer = ReservoirSamplingBuffer(len(indices))
        buffer.buffer = dataset.subset(indices.tolist())
        buffer._buffer_weights = torch.zeros(len(indices))  # resize() slices it; order is kept
        self.buffer_groups[group], self.kept[group] = buffer, indices

    def post_adapt(self, agent, exp):
        group = self._num_exps
        self._num_exps += 1
        lengths = self.get_group_lengths(self._num_exps)
        self._add(group, exp.dataset, torch.randperm(len(exp.dataset))[: lengths[-1]])
        for (g, buffer), n in zip(self.buffer_groups.items(), lengths, strict=True):
            buffer.resize(agent, n)  # keeps the first n: still a uniform sample of task g
            self.kept[g] = self.kept[g][:n]

    def state_dict(self) -> dict:
        return {"kept": {g: idx.clone() for g, idx in self.kept.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.buffer_groups.clear()
        self.kept.clear()
        for group, indices in sorted(state["kept"].items()):
            dataset = self.dataset_of(int(group))
            if len(indices) and int(indices.max()) >= len(dataset):
                raise ValueError(f"replay state does not match task {group}'s training split")
            self._add(int(group), dataset, indices.long())
        self._num_exps = len(self.kept)


class CheckpointableReplay(ReplayPlugin):
    def __init__(self, context, mem_size: int, batch_size_mem: int | None):
        enc = context.encoder

        def dataset_of(t: int):  # what benchmark.streams.build_stream gives task t
            split = training_split(context.tasks[t], context.train.max_train_images)
            return task_aware(split, t, enc.train_transform, enc.eval_transform)

        super().__init__(
            mem_size=mem_size,
            batch_size_mem=batch_size_mem,
            storage_policy=IndexedBuffer(mem_size, dataset_of),
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
