"""The uniform mean of state dicts (pure): what a soup's weights are."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

import torch


class StateMismatch(ValueError):
    """State dicts that cannot be averaged; ``index`` is the position of the offending one."""

    def __init__(self, index: int, message: str):
        super().__init__(message)
        self.index = index


HEAD_SCALE = re.compile(r"^heads\.[^.]+\.scale$")


def is_head_scale(key: str) -> bool:
    """A task head's separate temperature, in state dicts written before CosineHead folded it
    into its weight: equal across ingredients or no soup (current heads have none)."""
    return bool(HEAD_SCALE.match(key))


def average_state_dicts(
    states: Iterable[Mapping[str, torch.Tensor]],
    must_match: Callable[[str], bool] = is_head_scale,
) -> dict[str, torch.Tensor]:
    """The uniform mean of state dicts, read one at a time (only the running sum is held).

    Floating-point tensors are summed in float64 and the mean is cast back to each tensor's
    dtype, so the mean of identical tensors is exactly that tensor. Integer and boolean tensors
    (BatchNorm's ``num_batches_tracked``) are the first state's. Keys for which ``must_match``
    holds must be equal in every state. Raises StateMismatch (with the offending position) for
    other keys, other shapes or dtypes, or a ``must_match`` tensor that differs; ValueError for
    no state at all."""
    sums: dict[str, torch.Tensor] = {}
    first: dict[str, torch.Tensor] = {}
    n = 0
    for i, state in enumerate(states):
        if i == 0:
            first = {k: v.detach().cpu() for k, v in state.items()}
            sums = {k: v.double() for k, v in first.items() if v.is_floating_point()}
        else:
            _check_like(i, first, state, must_match)
            for key, total in sums.items():
                total += state[key].detach().cpu().double()
        n += 1
    if n == 0:
        raise ValueError("no state dict to average")
    return {k: (sums[k] / n).to(v.dtype) if k in sums else v.clone() for k, v in first.items()}


def _check_like(
    i: int,
    first: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    must_match: Callable[[str], bool],
) -> None:
    if set(state) != set(first):
        extra = sorted(set(state) - set(first))[:3]
        missing = sorted(set(first) - set(state))[:3]
        raise StateMismatch(i, f"other tensors (missing {missing}, extra {extra})")
    for key, ref in first.items():
        value = state[key]
        if value.shape != ref.shape or value.dtype != ref.dtype:
            got, want = f"{value.dtype} {tuple(value.shape)}", f"{ref.dtype} {tuple(ref.shape)}"
            raise StateMismatch(i, f"{key} is {got}, not {want}")
        if must_match(key) and not torch.equal(value.detach().cpu(), ref):
            raise StateMismatch(i, f"{key} differs ({_short(value)} vs {_short(ref)})")


def _short(t: torch.Tensor) -> str:
    return f"{t.item():.4g}" if t.numel() == 1 else f"tensor of shape {tuple(t.shape)}"
