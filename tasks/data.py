"""Open a dataset: its prepared store when there is one, else the first of its sources that works.

Sources are tried local-first: every source already on disk (in the TaskSpec's order), then every
source that can download. ``source`` restricts the choice to one kind (``torchvision``, ``hf``,
``folder``); a prepared store is used when it was written from that kind (or for ``auto``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from benchmark.errors import CFBenchError, DatasetMissingError
from tasks import prepared
from tasks.base import Splits, TaskData, TaskSpec, targets_of
from tasks.sources import KINDS, Raw, SourceUnavailable

SOURCE_CHOICES = ("auto", *KINDS)


def labels_sha256(train: list[int], test: list[int]) -> str:
    """Fingerprint of a dataset's labels (train then test, int64): cheap, and it changes with
    the split, its order and the label mapping."""
    digest = hashlib.sha256()
    for labels in (train, test):
        digest.update(np.asarray(labels, dtype=np.int64).tobytes())
    return digest.hexdigest()


def candidate_sources(spec: TaskSpec, source: str = "auto") -> list:
    if source not in SOURCE_CHOICES:
        raise CFBenchError(f"unknown source '{source}'; valid: {', '.join(SOURCE_CHOICES)}")
    chosen = [s for s in spec.sources if source == "auto" or s.kind == source]
    if not chosen:
        kinds = ", ".join(sorted({s.kind for s in spec.sources})) or "none"
        raise CFBenchError(f"dataset '{spec.name}' has no {source} source (it has: {kinds})")
    return chosen


def fetch_raw(spec: TaskSpec, root: Path, download: bool, source: str = "auto") -> Raw:
    """The raw splits from the first source that has them (local copies first)."""
    chosen, tried = candidate_sources(spec, source), []
    passes = [False, True] if download else [False]
    for allow_download in passes:
        for src in chosen:
            if allow_download and not _can_download(src):
                continue
            try:
                return src.load(spec.name, root, allow_download)
            except SourceUnavailable as why:
                tried.append(f"{src.kind}: {why}")
    fixes = "; ".join(
        f"or {s.hint.format(path=root / spec.name)}" for s in chosen if getattr(s, "hint", "")
    )
    by_hand = f", {fixes}" if fixes else ""
    raise DatasetMissingError(
        f"dataset '{spec.name}' not found (tried {'; '.join(tried)}); run "
        f"'run_benchmark.py data prepare {spec.name}' on a machine with internet{by_hand}"
    )


def _can_download(src) -> bool:
    return src.kind == "hf" or bool(getattr(src, "downloadable", False))


def from_raw(spec: TaskSpec, raw: Raw) -> TaskData:
    """TaskData from a source's splits: class names normalised, labels checked against them."""
    names = (spec.names or list)(raw.names)
    train_t, test_t = targets_of(raw.train), targets_of(raw.test)
    check_labels(spec, names, train_t, test_t, raw.origin)
    provenance = raw_provenance(raw.origin.split(":")[0], raw.origin, raw.revision, train_t, test_t)
    return TaskData(spec.name, raw.train, raw.test, names, spec.templates, provenance)


def raw_provenance(source, origin, revision, train: list[int], test: list[int]) -> dict:
    """What a run records of data read from its source (no image fingerprint: see prepared)."""
    return {
        "source": source,
        "origin": origin,
        "revision": revision,
        "format": "raw",
        "train": len(train),
        "test": len(test),
        "labels_sha256": labels_sha256(train, test),
    }


def check_labels(spec: TaskSpec, names: list[str], train: list[int], test: list[int], where):
    if spec.num_classes is not None and len(names) != spec.num_classes:
        raise CFBenchError(
            f"dataset '{spec.name}' from {where} has {len(names)} classes, expected "
            f"{spec.num_classes}; replace that copy (data prepare --force {spec.name})"
        )
    labels = np.asarray(train + test)
    if len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
        raise CFBenchError(
            f"dataset '{spec.name}' from {where}: labels {labels.min()}..{labels.max()} do not "
            f"match its {len(names)} class names; replace that copy "
            f"(data prepare --force {spec.name})"
        )


def open_prepared(spec: TaskSpec, root: Path) -> TaskData:
    folder = prepared.location(root, spec.name)
    (train, train_classes, meta), (test, test_classes, test_meta) = (
        prepared.open_split(spec.name, folder / s) for s in prepared.SPLITS
    )
    if train_classes != test_classes:
        raise prepared.refuse(spec.name, folder, "train and test have different class lists")
    check_labels(spec, train_classes, train.targets, test.targets, f"the prepared store {folder}")
    provenance = {
        "source": meta["source"],
        "origin": meta["origin"],
        "revision": meta.get("revision"),
        "format": "prepared",
        "storage": meta["storage"],
        "train": len(train),
        "test": len(test),
        "labels_sha256": labels_sha256(train.targets, test.targets),
        "images_sha256": [meta["images_sha256"], test_meta["images_sha256"]],
    }
    return TaskData(spec.name, train, test, train_classes, spec.templates, provenance)


def stored_source(root: Path, name: str) -> str | None:
    """The source kind a prepared store was written from, or None when there is none."""
    if not prepared.is_prepared(root, name):
        return None
    return prepared.read_meta(name, prepared.location(root, name) / "train").get("source")


def open_task(spec: TaskSpec, root: Path, download: bool = True, source: str = "auto") -> TaskData:
    """The dataset a run uses: its prepared store if there is one (from the requested source),
    else the raw source (DatasetMissingError lists every source tried and the fix)."""
    root = Path(root).expanduser()
    stored = stored_source(root, spec.name)
    if stored is not None and source in ("auto", stored):
        return open_prepared(spec, root)
    if spec.build is not None:  # synthetic and .npz data make themselves
        data = spec.build(root, download)
        source = "npz" if spec.name.startswith("npz:") else "generated"
        data.provenance = raw_provenance(
            source, spec.title, None, targets_of(data.train), targets_of(data.test)
        )
        # In-memory arrays, small: their hash fingerprints the pixels (the row-0 cache's key).
        data.provenance["images_sha256"] = [
            prepared.sha256_array(d.images) for d in (data.train, data.test)
        ]
        return data
    return from_raw(spec, fetch_raw(spec, root, download, source))


def size_mismatch(spec: TaskSpec, data: TaskData) -> str | None:
    """How the loaded splits differ from the sizes the TaskSpec expects, or None."""
    if spec.splits is None:
        return None
    got = Splits(len(data.train), len(data.test))
    if got == spec.splits:
        return None
    return f"{spec.name} has {got} train / test images, its fixed split has {spec.splits}"
