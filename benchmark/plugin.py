"""The strategy contract: what a plugin may declare to the run, with its defaults.

A strategy is a list of Avalanche plugins (benchmark/strategy_api.py). Beyond Avalanche's hooks, a
plugin may tell the run five things; ``StrategyPlugin`` documents them with their defaults (as
composer's ``Algorithm`` or Avalanche's plugin base do), and every cfbench plugin subclasses it:

- ``fp32_forward``: the trainer runs the forward, the criterion and the plugins' loss terms in
  fp32 even under bf16 autocast (LDIFS: its distance must not be bf16 rounding);
- ``reference_forwards``: frozen forwards per training image that the plugin runs (LDIFS's
  reference, LwF's teacher), counted in the run's cost (benchmark/cost.py);
- ``evaluation_kinds``: record kinds the plugin asks the evaluation for (VRF: ``vrf``, ``ose``);
- ``config_entries()``: what it reports about itself in config.json's ``strategy_details``
  (optional: a plugin without the method reports nothing, and adds no ``strategy_details``);
- ``state_dict()`` / ``load_state_dict()``: its checkpoint state (benchmark/checkpoint/state.py).

The run reads all of them through ``declared(plugin)``, which also reads a foreign plugin (a plain
Avalanche one, e.g. SI by ``package.module:factory``): whatever of the above it defines is
honoured, the rest takes the defaults. A plugin without ``state_dict``/``load_state_dict`` is
not resumable (its run says so, and a resume from a later stage is refused).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from avalanche.training.plugins import SupervisedPlugin


class StrategyPlugin(SupervisedPlugin):
    """Base of cfbench's plugins: Avalanche's SupervisedPlugin with the contract's defaults.

    A subclass overrides what differs. The class-level values may also be properties when they
    change during a run (LwF has no teacher on its first task); the trainer reads
    ``reference_forwards`` after every step. A plugin that reports entries for config.json
    defines ``config_entries(self) -> dict`` (BitFit, LoRA, ZSCL); there is no default method,
    since the session adds ``strategy_details`` for every plugin that has one.
    """

    fp32_forward: ClassVar[bool] = False  # True: the whole training step in fp32
    reference_forwards: ClassVar[int] = 0  # frozen forwards per training image (cost)
    evaluation_kinds: ClassVar[tuple[str, ...]] = ()  # record kinds the evaluation adds

    def state_dict(self) -> dict:
        """Empty by default: the plugin keeps nothing between tasks (checkpoints are taken
        between tasks) that it cannot rebuild from the run's model and settings."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned (nothing, by default)."""


@dataclass(frozen=True)
class Declared:
    """What one plugin declares (``declared``): the contract's values, defaults filled in."""

    fp32_forward: bool = False
    reference_forwards: int = 0
    evaluation_kinds: tuple[str, ...] = ()
    config_entries: dict[str, Any] | None = None  # None: no config_entries() (no entries)
    resumable: bool = False  # has state_dict() and load_state_dict()


def declared(plugin: Any) -> Declared:
    """The contract of ``plugin``, a StrategyPlugin or any other Avalanche plugin: the values it
    defines (class attributes, properties or instance attributes), the defaults for the rest.
    Values that change during a run (a property) are read as they are now."""
    entries = getattr(plugin, "config_entries", None)
    kinds = getattr(plugin, "evaluation_kinds", ())
    return Declared(
        fp32_forward=bool(getattr(plugin, "fp32_forward", False)),
        reference_forwards=getattr(plugin, "reference_forwards", 0),
        evaluation_kinds=(kinds,) if isinstance(kinds, str) else tuple(kinds),
        config_entries=None if entries is None else dict(entries()),
        resumable=hasattr(plugin, "state_dict") and hasattr(plugin, "load_state_dict"),
    )
