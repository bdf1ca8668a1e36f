"""Small helpers shared by the strategy plugins: argument checks and state copies."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from benchmark.errors import CFBenchError


def check_weight(name: str, value: float) -> None:
    """Config check for a loss weight: a finite number >= 0 (raises ValueError)."""
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")


def check_choice(name: str, value: object, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


def require_text_tower(context, strategy: str, because: str) -> None:
    """Refuse to build ``strategy`` (CFBenchError) when the run's encoder has no text tower;
    ``because``: what the strategy uses it for."""
    if context.encoder.text is None:
        raise CFBenchError(
            f"strategy {strategy} needs a model with a text tower ({because}) and this model has "
            "none; use a CLIP model (e.g. --model ViT-B-32) or another strategy"
        )


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a module's state dict (checkpoint-friendly: tensors only)."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


# In a checkpoint, a plugin state that is a copy of the model (a teacher, EWC's anchor weights)
# is stored as this marker and rebuilt from the model, which the checkpoint holds anyway.
FROM_MODEL = "model"


def equals_model(tensors: Mapping[str, torch.Tensor], model: torch.nn.Module) -> bool:
    """True when every tensor equals the model's state entry of the same name, bit for bit."""
    state = model.state_dict()
    return all(
        k in state and torch.equal(state[k].detach().cpu(), v.detach().cpu())
        for k, v in tensors.items()
    )
