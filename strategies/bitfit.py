"""BitFit: Ben Zaken, Ravfogel & Goldberg, "BitFit: Simple Parameter-efficient Fine-tuning for
Transformer-based Masked Language-models", ACL 2022, arXiv:2106.10199.

Only the image encoder's bias terms train (with CE, as in FT), and the heads as in FT:

    y = W0 x + b,   W0 frozen, b trained,

for every additive bias of the encoder: Linear and conv biases, the fused ``in_proj_bias`` of
nn.MultiheadAttention (the q, k and v biases) and the norm layers' biases (the official code trains
every parameter whose name contains "bias", LayerNorm biases included). Every other encoder
parameter has requires_grad False, so it gets no gradient and AdamW skips it (weight decay
included). ``norms=True`` also trains the norm layers' gains (LayerNorm, batch norm, ...).

On an open_clip ViT-B/32 the biases are 102,912 of the encoder's 87.8 M parameters (0.12 %); the
CIFAR ResNet-20 has bias-free convolutions, so BitFit trains its batch norms' biases only (unless
``norms``), and with ``--batchnorm frozen`` (the offline sequence) their running statistics stay
fixed too.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from benchmark.plugin import StrategyPlugin
from strategies.trainable import bitfit_parameters, count


@dataclass(frozen=True)
class Config:
    """norms = False: the paper's method trains the bias terms only; the norm gains are a
    different (multiplicative) set of parameters, there as an option for an ablation."""

    norms: bool = False  # also train the norm layers' gains

    def __post_init__(self):
        if not isinstance(self.norms, bool):
            raise ValueError(f"norms must be true or false, got {self.norms!r}")


class BitFitPlugin(StrategyPlugin):
    """Freezes every encoder parameter but the biases (and the norms' gains if asked). Its
    checkpoint state is empty (StrategyPlugin's): which parameters train follows from the config
    and the model."""

    def __init__(self, encoder: nn.Module, heads: nn.Module, norms: bool):
        super().__init__()
        self.encoder = encoder
        self.trained = bitfit_parameters(encoder, norms)
        self.encoder_params = sum(p.numel() for p in encoder.parameters())
        self.bias_params = count(encoder, self.trained)
        self.head_params = sum(p.numel() for p in heads.parameters())

    def config_entries(self) -> dict:
        """Trainable-parameter counts for config.json ``strategy_details`` (heads: all tasks')."""
        return {
            "encoder_params": self.encoder_params,
            "trainable_encoder_params": self.bias_params,
            "head_params": self.head_params,
            "trainable_params": self.bias_params + self.head_params,
        }

    def before_training_exp(self, strategy, **kwargs):
        # Every task (idempotent): a resumed run's freshly built encoder starts all trainable.
        trained = set(self.trained)
        for name, p in self.encoder.named_parameters():
            p.requires_grad_(name in trained)


def build(context, config: Config) -> list:
    return [BitFitPlugin(context.model.encoder, context.model.heads, config.norms)]
