"""Strategy registry.

A strategy is a frozen config dataclass plus ``build(context, config) -> list[plugins]``, where the
plugins are Avalanche ``SupervisedPlugin`` objects added to the one training loop. ``resolve``
accepts a registered name or ``package.module:factory`` for a strategy that lives outside the repo.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from benchmark.config import ProbeConfig, TrainConfig
from benchmark.errors import CFBenchError
from strategies import ft


@dataclass
class StrategyContext:
    """What a strategy may look at when it builds its plugins."""

    model: torch.nn.Module  # the MultiTaskClassifier being trained (encoder + heads)
    encoder: Any  # benchmark.model.Encoder: taps, transforms, text tower
    device: torch.device
    train: TrainConfig
    probe: ProbeConfig
    tasks: list  # TaskData of the sequence's tasks, in order


@dataclass(frozen=True)
class StrategySpec:
    name: str
    config: type
    build: Callable[[StrategyContext, Any], list]


STRATEGIES: dict[str, StrategySpec] = {
    "ft": StrategySpec("ft", ft.Config, ft.build),
}

Builder = Callable[[StrategyContext], list]


def make_config(config_cls: type, args: Mapping[str, Any]):
    """Instantiate a strategy config, rejecting unknown or ill-typed fields with the valid list."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    valid = ", ".join(f"{n}: {f.type}" for n, f in fields.items()) or "none"
    for key in args:
        if key not in fields:
            raise CFBenchError(f"unknown strategy argument '{key}'; valid fields: {valid}")
    return config_cls(**args)


def resolve(name: str, args: Mapping[str, Any] | None = None) -> Builder:
    """A function context -> plugins, for a registered name or ``package.module:factory``."""
    args = dict(args or {})
    if name in STRATEGIES:
        spec = STRATEGIES[name]
        config = make_config(spec.config, args)
        return lambda context: list(spec.build(context, config))
    if ":" not in name:
        raise CFBenchError(f"unknown strategy '{name}'; valid names: {', '.join(STRATEGIES)}, "
                           "or package.module:factory for your own")
    module_name, _, attr = name.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as error:
        raise CFBenchError(f"cannot import strategy '{name}' ({error}); check that the module "
                           "is importable (on PYTHONPATH) and defines that factory") from None
    return lambda context: _call_external(factory, context, args, name)


def _call_external(factory: Callable, context: StrategyContext, args: dict, name: str) -> list:
    """Call a user factory: it gets ``context=`` if it declares that parameter, plus the args."""
    params = inspect.signature(factory).parameters
    kwargs = dict(args)
    if "context" in params:
        kwargs["context"] = context
    try:
        plugins = factory(**kwargs)
    except TypeError as error:
        raise CFBenchError(f"strategy '{name}' rejected its arguments: {error}") from None
    return list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
