"""The registry of named strategies: one ``StrategySpec`` per strategy file, in the order of
``strategies.NAMES`` (the command line's list, kept light for a fast ``--help``; a test checks
that the two agree). Importing this module imports every strategy file and Avalanche."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmark.strategy_api import (  # noqa: F401 - the API a strategy file and its tests use
    Resolved,
    StrategyContext,
    StrategySpec,
    describe_fields,
    make_config,
)
from benchmark.strategy_api import resolve as _resolve
from strategies import (
    bitfit,
    ewc,
    flyp,
    ft,
    l2sp,
    ldifs,
    lora,
    lp_ft,
    lwf,
    replay,
    vrf,
    wise_ft,
    zscl,
)

STRATEGIES: dict[str, StrategySpec] = {
    s.name: s
    for s in (
        StrategySpec("ft", ft.Config, ft.build),
        StrategySpec("l2sp", l2sp.Config, l2sp.build),
        StrategySpec("ldifs", ldifs.Config, ldifs.build),
        StrategySpec("lp_ft", lp_ft.Config, lp_ft.build),
        StrategySpec("ewc", ewc.Config, ewc.build),
        StrategySpec("lwf", lwf.Config, lwf.build),
        StrategySpec("replay", replay.Config, replay.build),
        StrategySpec("wise_ft", wise_ft.Config, wise_ft.build),
        StrategySpec("lora", lora.Config, lora.build),
        StrategySpec("bitfit", bitfit.Config, bitfit.build),
        StrategySpec("vrf", vrf.Config, vrf.build, needs_text_tower=True),
        StrategySpec("zscl", zscl.Config, zscl.build),
        StrategySpec("flyp", flyp.Config, flyp.build, needs_text_tower=True),
    )
}


def resolve(name: str, args: Mapping[str, Any] | None = None) -> Resolved:
    """The strategy ``name`` (registered here, or ``package.module:factory``) with ``args``
    checked (benchmark.strategy_api.resolve over this registry)."""
    return _resolve(name, args, STRATEGIES)
