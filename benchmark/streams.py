"""TaskSpecs -> an Avalanche benchmark with one experience per task.

Every experience's dataset is task-aware (explicit targets and task labels, so Avalanche's LwF and
multi-head modules work) and carries ``train``/``eval`` transform groups. The train stream uses the
train split minus the fixed validation split; the test stream uses the official test split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
from avalanche.benchmarks.scenarios.supervised import with_classes_timeline
from avalanche.benchmarks.scenarios.task_aware import with_task_labels
from avalanche.benchmarks.utils.classification_dataset import (
    _make_taskaware_classification_dataset,
)
from torch.utils.data import Dataset, Subset

from benchmark.probe.splits import training_indices
from tasks.base import TaskData, targets_of


def task_aware(dataset: Dataset, task_label: int, train_tf: Callable, eval_tf: Callable):
    """Wrap a (PIL image, label) dataset with targets, a task label and transform groups."""
    return _make_taskaware_classification_dataset(
        dataset,
        targets=targets_of(dataset),
        task_labels=task_label,
        transform_groups={"train": (train_tf, None), "eval": (eval_tf, None)},
        initial_transform_group="train",
    )


class IndexedSubset(Subset):
    """A Subset that keeps ``.targets`` in step with its indices."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]):
        super().__init__(dataset, [int(i) for i in indices])
        all_targets = targets_of(dataset)
        self.targets = [all_targets[i] for i in self.indices]


def training_split(data: TaskData, max_images: int | None = None) -> IndexedSubset:
    """The images fine-tuning sees: the train split minus the validation split, optionally a
    fixed random subset of at most ``max_images`` of them (same subset in every run)."""
    return IndexedSubset(data.train, training_indices(len(data.train), max_images))


def build_stream(
    tasks: Sequence[TaskData], train_tf: Callable, eval_tf: Callable, max_images: int | None = None
):
    """An Avalanche CLScenario with ``train_stream`` and ``test_stream``, one experience per task;
    task label t for the t-th task (0-based). Experiences carry ``task_label(s)`` and
    ``classes_in_this_experience``, which multi-head modules and the LwF plugin read."""
    train = [
        task_aware(training_split(d, max_images), t, train_tf, eval_tf) for t, d in enumerate(tasks)
    ]
    test = [task_aware(d.test, t, train_tf, eval_tf).eval() for t, d in enumerate(tasks)]
    return with_task_labels(with_classes_timeline(benchmark_from_datasets(train=train, test=test)))
