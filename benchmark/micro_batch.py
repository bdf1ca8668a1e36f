"""Micro-batches: a batch run in parts whose share-weighted gradients add up to the batch's.

The trainer's step (``--micro-batch``) and EWC's importance pass both split a batch this way, so
that a pass fits where training fits without changing what it computes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


def micro_batches(
    batch: Sequence[torch.Tensor], size: int
) -> Iterator[tuple[list[torch.Tensor], float]]:
    """The batch's parts of at most ``size`` samples (every tensor of ``batch`` sliced alike),
    each with its share of the batch, len(part) / len(batch): a part's mean loss times its share,
    summed over the parts, is the batch's mean loss, and so are the gradients."""
    n = len(batch[0])
    for start in range(0, n, size):
        part = [t[start : start + size] for t in batch]
        yield part, len(part[0]) / n
