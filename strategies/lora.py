"""LoRA: Hu, Shen, Wallis, Allen-Zhu, Li, Wang, Wang & Chen, "LoRA: Low-Rank Adaptation of Large
Language Models", ICLR 2022, arXiv:2106.09685. Linear and Conv2d layers through the ``peft``
library (``LoraModel``); ``nn.MultiheadAttention`` through this module's own low-rank
parametrization (``LowRankUpdate``), because peft's attention layer computes another function.

For every targeted weight W0 (frozen), a task trains only the low-rank update

    W = W0 + (alpha / r) B A,    A: r x in (Kaiming-uniform), B: out x r (zeros),

so each task starts exactly at the current encoder (B = 0). This is the function the training
forward computes, the one whose gradient reaches A and B, and the weight the merge writes (tested
layer by layer against W0 + (alpha / r) B A computed by hand from the adapter's A and B, and the
gradient against autograd on that hand-written function). A conv layer's A is a k x k conv to r
channels and its B a 1 x 1 conv back, so B A is the out x (in k k) product reshaped to W0's shape.
The heads train as in FT; every other encoder weight is frozen (requires_grad False, so it has no
gradient, and AdamW skips it, weight decay included). After each task the update is merged into
W0: the evaluation, the checkpoint, a resume and the next task see a plain encoder with the
parameter names it was built with, and the next task gets a fresh adapter on the merged weights.
Shuttleworth et al. (arXiv:2410.21228) find that LoRA adds new high-ranking singular directions
("intruder dimensions") that carry its forgetting, and that they accumulate when tasks are learnt
in sequence, which is the setting the per-task merge reproduces.

Targets (``target_modules``, comma-separated layer names matched as peft matches them, or
``auto``): for an open_clip ViT, ``attn,c_fc,c_proj``: every block's attention and both MLP
layers. The attention is an ``nn.MultiheadAttention``: its q, k, v projections are one fused
``in_proj_weight`` parameter, and its ``out_proj`` is a Linear that the attention never calls
(it reads ``out_proj.weight`` directly), so a LoRA layer on ``out_proj`` alone would train nothing;
that target is refused. ``attn`` adapts both weights the attention reads: the fused in_proj, as
one rank-r update of the stacked [Wq; Wk; Wv] (A: r x D shared by q, k and v; B: 3D x r), and
out_proj (A: r x D, B: D x r), each a ``torch.nn.utils.parametrize`` parametrization
W0 + (alpha / r) B A of the frozen weight. The attention's own forward runs on those weights, so
W0 is never written during the task, and the merge writes W0 + (alpha / r) B A into the same
parameter. (peft's ``MultiheadAttention`` layer, 0.15 to at least 0.21.2, adds out_proj's delta
twice in the forward and in the merge, W0 + 2 (alpha / r) B A, while B's gradient is that of the
single update: huggingface/peft PR 3774; hence this path.) For the CIFAR ResNets (and any encoder
that is not a ViT) ``auto`` adapts every Conv2d and Linear: the 19 3x3 convolutions of a
ResNet-20. At rank 8 that is 1,179,648 adapter parameters on ViT-B/32 (1.3 % of its 87.8 M) and
50,648 on the ResNet-20 (19 % of its 269 k: its 16- to 64-channel layers are narrow); config.json
``strategy_details`` records the counts.

``dropout`` acts on the Linear and conv adapters' inputs (peft computes W0 x + (alpha / r)
B A dropout(x) there); the attention's update is a weight, so dropout does not reach it.

DoRA (``dora=true``): Liu, Wang, Yin, Molchanov, Wang, Cheng & Chen, "DoRA: Weight-Decomposed
Low-Rank Adaptation", ICML 2024, arXiv:2402.09353. Every adapted weight becomes

    W = m (W0 + (alpha / r) B A) / ||W0 + (alpha / r) B A||_c,

||.||_c the L2 norm of each output row (the paper's columns: it writes W as in x out) and m a
trained magnitude, one per output row, initialised to ||W0||_c, so that a task starts at W0
exactly. As the paper's section 4.3 advises and peft implements (``use_dora=True``), the norm is
a constant of the backward pass: its value follows B A, no gradient flows through it. The Linear
and conv layers are peft's DoRA layers, the attention's in_proj and out_proj ``LowRankUpdate``
with a magnitude (the same rule, tested weight by weight against the formula written by hand);
the merge writes W. The magnitudes add one parameter per output row: 82,944 on ViT-B/32 (12
blocks of 4 x 768 attention rows, 3,072 c_fc and 768 c_proj rows), 688 on the ResNet-20; the
counts in ``strategy_details`` include them. With dropout, peft's DoRA layer applies the
magnitude's correction to the dropped-out input: W0 x + (m / n - 1) W0 drop(x) + (m / n)
(alpha / r) B A drop(x) in training, n the detached norm.

Defaults: rank 8 and alpha 16 (scaling 2) are the official RoBERTa-base GLUE scripts'
(microsoft/LoRA examples/NLU: --lora_r 8 --lora_alpha 16); dropout 0 is peft's default. Those
scripts train at lr 4e-4 to 5e-4: the protocol's lr (1e-5 for ViT-B/32, the full-FT rate) applies
to the adapters and the heads alike and moves a zero-initialised adapter slowly, so pass a larger
--lr for a LoRA study, or raise alpha (with Adam, alpha / r scales the adapter's steps, not the
heads').
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from benchmark.errors import CFBenchError
from benchmark.plugin import StrategyPlugin
from benchmark.rng import preserve_rng
from strategies.trainable import layer_kinds, lora_count, lora_targets


@dataclass(frozen=True)
class Config:
    """rank 8, alpha 16: the official LoRA RoBERTa-base GLUE setting (r = 8, alpha = 16); dropout
    0: peft's default; target_modules auto: see the module docstring; dora off: plain LoRA."""

    rank: int = 8  # r, the rank of the update B A
    alpha: float = 16.0  # the update is scaled by alpha / rank
    dropout: float = 0.0  # dropout on the adapter's input (training only; Linear and conv layers)
    target_modules: str = "auto"  # comma-separated layer names, or auto (per architecture)
    dora: bool = False  # DoRA: W = m (W0 + (alpha / r) B A) / ||W0 + (alpha / r) B A||_c

    def __post_init__(self):
        if self.rank < 1:
            raise ValueError(f"rank must be an integer >= 1, got {self.rank}")
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"alpha must be a finite number > 0, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.target_modules != "auto" and not all(self.keys()):
            raise ValueError(
                f"target_modules must be auto or names separated by commas, got "
                f"{self.target_modules!r}"
            )
        if not isinstance(self.dora, bool):
            raise ValueError(f"dora must be true or false, got {self.dora!r}")

    def keys(self) -> list[str] | None:
        """The target names, or None for the architecture's default."""
        if self.target_modules == "auto":
            return None
        return [k.strip() for k in self.target_modules.split(",")]


