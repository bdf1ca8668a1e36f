"""Which encoder parameters the parameter-efficient strategies train, and how many (pure functions
of a module's structure; ``lora.py`` and ``bitfit.py`` only decide when to apply them).

LoRA adds, per targeted layer, the factors A and B (peft's ``peft.tuners.lora.layer`` for Linear
and Conv2d; ``strategies.lora.LowRankUpdate`` for the attention's two weights):

    nn.Linear(in, out)               A: r x in, B: out x r          -> r (in + out)
    nn.Conv2d(in, out, k_h x k_w)    A: Conv2d(in, r, k_h x k_w),
                                     B: Conv2d(r, out, 1 x 1)       -> r (in k_h k_w + out)
    nn.MultiheadAttention(D)         fused in_proj (D -> 3D) and
                                     out_proj (D -> D)              -> r (D + 3D) + r (D + D)

BitFit trains the bias terms: every parameter named ``bias``, ``*_bias`` or ``bias_*`` (Linear,
conv and norm biases, ``nn.MultiheadAttention``'s ``in_proj_bias``), and with ``norms`` also the
norm layers' gains (LayerNorm, GroupNorm, RMSNorm, batch and instance norms).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from torch import nn

LORA_LAYERS = (nn.Linear, nn.Conv2d, nn.MultiheadAttention)
# Norm layers whose affine parameters BitFit's ``norms`` adds (RMSNorm exists from torch 2.4).
_NORM_CANDIDATES = (
    nn.LayerNorm,
    nn.GroupNorm,
    getattr(nn, "RMSNorm", None),
    nn.modules.batchnorm._NormBase,
)
NORMS = tuple(t for t in _NORM_CANDIDATES if t is not None)


def is_bias(name: str) -> bool:
    """True for a bias term: the parameter's own name is ``bias``, ``*_bias`` or ``bias_*``."""
    leaf = name.rsplit(".", 1)[-1]
    return leaf == "bias" or leaf.endswith("_bias") or leaf.startswith("bias_")


def bitfit_parameters(module: nn.Module, norms: bool = False) -> list[str]:
    """Names of the parameters BitFit trains in ``module``: the biases, plus every parameter of a
    norm layer when ``norms``; in ``named_parameters`` order."""
    in_norm = set()
    if norms:
        for prefix, sub in module.named_modules():
            if isinstance(sub, NORMS):
                in_norm.update(f"{prefix}.{n}" if prefix else n for n, _ in sub.named_parameters())
    return [n for n, _ in module.named_parameters() if is_bias(n) or n in in_norm]


def count(module: nn.Module, names: Iterable[str]) -> int:
    """Number of scalars in the named parameters of ``module``."""
    params = dict(module.named_parameters())
    return sum(params[n].numel() for n in names)


def is_vit(module: nn.Module) -> bool:
    """An open_clip VisionTransformer (or anything shaped like one: transformer.resblocks)."""
    return hasattr(module, "transformer") and hasattr(module.transformer, "resblocks")


VIT_TARGETS = ("attn", "c_fc", "c_proj")


def layer_kinds(targets: Iterable[str]) -> list[str]:
    """The last name parts of qualified layer names, once each (for config.json)."""
    return list(dict.fromkeys(t.rsplit(".", 1)[-1] for t in targets))


def _lora_layers(module: nn.Module) -> list[str]:
    """Qualified names of the layers LoRA can adapt, outside nn.MultiheadAttention (whose
    out_proj is a Linear that the attention never calls: see lora_targets)."""
    inside_attention = {
        f"{prefix}.{child}" if prefix else child
        for prefix, sub in module.named_modules()
        if isinstance(sub, nn.MultiheadAttention)
        for child, _ in sub.named_modules()
        if child
    }
    return [
        name
        for name, sub in module.named_modules()
        if name and isinstance(sub, LORA_LAYERS) and name not in inside_attention
    ]


def lora_targets(module: nn.Module, keys: Sequence[str] | None = None) -> list[str]:
    """Qualified names of the layers of ``module`` that the target ``keys`` name, matched as peft
    matches a list: the whole name, or its last dot-separated parts (``c_fc`` matches
    ``transformer.resblocks.0.mlp.c_fc``). ``keys=None``: the default for the architecture: for
    an open_clip ViT the blocks' attention (``attn``: a low-rank update of the fused in_proj and
    one of the out_proj, see strategies/lora.py) and MLP (``c_fc``, ``c_proj``); for any other
    encoder (the CIFAR ResNets, open_clip's ModifiedResNet) every Linear, Conv2d and
    MultiheadAttention layer. Raises ValueError for a key that matches nothing
    LoRA can adapt, and for the ``out_proj`` inside an nn.MultiheadAttention: the attention reads
    that layer's weight directly and never calls it, so a LoRA layer there would train nothing
    (peft's documented trap); target the attention itself instead."""
    layers = _lora_layers(module)
    if keys is None:
        if not is_vit(module):
            return layers
        keys = VIT_TARGETS
    names = {name for name, _ in module.named_modules()}
    out = []
    for key in keys:
        matched = [n for n in layers if n == key or n.endswith("." + key)]
        if not matched:
            hidden = [n for n in names if (n == key or n.endswith("." + key)) and n not in layers]
            parent = ".".join(hidden[0].split(".")[:-1]) if hidden else ""
            if hidden and isinstance(module.get_submodule(parent), nn.MultiheadAttention):
                raise ValueError(
                    f"'{key}' is the out_proj of an nn.MultiheadAttention, whose forward never "
                    f"calls it (a LoRA layer there would train nothing); target the attention "
                    f"'{parent.rsplit('.', 1)[-1]}' instead (LoRA adapts its fused in_proj and "
                    "out_proj together)"
                )
            raise ValueError(
                f"target '{key}' matches no Linear, Conv2d or MultiheadAttention layer of the "
                f"encoder; its adaptable layers end in: {', '.join(layer_kinds(layers))}"
            )
        out += [n for n in matched if n not in out]
    return [n for n in layers if n in out]  # in the module's order


def lora_layer_count(layer: nn.Module, rank: int) -> int:
    """Adapter scalars LoRA adds to one layer at rank ``rank`` (see the module docstring)."""
    if isinstance(layer, nn.MultiheadAttention):
        if not layer._qkv_same_embed_dim:
            raise ValueError("LoRA needs an nn.MultiheadAttention with a fused in_proj_weight")
        d = layer.embed_dim
        return rank * (d + 3 * d) + rank * (d + d)
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            raise ValueError(f"LoRA on a grouped Conv2d (groups={layer.groups}) cannot be merged")
        k_h, k_w = layer.kernel_size
        return rank * (layer.in_channels * k_h * k_w + layer.out_channels)
    if isinstance(layer, nn.Linear):
        return rank * (layer.in_features + layer.out_features)
    raise ValueError(f"LoRA cannot adapt a {type(layer).__name__}")


def lora_count(module: nn.Module, targets: Iterable[str], rank: int) -> int:
    """Adapter scalars over the qualified ``targets`` of ``module``."""
    return sum(lora_layer_count(module.get_submodule(t), rank) for t in targets)
