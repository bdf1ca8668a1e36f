"""LP-FT: Kumar, Raghunathan, Jones, Ma & Liang, "Fine-Tuning can Distort Pretrained Features and
Underperform Out-of-Distribution", ICLR 2022, arXiv:2202.10054.

Before fine-tuning on task t, its head is set to the linear probe fitted on the current encoder's
L2-normalised features of the task's train split (eval transform; C swept on the validation split,
as the LP evaluation does):

    (W, b) = argmin mean_i CE(W normalize(f(x_i)) + b, y_i) + ||W||^2 / (2 C n),
    head(x) = W normalize(f(x)) + b          (no temperature: the probe's own scale)

then the encoder and head are fine-tuned with CE as in FT.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.model.lp_init import LPInitPlugin


@dataclass(frozen=True)
class Config:
    """No fields: the probe uses the run's probe settings (C grid, --probe-max-train)."""


def build(context, config: Config) -> list:
    return [LPInitPlugin(context)]
