"""What ``run_benchmark.py data list|prepare|verify`` does: what is on disk, fetch and prepare,
check (the command: benchmark/commands/data.py)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmark.errors import CFBenchError, DatasetMissingError
from tasks import get_task, load_task, prepared
from tasks.base import TaskSpec
from tasks.data import candidate_sources, size_mismatch, stored_source


def disk_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def _human(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} GB"


def _raw_path(root: Path, spec: TaskSpec) -> Path:
    return (
        root / f"{spec.name.removeprefix('npz:')}.npz"
        if spec.name.startswith("npz:")
        else (root / spec.name)
    )


def list_rows(names: list[str], root: Path, source: str = "auto") -> list[dict]:
    """One row per dataset: the source a run would use (nothing is downloaded), whether it is
    present, its split sizes (and the fixed split's), and its size on disk."""
    rows = []
    for name in names:
        spec = get_task(name)
        row = {"dataset": name, "expected": str(spec.splits) if spec.splits else "-"}
        try:
            data = load_task(name, root, download=False, source=source)
        except CFBenchError as error:
            if spec.build is None and not isinstance(error, DatasetMissingError):
                # a local copy that is there but broken: prepare would not fetch it, say why
                source_text = f"incomplete copy ({str(error).split(';')[0]})"
            elif spec.build is None:
                fetch = [
                    s.kind
                    for s in candidate_sources(spec, source)
                    if s.kind == "hf" or getattr(s, "downloadable", False)
                ]
                source_text = f"missing; prepare fetches it ({', '.join(fetch) or 'by hand'})"
            else:
                source_text = f"missing ({str(error).split(';')[0]})"
            rows.append({**row, "source": source_text, "present": "no", "splits": "-", "disk": "-"})
            continue
        p = data.provenance
        where = p["origin"] + (f"@{p['revision'][:12]}" if p.get("revision") else "")
        folder = (
            prepared.location(root, name) if p["format"] == "prepared" else _raw_path(root, spec)
        )
        rows.append(
            {
                **row,
                "source": f"{p['format']}: {where}",
                "present": "yes",
                "splits": f"{p['train']:,} / {p['test']:,}",
                "disk": _human(disk_size(folder)) if folder.exists() else "-",
            }
        )
    return rows


def format_rows(rows: list[dict]) -> str:
    keys = ["dataset", "present", "source", "splits", "expected", "disk"]
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in keys}
    lines = ["  ".join(k.ljust(widths[k]) for k in keys)]
    lines += ["  ".join(str(r[k]).ljust(widths[k]) for k in keys) for r in rows]
    return "\n".join(lines)


def prepare(
    name: str,
    root: Path,
    source: str = "auto",
    force: bool = False,
    workers: int = 0,
    log: Callable[[str], None] = print,
) -> str:
    """Write ``name``'s prepared store (fetching the data if needed); a complete store is left
    alone unless ``force``. Returns what was done, in a few words."""
    spec = get_task(name)
    folder = prepared.location(root, name)
    if prepared.is_prepared(root, name) and not force:
        load_task(name, root, download=False)  # the cheap checks: a broken store says so
        return f"{name}: already prepared in {folder}"
    if force and folder.exists():
        shutil.rmtree(folder)
    data = load_task(name, root, download=True, source=source)
    p = data.provenance
    info = {"source": p["source"], "origin": p["origin"], "revision": p.get("revision")}
    for split, dataset in (("train", data.train), ("test", data.test)):
        target = folder / split
        if (target / "meta.json").is_file():
            continue  # finished before a killed prepare stopped
        prepared.write_split(
            name, split, target, dataset, data.classnames, info, spec.store_size, workers
        )
    note = size_mismatch(spec, data)
    return f"{name}: prepared in {folder} from {p['origin']}" + (f" (note: {note})" if note else "")


def verify(name: str, root: Path) -> list[str]:
    """Every way ``name``'s prepared store differs from what prepare recorded and from the
    TaskSpec's expectations: one line each (empty when it is sound)."""
    spec = get_task(name)
    folder = prepared.location(root, name)
    if not prepared.is_prepared(root, name):
        return [
            f"{name}: no prepared store in {folder}; run 'run_benchmark.py data prepare {name}'"
        ]
    try:
        data = load_task(name, root, download=False, source=stored_source(root, name))
    except CFBenchError as error:
        return [f"{name}: {error}"]
    problems = []
    for split, dataset in (("train", data.train), ("test", data.test)):
        meta = prepared.read_meta(name, folder / split)
        if prepared.sha256_array(dataset.images) != meta["images_sha256"]:
            file = folder / split / "images.npy"
            problems.append(
                f"{name}: {file} differs from the SHA-256 meta.json records; run "
                f"'run_benchmark.py data prepare --force {name}'"
            )
        counts = np.bincount(dataset.targets, minlength=len(data.classnames)).tolist()
        if counts != meta["class_counts"]:
            problems.append(f"{name}: {split} class counts differ from meta.json's")
    note = size_mismatch(spec, data)
    if note:
        problems.append(f"{name}: {note}")
    return problems
