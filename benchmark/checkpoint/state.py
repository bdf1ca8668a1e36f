"""Per-stage checkpoints, so that a killed run resumes after its last finished task.

Stage s is the state after the evaluation of stage s (0: the pretrained encoder, s: after task s)
and before task s + 1 starts. Its checkpoint holds only tensors and plain values, and is read
back with ``torch.load(weights_only=True)``:

- ``model``: the encoder and heads (not at stage 0, where the freshly built model is that state);
- ``plugins``: each strategy plugin's ``state_dict()`` (not at stage 0, where no plugin has run)
  with its qualified class name; None for a plugin without one (benchmark/plugin.py), which makes
  the checkpoint unresumable. Plugins store nothing they can rebuild from the model or the
  pretrained weights;
- ``trainer``: Avalanche's clock counters and the task labels the model has been trained on;
- ``rng``: the torch (CPU and CUDA), numpy and python generator states;
- ``records``: every accuracy record up to stage s; the results files are rewritten from them.

No optimiser state is stored: every task starts from fresh AdamW moments and its own schedule.
On CPU with a fixed seed a resumed run therefore reproduces an uninterrupted one bit for bit.
The files, and the checks made before resuming from them, are in ``store.py``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmark.errors import CFBenchError
from benchmark.plugin import declared

FORMAT = 1
STATE_KEYS = {"format", "stage", "records", "rng", "model", "trainer", "plugins"}
OPTIONAL_KEYS = {"cost"}  # added within format 1: checkpoints written before it lack it


class CheckpointError(CFBenchError):
    """A checkpoint that cannot be resumed from (corrupt, truncated or from other settings)."""


@dataclass
class Checkpoint:
    stage: int
    records: list[dict]
    rng: dict
    model: dict[str, torch.Tensor] | None = None
    trainer: dict | None = None
    plugins: list[dict] | None = None  # [{"plugin": qualified class name, "state": ...}]
    cost: dict | None = None  # {"stages": [...], "flops": {...}} (benchmark/cost.py)


# -- what goes in -----------------------------------------------------------------------------
def rng_state() -> dict:
    """Every generator the run draws from, as tensors and plain values."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, words, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": version, "words": list(words), "gauss": py_gauss},
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():  # a GPU run resumed on fewer GPUs, or on CPU,
        for i, cuda in enumerate(state["cuda"][: torch.cuda.device_count()]):  # is not exact
            torch.cuda.set_rng_state(cuda, i)
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["words"]), p["gauss"]))


def plugin_name(plugin: Any) -> str:
    return f"{type(plugin).__module__}.{type(plugin).__qualname__}"


def resumable(plugin: Any) -> bool:
    """True when the plugin has ``state_dict``/``load_state_dict`` (every cfbench plugin does:
    benchmark/plugin.py); a foreign plugin without them cannot be resumed after stage 0."""
    return declared(plugin).resumable


def capture(
    stage: int,
    records: list[dict],
    model: nn.Module,
    plugins: list,
    trainer,
    cost: dict | None = None,
) -> Checkpoint:
    """The state of a run after stage ``stage``'s evaluation (call right after it)."""
    if stage == 0:
        return Checkpoint(0, plain(records), rng_state(), cost=cost)
    clock = {k: v for k, v in vars(trainer.clock).items() if type(v) is int}
    return Checkpoint(
        stage,
        plain(records),
        rng_state(),
        model={k: v.detach().cpu() for k, v in model.state_dict().items()},
        trainer={"clock": clock, "known_tasks": sorted(model.known_train_tasks_labels)},
        plugins=[
            {"plugin": plugin_name(p), "state": p.state_dict() if resumable(p) else None}
            for p in plugins
        ],
        cost=cost,
    )


def restore(ckpt: Checkpoint, model: nn.Module, plugins: list, trainer, where: str) -> None:
    """Put a freshly built run (model, plugins, trainer) into the state of ``ckpt``.

    The model must be the freshly built (pretrained) one and the plugins built from it: plugins
    rebuild what they did not store (e.g. a pretrained anchor) at construction. The RNG state is
    restored last, so nothing built afterwards may draw from it before training resumes.
    """
    if ckpt.stage > 0:
        names = [plugin_name(p) for p in plugins]
        saved = [entry["plugin"] for entry in ckpt.plugins]
        if names != saved:
            raise CheckpointError(
                f"{where} was written with plugins {saved}, this run has {names}; "
                "rerun with the original --strategy, or --fresh to start over"
            )
        missing = [e["plugin"] for e in ckpt.plugins if e["state"] is None]
        if missing:
            raise CheckpointError(
                f"cannot resume from {where}: plugin {missing[0]} has no state_dict(), so its "
                "state was not saved; rerun with --fresh (or give the plugin "
                "state_dict/load_state_dict)"
            )
        from benchmark.model.heads import check_resumable_heads

        check_resumable_heads(ckpt.model, where)  # heads from before the logit scale's fold
        try:
            model.load_state_dict(ckpt.model)
            for plugin, entry in zip(plugins, ckpt.plugins, strict=True):
                plugin.load_state_dict(entry["state"])
        except (RuntimeError, KeyError, ValueError, TypeError) as error:
            raise CheckpointError(
                f"{where} does not fit this run's model or strategy ({first_line(error)}); "
                "rerun with the original settings, or --fresh to start over"
            ) from None
        model.known_train_tasks_labels = set(ckpt.trainer["known_tasks"])
        for key, value in ckpt.trainer["clock"].items():
            setattr(trainer.clock, key, value)
    set_rng_state(ckpt.rng)


PLAIN = (str, int, float, bool, type(None))  # exactly: numpy.float64 is a float subclass


def check_plain(value: Any, where: str) -> None:
    """Raise CFBenchError unless ``value`` is tensors and plain values in dicts, lists, tuples:
    what ``torch.load(weights_only=True)`` reads back. Checked when saving, not at the resume."""
    if isinstance(value, dict):
        for key, item in value.items():
            check_plain(key, f"{where} key")
            check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
    elif not (isinstance(value, torch.Tensor) or type(value) in PLAIN):
        raise CFBenchError(
            f"{where} holds a {type(value).__module__}.{type(value).__qualname__}; a checkpoint "
            "takes tensors and plain values only (convert it, e.g. with .item() or torch.tensor)"
        )


def first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def plain(records: list[dict]) -> list[dict]:
    """Records as python scalars (numpy scalars are not allowed by ``weights_only`` loading)."""
    return [{k: v.item() if hasattr(v, "item") else v for k, v in r.items()} for r in records]
