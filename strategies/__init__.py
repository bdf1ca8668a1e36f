"""The strategies: one file per strategy, registered in strategies/registry.py.

Adding a strategy = its file (a frozen ``Config`` dataclass and ``build(context, config)``, which
returns plugins that subclass ``benchmark.plugin.StrategyPlugin``), one ``StrategySpec`` line in
registry.py and its name in ``NAMES``; the command line, ``--strategy all``, the report and the
tests read the registry (docs/design.md section 12).

``NAMES`` costs nothing to import, so that ``run_benchmark.py --help`` lists the strategies
without importing torch and Avalanche; everything else (``STRATEGIES``, ``resolve`` and the
strategy API) is loaded from registry.py on first use.
"""

from __future__ import annotations

NAMES = (
    "ft",
    "l2sp",
    "ldifs",
    "lp_ft",
    "ewc",
    "lwf",
    "replay",
    "wise_ft",
    "lora",
    "bitfit",
    "vrf",
    "zscl",
    "flyp",
)

_FROM_REGISTRY = (
    "STRATEGIES",
    "resolve",
    "Resolved",
    "StrategyContext",
    "StrategySpec",
    "describe_fields",
    "make_config",
)


def __getattr__(name: str):
    if name in _FROM_REGISTRY:
        from strategies import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'strategies' has no attribute '{name}'")
