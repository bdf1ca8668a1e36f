"""WiSE-FT: Wortsman, Ilharco, Kim, Li, Kornblith, Roelofs, Gontijo-Lopes, Hajishirzi, Farhadi,
Namkoong & Schmidt, "Robust fine-tuning of zero-shot models", CVPR 2022, arXiv:2109.01903.

After each task the image-encoder weights are interpolated with the pretrained ones,

    theta = (1 - a) * theta_0 + a * theta_ft,

in place, so the evaluation (which runs after this plugin) and the next task see the interpolated
encoder. The heads are left as trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from avalanche.training.plugins import SupervisedPlugin
from torch import nn

from strategies.common import cpu_state
from strategies.penalties import interpolate


@dataclass(frozen=True)
class Config:
    """alpha = 0.5: the paper's default mixing coefficient (its Eq. 1 with alpha = 0.5)."""

    alpha: float = 0.5  # a: weight of the fine-tuned encoder (1 = plain FT, 0 = pretrained)

    def __post_init__(self):
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")


class WiSEFTPlugin(SupervisedPlugin):
    def __init__(self, encoder: nn.Module, alpha: float):
        super().__init__()
        self.encoder, self.alpha = encoder, alpha
        self.theta0 = cpu_state(encoder)  # built before training: the pretrained weights

    @torch.no_grad()
    def after_training_exp(self, strategy, **kwargs):
        mixed = interpolate(self.theta0, self.encoder.state_dict(), self.alpha)
        self.encoder.load_state_dict(mixed)

    def state_dict(self) -> dict:
        """Empty: theta0 is the pretrained encoder, copied again when a resumed run builds this
        plugin from its freshly built model."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def build(context, config: Config) -> list:
    return [WiSEFTPlugin(context.model.encoder, config.alpha)]
