"""Phases of a run that can run out of GPU memory, each knowing its own fix.

``with phase(hint):`` turns a CUDA out-of-memory error inside it into ``OutOfMemory(hint)``;
``hint(rerun)`` words what ran out and what to do, given how to rerun the command ("run the same
command", or "... (without --fresh)"). The innermost phase wins (an LP-init probe inside a task's
training says to lower --eval-batch-size, not --micro-batch). The runner adds which stages are
saved and raises the one-line error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

Hint = Callable[[str], str]


class OutOfMemory(Exception):
    """CUDA ran out of memory in a phase; ``hint(rerun)`` says where and what to do."""

    def __init__(self, hint: Hint):
        super().__init__("GPU out of memory")
        self.hint = hint


@contextlib.contextmanager
def phase(hint: Hint) -> Iterator[None]:
    try:
        yield
    except torch.cuda.OutOfMemoryError:
        raise OutOfMemory(hint) from None


def smaller_eval_batch(what: str, batch_size: int) -> Hint:
    """The fix of a feature pass (an evaluation, an LP-init probe): half the batch size."""
    half = max(1, batch_size // 2)
    return lambda rerun: f"{what}; {rerun} with --eval-batch-size {half}, which resumes"
