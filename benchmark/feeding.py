"""A run's data and how it is fed: the datasets, checked; the device pipeline when every dataset is
held as uint8 arrays (benchmark/pipeline.py), and its training batches on the device."""

from __future__ import annotations

import numpy as np

from benchmark.config import RunConfig
from benchmark.errors import CFBenchError
from benchmark.model.encoder import Encoder
from benchmark.pipeline import DeviceBatches, TensorPipeline, epoch_seed
from benchmark.streams import training_split
from tasks import get_task, load_task
from tasks.base import TaskData
from tasks.data import size_mismatch


def load_data(names: list[str], cfg: RunConfig, log) -> dict[str, TaskData]:
    """Every dataset of the run, each checked (sizes, labels, a prepared store's files); a split
    that is not the dataset's fixed one is said once, since its results are not comparable."""
    data = {n: load_task(n, cfg.data_root, cfg.download, cfg.source) for n in names}
    for n, d in data.items():
        note = size_mismatch(get_task(n), d)
        if note:
            log(f"note: {note}; results on it are not comparable with the paper's")
    return data


def choose_pipeline(cfg: RunConfig, encoder: Encoder, data: dict[str, TaskData]):
    """The device pipeline when asked for or possible (``auto``), else None (PIL). It needs every
    dataset as uint8 arrays (the prepared store, .npz files, generated data)."""
    if cfg.pipeline == "pil":
        return None
    pipeline = TensorPipeline.from_transforms(encoder.train_transform, encoder.eval_transform)
    raw = [n for n, d in data.items() if not hasattr(d.train, "images")]
    if cfg.pipeline == "device" and (pipeline is None or raw):
        why = (
            f"{', '.join(raw)} not in the prepared store (run 'run_benchmark.py data "
            f"prepare {' '.join(raw)}')"
            if raw
            else f"{cfg.model}'s transforms are not ones it can run on tensors"
        )
        raise CFBenchError(f"--pipeline device: {why}; or use --pipeline pil")
    return None if raw else pipeline


def device_loaders(tasks: list[TaskData], cfg: RunConfig, pipeline, device, trainer):
    """Task index -> its training batches from the prepared store, transformed on the device."""

    def loader(t: int) -> DeviceBatches:
        split = training_split(tasks[t], cfg.train.max_train_images)
        store = tasks[t].train

        def seed() -> int:  # read when each epoch starts
            return epoch_seed(cfg.seed, t, trainer.clock.train_exp_epochs)

        return DeviceBatches(
            store.images,
            np.asarray(store.targets),
            np.asarray(split.indices),
            t,
            cfg.train.batch_size,
            pipeline,
            device,
            seed,
        )

    return loader
