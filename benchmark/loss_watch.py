"""The finite-loss check and the progress bar's loss without a host synchronisation per step: the
loss is watched on the device and read every ``SYNC_EVERY`` steps (benchmark/trainer.py)."""

from __future__ import annotations

import math

import torch

from benchmark.errors import CFBenchError


class NonFiniteLossError(CFBenchError):
    pass


SYNC_EVERY = 25  # training steps between host reads of the loss (progress bar, finite check)


class LossWatch:
    """The last loss and the first non-finite one (value, step), kept on the device so that a
    training step does not wait for the GPU; ``read`` synchronises once."""

    def __init__(self, device: torch.device):
        self.device = device
        self.last: torch.Tensor | None = None
        self.bad = torch.tensor([math.nan, -1.0], device=device)  # (value, step); step -1: none

    def check(self, loss: torch.Tensor, step: int) -> None:
        """Remember ``loss`` (of a batch or micro-batch) if it is the first non-finite one."""
        loss = loss.float().reshape(())
        first = torch.logical_and(~torch.isfinite(loss), self.bad[1] < 0)
        # torch.full fills on the device; torch.tensor(step, device=...) would copy from pageable
        # host memory, which synchronises with the GPU every step
        entry = torch.stack([loss, torch.full((), float(step), device=self.device)])
        self.bad = torch.where(first, entry, self.bad)

    def read(self) -> tuple[float | None, tuple[float, int] | None]:
        value, step = self.bad.tolist()
        last = None if self.last is None else float(self.last)
        self.bad = torch.tensor([math.nan, -1.0], device=self.device)
        return last, (None if step < 0 else (value, int(step)))
