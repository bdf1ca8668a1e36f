"""A strategy that lives outside cfbench, as a worked example of the plugin API.

L1-SP: like L2-SP, but an L1 pull of the image encoder towards its pretrained weights theta_0,

    loss = CE + lam * sum_i |theta_i - theta0_i|

Run it from the repository root (the folder of run_benchmark.py is on the import path):

    python run_benchmark.py --sequence smoke --strategy examples.my_strategy:build \\
        --strategy-arg lam=1e-5

``--strategy package.module:factory`` imports ``factory`` and calls it with every
``--strategy-arg`` as a keyword argument (converted to the parameter's annotation when it has a
simple one: float, int, bool, str), plus ``context=`` (a ``strategies.StrategyContext``: the model,
the encoder, the device, the run's training and probe settings, the tasks) when the factory
declares that parameter. It returns one Avalanche plugin or a list of them, which join the one
training loop. Any Avalanche plugin class works the same way unchanged, e.g.
``--strategy avalanche.training.plugins:SynapticIntelligencePlugin --strategy-arg si_lambda=1``.
"""

from __future__ import annotations

import torch
from avalanche.training.plugins import SupervisedPlugin


class L1SPPlugin(SupervisedPlugin):
    def __init__(self, encoder: torch.nn.Module, lam: float):
        super().__init__()
        self.encoder, self.lam = encoder, lam
        # The anchor is a plain list of tensors held by the plugin: anything inside the model
        # would be handed to the optimiser by Avalanche.
        self.anchor = [p.detach().clone() for p in encoder.parameters()]

    def before_training_exp(self, strategy, **kwargs):
        self.anchor = [a.to(strategy.device) for a in self.anchor]

    def before_backward(self, strategy, **kwargs):
        # Runs after the CE loss is computed; anything added to strategy.loss is optimised.
        pairs = zip(self.encoder.parameters(), self.anchor, strict=True)
        strategy.loss += self.lam * sum((p - a).abs().sum() for p, a in pairs)

    # These two make a run with this strategy resumable after a crash. Return whatever the plugin
    # accumulates over tasks (tensors and plain Python values only). The anchor needs no saving:
    # a resumed run builds this plugin again from the pretrained model, then loads the checkpoint.
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def build(context, lam: float = 1e-5) -> list:
    """The factory: called before training, when the encoder still has its pretrained weights."""
    if not lam >= 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    return [L1SPPlugin(context.model.encoder, lam)]
