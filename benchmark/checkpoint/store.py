"""A run folder's checkpoint files, and the checks made before a run resumes from them.

``checkpoints/stage<s>.pt`` holds a ``checkpoint.Checkpoint``; ``checkpoint.json`` names the
latest stage, its file, size and SHA-256, and the settings the run was started with (everything
that changes its numbers, including a hash of the initial encoder weights). Both are written
atomically, and the runner writes a stage's checkpoint before its results files, so the results
on disk never run ahead of what can be resumed. A checkpoint that is missing, truncated, corrupt,
or from a run with other settings is refused with one line; nothing is deleted or retrained.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from dataclasses import fields
from pathlib import Path

import torch
from torch import nn

from benchmark.checkpoint.state import (
    FORMAT,
    OPTIONAL_KEYS,
    STATE_KEYS,
    Checkpoint,
    CheckpointError,
    check_plain,
    first_line,
)
from benchmark.errors import CFBenchError
from benchmark.io import write_atomic
from benchmark.results import write_json

INDEX = "checkpoint.json"
FOLDER = "checkpoints"
KEEP = ("last", "all")
# Settings added after format 1 was fixed, with the value that reproduces what runs did before
# them: a checkpoint without the key resumes when the run keeps that value (config.json keys).
# templates None: no text tower; quick_gelu False: cfbench built GELU towers before it chose
ADDED_SETTINGS = {"vrf": False, "templates": None, "quick_gelu": False}


def weights_digest(module: nn.Module) -> str:
    """SHA-256 of a module's tensors (names, dtypes, shapes and bytes): identifies the weights a
    run started from, so a resume on other pretrained weights is refused."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


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
        write_json(
            self.index,
            {
                "format": FORMAT,
                "stage": ckpt.stage,
                "file": str(path.relative_to(self.folder)),
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "settings": self.settings,
            },
        )
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
        known = isinstance(state, dict) and STATE_KEYS <= set(state) <= STATE_KEYS | OPTIONAL_KEYS
        if not known or state["format"] != FORMAT:
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
        for key, value in ADDED_SETTINGS.items():  # a checkpoint (or settings) without the key
            theirs.setdefault(key, value)
            ours.setdefault(key, value)
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