class LowRankUpdate(nn.Module):
    """The parametrization W0 -> W0 + scaling B A of a frozen out x in weight W0, with A: r x in
    (Kaiming-uniform with a = sqrt(5), as peft and nn.Linear draw it: U(-1/sqrt(in), 1/sqrt(in)))
    and B: out x r (zeros). The attention's adapters (see the module docstring).

    ``dora``: W0 -> m (W0 + scaling B A) / ||W0 + scaling B A||_c, the norm of each output row
    treated as a constant (detached, as peft's DoRA layers do) and the magnitude m (one per row,
    ``lora_magnitude``) starting at ||W0||_c, so that W = W0 exactly while B = 0."""

    def __init__(self, weight: torch.Tensor, rank: int, scaling: float, dora: bool = False):
        super().__init__()
        out_features, in_features = weight.shape
        self.scaling = scaling
        self.lora_A = nn.Parameter(weight.new_empty(rank, in_features))
        self.lora_B = nn.Parameter(weight.new_zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_magnitude = None
        if dora:
            self.lora_magnitude = nn.Parameter(row_norms(weight.detach()))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        adapted = weight + self.scaling * (self.lora_B @ self.lora_A)
        if self.lora_magnitude is None:
            return adapted
        return (self.lora_magnitude / row_norms(adapted.detach())).unsqueeze(1) * adapted


def row_norms(weight: torch.Tensor) -> torch.Tensor:
    """The L2 norm of each output row of an out x in weight (DoRA's column norm ||W||_c: the
    paper writes W as in x out), computed as peft's DoRA layers compute it."""
    return torch.linalg.norm(weight, dim=1).to(weight.dtype)


def dora_count(module: nn.Module, targets: list[str]) -> int:
    """DoRA's magnitudes over the qualified ``targets``: one per output row of every adapted
    weight (Linear: out; Conv2d: out channels; MultiheadAttention(D): 3D for in_proj, D for
    out_proj)."""
    total = 0
    for target in targets:
        layer = module.get_submodule(target)
        if isinstance(layer, nn.MultiheadAttention):
            total += 4 * layer.embed_dim
        elif isinstance(layer, nn.Conv2d):
            total += layer.out_channels
        else:
            total += layer.out_features
    return total


def attention_weights(attention: nn.MultiheadAttention) -> list[tuple[nn.Module, str]]:
    """(module, parameter name) of the two weights an nn.MultiheadAttention reads: the fused
    in_proj (3D x D) and out_proj's (D x D)."""
    if not attention._qkv_same_embed_dim:
        raise CFBenchError("LoRA needs an nn.MultiheadAttention with a fused in_proj_weight")
    return [(attention, "in_proj_weight"), (attention.out_proj, "weight")]


class LoRAPlugin(StrategyPlugin):
    """A fresh LoRA adapter on ``targets`` of the encoder for every task, merged after it.

    Its checkpoint state is empty (StrategyPlugin's): checkpoints are taken between tasks, where
    the adapter is merged into the encoder (which the checkpoint holds) and the next task's
    adapter is not drawn yet."""

    def __init__(
        self,
        encoder: nn.Module,
        heads: nn.Module,
        targets: list[str],
        config: Config,
        device: torch.device,
    ):
        super().__init__()
        self.encoder, self.targets, self.config, self.device = encoder, targets, config, device
        self.encoder_params = sum(p.numel() for p in encoder.parameters())
        self.adapter_params = lora_count(encoder, targets, config.rank)
        if config.dora:
            self.adapter_params += dora_count(encoder, targets)
        self.head_params = sum(p.numel() for p in heads.parameters())
        self.active = False  # an adapter is in the encoder (a task trains)
        self.tuner = None  # peft's LoraModel for the Linear and conv targets while a task trains
        self._parametrized: list[tuple[nn.Module, str]] = []  # the attention weights
        self._flags: dict[str, bool] = {}
        self._order: dict[str, list[str]] = {}

    def config_entries(self) -> dict:
        """Trainable-parameter counts for config.json ``strategy_details`` (heads: all tasks')."""
        return {
            "encoder_params": self.encoder_params,
            "trainable_encoder_params": self.adapter_params,
            "head_params": self.head_params,
            "trainable_params": self.adapter_params + self.head_params,
            "lora_targets": layer_kinds(self.targets),
            "lora_layers": len(self.targets),
        }

    def before_training_exp(self, strategy, **kwargs):
        self.inject()
        # Avalanche built this task's optimiser (from model.parameters()) before the plugins'
        # before_training_exp: rebuild it so that it holds the new adapter, and drop what the
        # model no longer has (the previous task's adapter, the renamed frozen weights).
        strategy.make_optimizer(remove_params=True)

    def after_training_exp(self, strategy, **kwargs):
        self.merge()

    def inject(self) -> None:
        """Freeze the encoder and add a fresh adapter (B = 0: the encoder's outputs are unchanged).
        Its random A is drawn without moving the training RNG, so the data order is FT's."""
        if self.active:
            raise CFBenchError("LoRA: the previous task's adapter was not merged")
        self._flags = {n: p.requires_grad for n, p in self.encoder.named_parameters()}
        self._order = {n: list(m._parameters) for n, m in self.encoder.named_modules()}
        cfg = self.config
        mha = nn.MultiheadAttention
        attentions = [t for t in self.targets if isinstance(self.encoder.get_submodule(t), mha)]
        layers = [t for t in self.targets if t not in attentions]
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        with preserve_rng(self.device):
            if layers:
                from peft import LoraConfig, LoraModel  # imports transformers: only when needed

                config = LoraConfig(
                    r=cfg.rank,
                    lora_alpha=cfg.alpha,
                    lora_dropout=cfg.dropout,
                    target_modules=layers,
                    use_dora=cfg.dora,
                )
                self.tuner = LoraModel(self.encoder, config, "default")
            for target in attentions:
                for module, name in attention_weights(self.encoder.get_submodule(target)):
                    weight, scaling = getattr(module, name), cfg.alpha / cfg.rank
                    update = LowRankUpdate(weight, cfg.rank, scaling, cfg.dora)
                    parametrize.register_parametrization(module, name, update)
                    self._parametrized.append((module, name))
        self.active = True

    @torch.no_grad()
    def merge(self) -> None:
        """W0 += (alpha / r) B A for every adapted layer (DoRA: W0 <- m (W0 + (alpha / r) B A) /
        ||W0 + (alpha / r) B A||_c), then remove the adapters: the encoder has its original
        modules, parameter names and order, and requires_grad flags again."""
        if not self.active:
            return
        for module, name in self._parametrized:
            # writes the parametrized value (the training forward's weight) into W0's parameter
            parametrize.remove_parametrizations(module, name, leave_parametrized=True)
        self._parametrized = []
        if self.tuner is not None:
            self.tuner.merge_and_unload()
            self.tuner = None
            self.encoder.__dict__.pop("peft_config", None)  # older peft (0.17) leaves it behind
        for name, module in self.encoder.named_modules():
            order = self._order.get(name)
            if order is not None and list(module._parameters) != order:
                # a removed parametrization re-registers its weight, which moves it last
                params = dict(module._parameters)
                module._parameters.clear()
                module._parameters.update((k, params[k]) for k in order)
        for name, p in self.encoder.named_parameters():
            p.requires_grad_(self._flags[name])
        self.active = False


def build(context, config: Config) -> list:
    encoder = context.model.encoder
    try:
        targets = lora_targets(encoder, config.keys())
    except ValueError as error:
        raise CFBenchError(f"lora: {error}") from None
    return [LoRAPlugin(encoder, context.model.heads, targets, config, context.device)]
