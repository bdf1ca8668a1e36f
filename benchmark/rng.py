"""The run's random number generators: seeding, and passes that must not move them."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def preserve_rng(device: torch.device | str | None = None) -> Iterator[None]:
    """Run bookkeeping (an importance pass, a probe fit) without moving the training RNG.

    Iterating a DataLoader draws a seed from the global generator, and train transforms draw
    augmentations from it: without this, a strategy's extra passes over the data would change the
    data order and augmentations of every later task, and e.g. EWC with lambda = 0 would not
    reproduce plain fine-tuning.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        yield
