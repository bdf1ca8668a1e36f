"""The pretrained-row cache: row 0 (the pretrained encoder's accuracies) is the same for every
strategy and seed, so it is computed once and reused.

An entry holds one dataset's row-0 accuracies (the kinds benchmark/kinds.py marks ``row0_cache``:
lp, lp_val, zs, head, val; and the probe's C), keyed by a SHA-256 of everything
they depend on: the model and a digest of its initial weights, the dataset's identity (source,
revision, split sizes, SHA-256 of its labels and of its images), the probe subsets and settings,
the eval transform and pipeline, the device type and precision, the initial head and zero-shot
weights, and the torch version. Any difference is a different key, so an entry is never reused
for other inputs. Only datasets whose pixels are fingerprinted are cached: prepared stores,
``.npz`` files and generated synthetic data (their arrays' SHA-256); raw torchvision/HF/folder
data is recomputed every time (prepare it to share row 0). Entries are written atomically;
several workers filling the same entry write the same bytes, and the last rename wins.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch

from benchmark.config import RunConfig
from benchmark.io import write_atomic

CACHEABLE = ("prepared", "generated", "npz")


def tensor_digest(*tensors: torch.Tensor | None) -> str:
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            h.update(b"none")
            continue
        t = t.detach().cpu().contiguous().float()
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def data_identity(provenance: dict) -> dict | None:
    """The part of a dataset's provenance that fixes its pixels and labels, or None when its
    pixels are not fingerprinted (then it is not cached)."""
    kind = "prepared" if provenance.get("format") == "prepared" else provenance.get("source")
    if kind not in CACHEABLE:
        return None
    keys = (
        "source",
        "origin",
        "revision",
        "format",
        "train",
        "test",
        "labels_sha256",
        "images_sha256",
    )
    return {k: provenance.get(k) for k in keys}


class Row0Cache:
    """Entries under ``folder`` (None: caching off). ``context`` holds what is common to every
    dataset of the run (model, weights digest, probe settings, transform, device, precision)."""

    def __init__(self, folder: Path | None, context: dict):
        self.folder, self.context = folder, context
        self.hits = 0

    @classmethod
    def for_run(cls, cfg: RunConfig, initial_weights: str, device: torch.device) -> Row0Cache:
        """The run's cache: ``cfg.cache``'s folder (None: <data-root>/cache/row0; "none": off),
        keyed by the model, its initial weights' digest (``weights_digest``), the probe settings
        (less the feature batch, which changes only memory use), the device type and torch."""
        folder = (
            None if cfg.cache == "none" else Path(cfg.cache or cfg.data_root / "cache" / "row0")
        )
        probe = {k: v for k, v in dataclasses.asdict(cfg.probe).items() if k != "batch_size"}
        context = {
            "model": cfg.model,
            "weights": initial_weights,
            "probe": probe,
            "device": device.type,
            "torch": torch.__version__,
        }
        return cls(folder.expanduser() if folder else None, context)

    def key(self, dataset: str, provenance: dict, extra: dict) -> str | None:
        identity = data_identity(provenance)
        if self.folder is None or identity is None:
            return None
        blob = {**self.context, "dataset": dataset, "data": identity, **extra}
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()

    def get(self, key: str | None) -> dict[str, float] | None:
        if key is None:
            return None
        file = self.folder / f"{key}.json"
        try:
            entry = json.loads(file.read_text())
        except (OSError, ValueError):  # absent, or unreadable: recompute (and rewrite) it
            return None
        self.hits += 1
        return {k: float(v) for k, v in entry["accuracies"].items()}

    def put(self, key: str | None, accuracies: dict[str, float]) -> None:
        if key is None:
            return
        try:
            write_atomic(self.folder / f"{key}.json", json.dumps({"accuracies": accuracies}))
        except OSError:  # a read-only data root: the run goes on without the cache
            self.folder = None
