"""LiNeS (Wang et al., "LiNeS: Post-training layer scaling prevents forgetting and enhances model
merging", ICLR 2025, arXiv 2410.17146): scale a task vector by layer depth,

    theta = theta_0 + lambda_l * tau,   lambda_l = alpha + beta * (l - 1) / (L - 1)

for the l-th of the encoder's L residual blocks, so the shallow layers, which hold the general
features, move little and the deep ones move the most. As in the official ``LiNeS_scaling``,
every tensor outside the blocks (patch and position embeddings, ``conv1``, ``ln_pre``, and also
``ln_post`` and ``proj`` at the top) gets alpha. Blocks of cfbench's encoders, by parameter name:

- open_clip ViTs and the tiny ViT: ``transformer.resblocks.<i>.``, l = i + 1;
- CIFAR ResNets and open_clip's ModifiedResNet: ``layer<s>.<i>.`` (a BasicBlock or
  Bottleneck), numbered stage by stage (ResNet-20: layer1.0 .. layer3.2, L = 9); the stem
  (``conv1``, ``bn1``; ModifiedResNet's ``conv1..3``) and ``attnpool`` get alpha.

With a single block it gets alpha + beta (the formula's 0/0; the top block). Official settings:
post-hoc editing of one fine-tuned model uses beta = 1 - alpha (the last block keeps its
fine-tuned weights), alpha chosen on validation in {0, 0.1, .., 1}; on a merged multi-task vector
m of n task vectors, alpha = ||sum_i tau_i||_1 / (n ||m||_1) and beta is chosen on validation in
{0.1, .., 1} (``multi_task_alpha``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import torch

VIT_BLOCK = re.compile(r"(?:^|\.)resblocks\.(\d+)\.")
RESNET_BLOCK = re.compile(r"(?:^|\.)layer(\d+)\.(\d+)\.")


def block_of(name: str) -> tuple[int, ...] | None:
    """The residual block a parameter belongs to, as a sortable key; None outside blocks."""
    match = VIT_BLOCK.search(name)
    if match:
        return (int(match.group(1)),)
    match = RESNET_BLOCK.search(name)
    if match:
        return (int(match.group(1)), int(match.group(2)))
    return None


def layer_numbers(names: Iterable[str]) -> dict[str, int]:
    """l (1..L) of every name inside a block, blocks numbered in depth order."""
    blocks = {n: block_of(n) for n in names}
    order = sorted({b for b in blocks.values() if b is not None})
    number = {b: i + 1 for i, b in enumerate(order)}
    return {n: number[b] for n, b in blocks.items() if b is not None}


def lines_scales(names: Iterable[str], alpha: float, beta: float) -> dict[str, float]:
    """lambda for every name: alpha + beta (l - 1) / (L - 1) inside block l of L, else alpha.
    ValueError when no name is inside a block (an encoder LiNeS cannot tell the depth of)."""
    names = list(names)
    layers = layer_numbers(names)
    if not layers:
        raise ValueError("no residual block (resblocks.<i>. or layer<s>.<i>.) among the names")
    depth = max(layers.values())
    out = {}
    for name in names:
        layer = layers.get(name)
        if layer is None:
            out[name] = alpha
        else:
            out[name] = alpha + beta * ((layer - 1) / (depth - 1) if depth > 1 else 1.0)
    return out


def multi_task_alpha(
    taus: Iterable[Mapping[str, torch.Tensor]],
    merged: Mapping[str, torch.Tensor],
) -> float:
    """The official alpha for a merged vector: ||sum_i tau_i||_1 / (n ||m||_1)."""
    taus = list(taus)
    total = {k: torch.stack([t[k] for t in taus]).sum(0) for k in merged}
    norm = float(sum(v.abs().sum() for v in merged.values()))
    summed = float(sum(v.abs().sum() for v in total.values()))
    return summed / (len(taus) * norm) if norm > 0 else 1.0 / len(taus)
