"""Per-stage checkpoints, so that a killed run resumes after its last finished task.

Stage s is the state after the evaluation of stage s (0: the pretrained encoder, s: after task s)
and before task s + 1 starts. Its checkpoint holds only tensors and plain values, and is read
back with ``torch.load(weights_only=True)``:

- ``model``: the encoder and heads (not at stage 0, where the freshly built model is that state);
- ``plugins``: each strategy plugin's ``state_dict()`` (not at stage 0, where no plugin has run);
  plugins store nothing they can rebuild from the model or the pretrained weights;
- ``trainer``: Avalanche's clock counters and the task labels the model has been trained on;
- ``rng``: the torch (CPU and CUDA), numpy and python generator states;
- ``records``: every accuracy record up to stage s; the results files are rewritten from them.

No optimiser state is stored: every task starts from fresh AdamW moments and its own schedule.
On CPU with a fixed seed a resumed run therefore reproduces an uninterrupted one bit for bit.

In the run folder: ``checkpoints/stage<s>.pt`` and ``checkpoint.json``, which names the latest
stage, its file, size and SHA-256, and the settings the run was started with. Both are written
atomically, the checkpoint before the results files of its stage, so the results on disk never
run ahead of what can be resumed.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmark.errors import CFBenchError
from benchmark.results import write_atomic, write_json

FORMAT = 1
INDEX = "checkpoint.json"
FOLDER = "checkpoints"
KEEP = ("last", "all")
STATE_KEYS = {"format", "stage", "records", "rng", "model", "trainer", "plugins"}


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


# -- what goes in -----------------------------------------------------------------------------
def rng_state() -> dict:
    """Every generator the run draws from, as tensors and plain values."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, words, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "words": list(words), "gauss": py_gauss},
    }  # fmt: skip


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
    return hasattr(plugin, "state_dict") and hasattr(plugin, "load_state_dict")


def capture(
    stage: int, records: list[dict], model: nn.Module, plugins: list, trainer
) -> Checkpoint:
    """The state of a run after stage ``stage``'s evaluation (call right after it)."""
    if stage == 0:
        return Checkpoint(0, plain(records), rng_state())
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


def weights_digest(module: nn.Module) -> str:
    """SHA-256 of a module's tensors (names, dtypes, shapes and bytes): identifies the weights a
    run started from, so a resume on other pretrained weights is refused."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# -- the files -----------------------------------------------------------------------------------
class CheckpointStore:
    """Checkpoints of one run folder, checked against the run's ``settings`` (a JSON-able dict of
    everything that changes the numbers: a resume with other settings is refused)."""

    def __init__(self, folder: Path, settings: dict, keep: str = "last"):
        if keep not in KEEP:
            raise CFBenchError(f"--keep-checkpoints must be one of {', '.join(KEEP)}, got {keep!r}")
        self.folder, self.keep = Path(folder), keep
        self.settings = json.loads(json.dumps(settings, default=str))  # as read back from JSON
        self.index = self.folder / INDEX

    def path(self, stage: int) -> Path:
        return self.folder / FOLDER / f"stage{stage:02d}.pt"

    def clear(self) -> None:
        """--fresh: remove the whole run folder (checkpoints, results, TensorBoard events)."""
        if self.folder.exists():
            shutil.rmtree(self.folder)

    def sweep(self) -> None:
        """Remove temporary files a killed run left behind (write_atomic's ``.<name>.*.tmp``)."""
        for folder in (self.folder, self.folder / FOLDER):
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)

    def save(self, ckpt: Checkpoint) -> Path:
        for entry in ckpt.plugins or []:
            check_plain(entry["state"], f"{entry['plugin']}.state_dict()")
        # Not dataclasses.asdict: it would deep-copy every tensor of the model.
        state = {"format": FORMAT, **{f.name: getattr(ckpt, f.name) for f in fields(ckpt)}}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getbuffer()  # no second copy of a model-sized buffer
        path = self.path(ckpt.stage)
        write_atomic(path, data)
        write_json(self.index, {
            "format": FORMAT, "stage": ckpt.stage, "file": str(path.relative_to(self.folder)),
            "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "settings": self.settings,
        })  # fmt: skip
        if self.keep == "last":
            for old in (self.folder / FOLDER).glob("stage*.pt"):
                if old != path:
                    old.unlink(missing_ok=True)
        return path

    def latest(self) -> Checkpoint | None:
        """The checkpoint to resume from; None for a new run. Raises CheckpointError for one that
        exists but cannot be used, and CFBenchError for results without any checkpoint."""
        if not self.index.exists():
            if (self.folder / "records.csv").exists():
                raise CFBenchError(
                    f"{self.folder} holds results but no {INDEX} to resume from; "
                    "rerun with --fresh to replace them, or choose another --out"
                )
            return None
        meta = self._read_index()
        self._check_settings(meta.get("settings", {}))
        path = self.folder / str(meta.get("file", ""))
        where = f"checkpoint {path}"
        fix = "rerun with --fresh to start over, or put back an intact copy of the file"
        try:
            data = path.read_bytes()
        except OSError as error:
            raise CheckpointError(f"{where} cannot be read ({error.strerror}); {fix}") from None
        if len(data) != meta.get("bytes") or hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            raise CheckpointError(
                f"{where} is corrupt or truncated ({len(data)} bytes, {meta.get('bytes')} "
                f"written; checksum differs); {fix}"
            )
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unpickling failure means unusable
            raise CheckpointError(
                f"{where} cannot be loaded ({first_line(error)}); {fix}"
            ) from None
        if not isinstance(state, dict) or set(state) != STATE_KEYS or state["format"] != FORMAT:
            raise CheckpointError(f"{where} is not a cfbench checkpoint of format {FORMAT}; {fix}")
        if state["stage"] != meta.get("stage"):
            got, want = state["stage"], meta.get("stage")
            raise CheckpointError(f"{where} holds stage {got}, not {want}; {fix}")
        state.pop("format")
        return Checkpoint(**state)

    def _read_index(self) -> dict:
        try:
            meta = json.loads(self.index.read_text())
        except (OSError, ValueError) as error:
            raise CheckpointError(
                f"{self.index} is unreadable ({error}); rerun with --fresh to start over"
            ) from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise CheckpointError(
                f"{self.index} is not a cfbench checkpoint index of format {FORMAT}; "
                "rerun with --fresh to start over"
            )
        return meta

    def _check_settings(self, saved: dict) -> None:
        ours, theirs = flatten(self.settings), flatten(saved)
        changed = [k for k in sorted(ours.keys() | theirs.keys()) if ours.get(k) != theirs.get(k)]
        if changed:
            shown = ", ".join(f"{k}: {theirs.get(k)!r} -> {ours.get(k)!r}" for k in changed[:3])
            more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            raise CheckpointError(
                f"{self.folder} holds a run started with other settings ({shown}{more}); "
                "rerun with the original settings to resume it, --fresh to start over, "
                "or choose another --out"
            )


def flatten(d: dict, prefix: str = "") -> dict:
    """{"train": {"lr": 1}} -> {"train.lr": 1}."""
    out = {}
    for key, value in d.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
