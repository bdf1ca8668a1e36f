"""Plain fine-tuning (FT): cross-entropy on the current task only, no regulariser.

The baseline every other strategy is compared with; it adds no plugin to the training loop.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    """FT has no hyper-parameters of its own (the optimiser settings are the run's)."""


def build(context, config: Config) -> list:
    return []
