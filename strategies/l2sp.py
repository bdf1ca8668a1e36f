"""L2-SP: Li, Grandvalet & Davoine, "Explicit inductive bias for transfer learning with
convolutional networks", ICML 2018, arXiv:1802.01483.

    loss = CE + alpha * sum_i ||theta_i - theta0_i||^2

over the image-encoder parameters theta (the heads are not regularised); theta0 is the anchor:
the encoder at the end of the previous task (default) or the pretrained encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from benchmark.plugin import StrategyPlugin
from strategies.anchors import ANCHORS, FrozenAnchor
from strategies.common import check_choice, check_weight
from strategies.penalties import l2sp_penalty


@dataclass(frozen=True)
class Config:
    """alpha = 0.5: the L2-SP weight of the official LDIFS code's L2-SP baseline (the same penalty,
    without the paper's 1/2), so the two methods compare as in the LDIFS paper. anchor = previous:
    each task is pulled towards what the sequence has learnt so far, as in the sequence runs."""

    alpha: float = 0.5  # weight of the squared distance to the anchor
    anchor: Literal["previous", "pretrained"] = "previous"

    def __post_init__(self):
        check_weight("alpha", self.alpha)
        check_choice("anchor", self.anchor, ANCHORS)


class L2SPPlugin(StrategyPlugin):
    def __init__(self, encoder, alpha: float, anchor: str = "previous"):
        super().__init__()
        self.encoder, self.alpha = encoder, alpha
        self.anchor = FrozenAnchor(encoder, anchor)

    def before_training_exp(self, strategy, **kwargs):
        self.anchor.update()

    def before_backward(self, strategy, **kwargs):
        params = self.encoder.parameters()
        strategy.loss += self.alpha * l2sp_penalty(params, self.anchor.module.parameters())

    def state_dict(self) -> dict:
        return {"anchor": self.anchor.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.anchor.load_state_dict(state["anchor"])


def build(context, config: Config) -> list:
    return [L2SPPlugin(context.model.encoder, config.alpha, config.anchor)]
