"""What a strategy is to the runner, and how a name and its arguments become one.

A strategy is a frozen config dataclass plus ``build(context, config) -> list[plugins]``, where the
plugins are Avalanche ``SupervisedPlugin`` objects added to the one training loop (cfbench's own
subclass ``benchmark.plugin.StrategyPlugin``, whose contract the run reads with ``declared``; any
other Avalanche plugin works unchanged, with that contract's defaults). The registry of
named strategies is ``strategies.STRATEGIES``; ``resolve`` takes it as an argument (strategies
import from benchmark, never the reverse) and also accepts ``package.module:factory`` for a
strategy that lives outside the repo.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from benchmark.config import ProbeConfig, TrainConfig
from benchmark.errors import CFBenchError


@dataclass
class StrategyContext:
    """What a strategy may look at when it builds its plugins."""

    model: torch.nn.Module  # the MultiTaskClassifier being trained (encoder + heads)
    encoder: Any  # benchmark.model.Encoder: taps, transforms, text tower
    device: torch.device
    train: TrainConfig
    probe: ProbeConfig
    tasks: list  # TaskData of the sequence's tasks, in order
    features: Any = None  # the run's benchmark.probe.features.FeaturePass (None: fp32, loader)
    # Each task's training dataset as the stream holds it (index = task; replay's memory indexes
    # these, so a restored memory points at the same images). None outside a run (perf).
    train_datasets: Sequence | None = None
    # The run's controls (TaskData), and a loader of any dataset the registry knows by name with
    # the run's data root, download and source settings (ZSCL's reference data). Empty / None
    # outside a run.
    controls: Sequence = ()
    load_dataset: Callable[[str], Any] | None = None


@dataclass(frozen=True)
class StrategySpec:
    name: str
    config: type
    build: Callable[[StrategyContext, Any], list]
    # True: meaningless without a text tower (VRF): ``--strategy all`` skips it on such a model.
    needs_text_tower: bool = False


Builder = Callable[[StrategyContext], list]

_PLAIN = (type(None), bool, int, float, str)


@dataclass(frozen=True)
class Resolved:
    """A strategy ready to build: call it with a context for its plugins.

    ``settings`` holds every hyper-parameter it runs with, defaults included, as plain values:
    config.json records them, and a resume compares them rather than the arguments as typed
    (``lam=10`` given or left at its default of 10.0 is the same run).
    """

    build: Builder
    settings: dict[str, Any]

    def __call__(self, context: StrategyContext) -> list:
        return self.build(context)


def describe_fields(config_cls: type) -> str:
    """'name: type = default' for every field of a strategy config ('none' when it has none)."""
    parts = [
        f"{f.name}: {_type_name(f.type)} = {f.default!r}" for f in dataclasses.fields(config_cls)
    ]
    return ", ".join(parts) or "none"


def _type_name(annotation: Any) -> str:
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    return text.replace("typing.", "").replace("Literal", "one of ")


def make_config(config_cls: type, args: Mapping[str, Any]):
    """Instantiate a strategy config from loosely typed values (YAML, the command line).

    Values are coerced to the field's annotation (int -> float, numeric strings such as '1e-3',
    which YAML reads as text, -> float); anything else ill-typed, an unknown field, or a value the
    config's own checks reject raises CFBenchError with the list of valid fields.
    """
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    hints = typing.get_type_hints(config_cls)
    valid = f"valid fields: {describe_fields(config_cls)}"
    values = {}
    for key, value in args.items():
        if key not in fields:
            raise CFBenchError(f"unknown strategy argument '{key}'; {valid}")
        try:
            values[key] = _coerce(value, hints[key])
        except (TypeError, ValueError):
            expected = _type_name(fields[key].type)
            raise CFBenchError(
                f"strategy argument {key}={value!r} is not {expected}; {valid}"
            ) from None
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as error:
        raise CFBenchError(f"bad strategy argument: {error}; {valid}") from None


def _coerce(value: Any, annotation: Any) -> Any:
    """``value`` as ``annotation`` (float, int, bool, str, Literal, X | None), else TypeError."""
    origin, options = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in options:
            return None
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(value, option)
            except (TypeError, ValueError):
                continue
        raise TypeError(value)
    if origin is typing.Literal:
        if any(value == o and type(value) is type(o) for o in options):
            return value
        raise ValueError(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise TypeError(value)
    if annotation in (int, float):
        if isinstance(value, bool) or value is None:
            raise TypeError(value)
        if isinstance(value, str):
            value = float(value.strip())  # '1e-3' (YAML 1.1 text), 'nan' is caught by the config
        if annotation is int:
            if not math.isfinite(value) or float(value) != int(value):
                raise ValueError(value)
            return int(value)
        return float(value)
    if annotation is str:
        if isinstance(value, str):
            return value
        raise TypeError(value)
    return value


def resolve(
    name: str, args: Mapping[str, Any] | None, registry: Mapping[str, StrategySpec]
) -> Resolved:
    """The strategy ``name`` (in ``registry``, or ``package.module:factory``) with ``args``
    checked."""
    args = dict(args or {})
    if name in registry:
        spec = registry[name]
        config = make_config(spec.config, args)
        return Resolved(lambda context: list(spec.build(context, config)), asdict(config))
    if ":" not in name:
        raise CFBenchError(
            f"unknown strategy '{name}'; valid names: {', '.join(registry)}, "
            "or package.module:factory for your own"
        )
    module_name, _, attr = name.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as error:
        raise CFBenchError(
            f"cannot import strategy '{name}' ({error}); check that the module "
            "is importable (on PYTHONPATH) and defines that factory"
        ) from None
    kwargs, settings = _external_args(factory, args, name)
    return Resolved(lambda context: _call_external(factory, context, kwargs, name), settings)


def _external_args(factory: Callable, args: dict, name: str) -> tuple[dict, dict]:
    """Check the arguments of a user factory against its signature; coerce simply-annotated ones
    (float, int, bool, str, Literal, X | None) as ``make_config`` does. Returns them, and the
    settings: those arguments over the factory's defaults that are plain values."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return dict(args), dict(args)  # no signature to check (a builtin): the call will tell
    params = {
        k: p
        for k, p in signature.parameters.items()
        if k != "context" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    open_ended = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    shown = [k if p.default is p.empty else f"{k} = {p.default!r}" for k, p in params.items()]
    valid = f"valid fields: {', '.join(shown) or 'none'}"
    try:
        hints = typing.get_type_hints(factory.__init__ if inspect.isclass(factory) else factory)
    except Exception:  # noqa: BLE001 - annotations naming types imported only for type checkers
        hints = {}
    out = {}
    for key, value in args.items():
        if key not in params and not open_ended:
            raise CFBenchError(f"unknown argument '{key}' for strategy '{name}'; {valid}")
        try:
            out[key] = _coerce(value, hints[key]) if key in hints else value
        except (TypeError, ValueError):
            raise CFBenchError(
                f"strategy argument {key}={value!r} is not {_type_name(hints[key])}; {valid}"
            ) from None
    defaults = {
        k: p.default
        for k, p in params.items()
        if p.default is not p.empty and isinstance(p.default, _PLAIN)
    }
    return out, {**defaults, **out}


def _call_external(factory: Callable, context: StrategyContext, args: dict, name: str) -> list:
    """Call a user factory: it gets ``context=`` if it declares that parameter, plus the args."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs = dict(args)
    if "context" in params:
        kwargs["context"] = context
    try:
        plugins = factory(**kwargs)
    except (TypeError, ValueError) as error:
        raise CFBenchError(f"strategy '{name}' rejected its arguments: {error}") from None
    return list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
