"""WiSE-FT: Wortsman, Ilharco, Kim, Li, Kornblith, Roelofs, Gontijo-Lopes, Hajishirzi, Farhadi,
Namkoong & Schmidt, "Robust fine-tuning of zero-shot models", CVPR 2022, arXiv:2109.01903.

After each task the whole classifier (image encoder and task heads) is interpolated in place with
its zero-shot / initial weights, as the paper's Eq. 1 and the official code (mlfoundations/wise-ft,
which mixes the state dict of encoder + head) do:

    theta = (1 - a) * theta_0 + a * theta_ft,

theta_0 = the pretrained encoder and, for a head, its value at the start of the task's training,
after the head initialisation: the zero-shot head under ``--head-init zs``, the LP-initialised
head under ``--head-init lp`` (LPInitPlugin sets it in ``before_training_exp``; the snapshot is
taken at the task's first training iteration, so it sees that head whatever the plugin order).
Every head is mixed with its start-of-task value; heads of other tasks do not train during a
task, so they are left as they are (entries equal in both are kept bit for bit). The evaluation
(which runs after this plugin) and the next task see the interpolated weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from benchmark.plugin import StrategyPlugin
from strategies.common import cpu_state
from strategies.penalties import interpolate


@dataclass(frozen=True)
class Config:
    """alpha = 0.5: the paper's default mixing coefficient (its Eq. 1 with alpha = 0.5).

    heads = True: the paper's method, which interpolates the classifier, head included (mixing
    the encoder alone pairs the fine-tuned head with features moved part of the way back to the
    pretrained ones, which it was not trained on). False: the encoder only, heads as trained
    (what cfbench did before this option existed). A run checkpointed before then has no
    ``heads`` setting; its resume is refused with either value (rather than continued with a
    behaviour it may not have started with): rerun it with --fresh.
    """

    alpha: float = 0.5  # a: weight of the fine-tuned weights (1 = plain FT, 0 = initial)
    heads: bool = True  # also interpolate the task heads with their start-of-task values

    def __post_init__(self):
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if not isinstance(self.heads, bool):
            raise ValueError(f"heads must be true or false, got {self.heads!r}")


def mix(theta0: Mapping[str, torch.Tensor], current: Mapping[str, torch.Tensor], a: float) -> dict:
    """``interpolate(theta0, current, a)``, except that an entry equal in both stays bit for bit
    (an untrained head, a frozen buffer: (1 - a) x + a x need not round to x)."""
    mixed = interpolate(theta0, current, a)
    for key, now in current.items():
        if torch.equal(theta0[key].to(now.device), now):
            mixed[key] = now
    return mixed


class WiSEFTPlugin(StrategyPlugin):
    def __init__(self, encoder: nn.Module, alpha: float, heads: nn.Module | None = None):
        super().__init__()
        self.encoder, self.alpha, self.heads = encoder, alpha, heads  # heads None: encoder only
        self.theta0 = cpu_state(encoder)  # built before training: the pretrained weights
        self.heads0: dict[str, torch.Tensor] | None = None  # the heads at the task's start

    def before_training_iteration(self, strategy, **kwargs):
        """The first iteration of a task: after every before_training_exp (LP-init included),
        before any update."""
        if self.heads is not None and self.heads0 is None:
            self.heads0 = cpu_state(self.heads)

    @torch.no_grad()
    def after_training_exp(self, strategy, **kwargs):
        self.encoder.load_state_dict(mix(self.theta0, self.encoder.state_dict(), self.alpha))
        if self.heads is not None and self.heads0 is not None:
            self.heads.load_state_dict(mix(self.heads0, self.heads.state_dict(), self.alpha))
        self.heads0 = None  # the next task takes its own snapshot

    def state_dict(self) -> dict:
        """theta0 is the pretrained encoder, copied again when a resumed run builds this plugin
        from its freshly built model. The heads' snapshot lives within a task only, so between
        tasks (where checkpoints are taken) the state is empty; were one taken within a task,
        the snapshot would be kept."""
        return {} if self.heads0 is None else {"heads0": self.heads0}

    def load_state_dict(self, state: dict) -> None:
        self.heads0 = state.get("heads0")


def build(context, config: Config) -> list:
    heads = context.model.heads if config.heads else None
    return [WiSEFTPlugin(context.model.encoder, config.alpha, heads)]
