"""Whether a run followed its sequence's protocol, and where not (config.json "off_protocol").

A sequence's protocol is the configuration its own settings give a run (the sequence's
defaults, tasks/sequences.py, over the protocol defaults of benchmark/config.py) for the run's
strategy and seed. A run that changed a setting which changes its numbers (the model or its
weights, the heads' initialisation, the epochs, the optimiser, a cap on the training images,
the probe's grid, solver or caps) is off the protocol: its numbers are a test of the code, not a
benchmark result, and the report marks it so (benchmark/report/build.py). Settings that only
change where or how fast a run executes (device, workers, precision, compile, batch sizes of
feature passes, micro-batches) are not protocol settings.
"""

from __future__ import annotations

from typing import Any

from benchmark.config import RunConfig, build_run_config

# (group, field) of RunConfig; group "" is RunConfig itself.
PROTOCOL_SETTINGS = (
    ("", "model"),
    ("", "pretrained"),
    ("", "head_init"),
    ("train", "epochs"),
    ("train", "batch_size"),
    ("train", "lr"),
    ("train", "weight_decay"),
    ("train", "warmup_steps"),
    ("train", "grad_clip"),
    ("train", "max_train_images"),
    ("train", "batchnorm"),
    ("probe", "c_grid"),
    ("probe", "max_iter"),
    ("probe", "tol"),
    ("probe", "max_train_samples"),
    ("probe", "max_test_samples"),
)

_DEFAULT_MEANS = {
    "head_init": "zero-shot heads where the model has a text tower",
    "epochs": "the sequence's per-task epochs",
    "max_train_images": "all",
    "max_train_samples": "all",
    "max_test_samples": "all",
}


def protocol_config(cfg: RunConfig, defaults: dict[str, Any]) -> RunConfig:
    """The configuration the sequence (its ``defaults``) gives ``cfg``'s strategy and seed."""
    same = {"strategy": cfg.strategy, "strategy_args": cfg.strategy_args, "seed": cfg.seed}
    return build_run_config(defaults, same)


def off_protocol(cfg: RunConfig, defaults: dict[str, Any]) -> list[str]:
    """Every protocol setting in which ``cfg`` differs from its sequence's protocol, one phrase
    each ("epochs 1 (protocol: the sequence's per-task epochs)"); empty when it follows it."""
    protocol = protocol_config(cfg, defaults)
    found = []
    for group, key in PROTOCOL_SETTINGS:
        value, wanted = _get(cfg, group, key), _get(protocol, group, key)
        if value != wanted:
            found.append(f"{key} {_show(key, value)} (protocol: {_show(key, wanted)})")
    return found


def _get(cfg: RunConfig, group: str, key: str):
    return getattr(getattr(cfg, group) if group else cfg, key)


def _show(key: str, value) -> str:
    if value is None:
        return _DEFAULT_MEANS.get(key, "none")
    if key == "pretrained" and value == "none":
        return "none (random weights)"
    if isinstance(value, tuple):
        return f"{len(value)} values {value[0]:g} .. {value[-1]:g}" if value else "none"
    return f"{value:g}" if isinstance(value, float) else str(value)
