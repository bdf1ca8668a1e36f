"""``run_benchmark.py data prepare --sequence offline``: the offline sequence's ``.npz`` archives
and its ResNet-20 checkpoint, built from public sources on a machine with internet.

This repository's own machines read ``../shared/data/*.npz`` (its README gives their provenance
and procedure); a user without that folder builds archives of the same kind here: the same keys
and dtypes (``x_train``/``x_test`` uint8 [N, H, W, C], ``y_train``/``y_test`` int64,
``classes`` unicode), image sizes, per-class counts, label orders and class names, drawn by the
same seeded procedure:

* one fresh ``numpy.random.default_rng(0)`` per dataset;
* each class's candidates in source order (index order in a binary file, sorted path otherwise);
* with an official test split: per class in label order ``sorted(rng.choice(n, min(k, n),
  replace=False))``, the train split for every class first, then the test split;
* without one (DTD-10, Caltech-101): per class in label order ``p = rng.permutation(n)``, train
  ``sorted(p[:a])``, test ``sorted(p[a:a + b])``;
* decoded in class order, then each split shuffled with ``rng.permutation`` (train, then test);
* Pillow bicubic; "shorter side to S, centre crop" rounds the longer side and crops at
  ``floor((side - S) / 2)``; grey and palette images become RGB.

The archives are ``<data-root>/<stem>.npz``; every file is written whole and then renamed, with
fixed zip timestamps, so a rebuild from the same raw files is byte-identical. The provenance of
each (source class, URLs, torchvision version, per-class counts, SHA-256 of the file written)
is recorded in ``<data-root>/offline_provenance.json``.

How the public sources differ from those of ``../shared/data`` (so numbers can differ):

* MNIST: torchvision's idx files (the same 70,000 images as the PNG copy ../shared used), 1,200
  / 200 per class; candidates in file order, not the PNG copy's path order: other images drawn.
* CIFAR-10: the original binaries (``cifar-10-python.tar.gz``). ../shared used a JPEG
  re-encoding (quality 75, 4:2:0), so pixels differ: the ResNet-20 scores about 10 points
  more on the originals (91.8% reported on the full test set vs 81.2% on ../shared's subset).
* GTSRB: torchvision's official archives (``GTSRB-Training_fixed.zip``, the final test set and
  its ground truth), the ROI box of each image's ``GT-*.csv`` row, clamped, then 32x32
  bicubic; caps 234 (train) and 71 (test) per class as in ../shared (9,990 / 2,987 images);
  class names are the usual ``signnames.csv``; candidates in path order (ppm names).
* DTD-10: the first 10 of DTD's 47 class folders (alphabetical), all 120 images of each from
  ``dtd-r1.0.1.tar.gz``, our own seeded 80 / 40 split (not one of DTD's ten splits), shorter
  side 64 and centre crop.
* Caltech-101: ``caltech-101.zip`` from CaltechDATA, ``BACKGROUND_Google`` dropped, labels the
  sorted folder names. ../shared used a repository's split lists, which torchvision does not
  have; here each class is split by the seeded permutation, ``round(2 n / 3)`` images to train
  and the rest to test: per-class counts within one image of ../shared's (5,786 / 2,891 images
  against 5,784 / 2,893), other images in each split. Shorter side 32 and centre crop.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.errors import CFBenchError
from tasks.npz import KEYS
from tasks.offline_fetch import SOURCES, FetchFailed, fetch, sha256_file
from tasks.offline_raw import Pool
from tasks.offline_weights import fetch_checkpoint

PROVENANCE = "offline_provenance.json"
PROCEDURE = "cfbench offline-build 1: default_rng(0); per-class sorted rng.choice (or permutation"
PROCEDURE += " split), train then test; rng.permutation shuffles; Pillow bicubic"


@dataclass(frozen=True)
class ArchiveSpec:
    """One archive: its raw source (tasks/offline_fetch.py), image shape [H, W, C] and images
    per class (train, test): caps on an official split, or counts of our own per-class split;
    ``None``: two thirds of each class to train, the rest to test."""

    stem: str
    source: str
    shape: tuple[int, int, int]
    per_class: tuple[int, int] | None


SPECS: dict[str, ArchiveSpec] = {
    s.stem: s
    for s in (
        ArchiveSpec("mnist", "mnist", (28, 28, 1), (1200, 200)),
        ArchiveSpec("gtsrb", "gtsrb", (32, 32, 3), (234, 71)),
        ArchiveSpec("dtd10", "dtd", (64, 64, 3), (80, 40)),
        ArchiveSpec("cifar10", "cifar10", (32, 32, 3), (1000, 200)),
        ArchiveSpec("caltech101", "caltech101", (32, 32, 3), None),
    )
}


def _choose(rng: np.random.Generator, n: int, k: int) -> list[int]:
    return sorted(int(i) for i in rng.choice(n, size=min(k, n), replace=False))


def select(
    rng: np.random.Generator, pool: Pool, per_class: tuple[int, int] | None
) -> tuple[list[list[int]], list[list[int]]]:
    """Per class, the indices (into its candidates) of the train and of the test images."""
    if pool.test is not None:
        k_train, k_test = per_class
        train = [_choose(rng, len(items), k_train) for items in pool.train.items]
        return train, [_choose(rng, len(items), k_test) for items in pool.test.items]
    train, test = [], []
    for items in pool.train.items:
        n = len(items)
        a, b = per_class if per_class else (round(2 * n / 3), n - round(2 * n / 3))
        p = rng.permutation(n)
        train.append(sorted(int(i) for i in p[:a]))
        test.append(sorted(int(i) for i in p[a : a + b]))
    return train, test


def _decode(split, chosen: list[list[int]], shape, stem: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for label, indices in enumerate(chosen):
        for i in indices:
            image = split.load(split.items[label][i])
            if image.shape != shape:
                raise CFBenchError(
                    f"{stem}: {split.items[label][i]!s:.80} gave an image of "
                    f"shape {image.shape}, expected {shape}; fetch it again"
                )
            images.append(image)
            labels.append(label)
    x = np.stack(images) if images else np.zeros((0, *shape), np.uint8)
    return x.astype(np.uint8), np.asarray(labels, np.int64)


def build_arrays(spec: ArchiveSpec, pool: Pool, per_class: tuple[int, int] | None) -> dict:
    """The archive's arrays from ``pool`` by the seeded procedure (module docstring)."""
    rng = np.random.default_rng(0)
    train_idx, test_idx = select(rng, pool, per_class)
    x_train, y_train = _decode(pool.train, train_idx, spec.shape, spec.stem)
    x_test, y_test = _decode(pool.test or pool.train, test_idx, spec.shape, spec.stem)
    p_train, p_test = rng.permutation(len(y_train)), rng.permutation(len(y_test))
    return {
        "x_train": x_train[p_train],
        "y_train": y_train[p_train],
        "x_test": x_test[p_test],
        "y_test": y_test[p_test],
        "classes": np.array(pool.classes, dtype=str),
    }


def write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> str:
    """``numpy.savez_compressed``'s format with fixed timestamps (reproducible bytes), written
    to a temporary file and renamed; returns the file's SHA-256."""
    part = path.with_name(f".{path.name}.part")
    with zipfile.ZipFile(part, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, array in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.asanyarray(array), allow_pickle=False)
    os.replace(part, path)
    return sha256_file(path)


def archive_problem(path: Path, spec: ArchiveSpec) -> str | None:
    """Why ``path`` is not an archive of this kind (keys, dtypes, shapes, labels), or None."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if sorted(z.files) != sorted(KEYS):
                return f"arrays {sorted(z.files)}, expected {sorted(KEYS)}"
            a = {k: z[k] for k in KEYS}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        return f"unreadable ({type(error).__name__})"
    for split in ("train", "test"):
        x, y = a[f"x_{split}"], a[f"y_{split}"]
        if x.dtype != np.uint8 or x.shape[1:] != spec.shape or x.shape[0] != y.shape[0]:
            return f"x_{split} is {x.dtype} {x.shape}, expected uint8 [N, {spec.shape}]"
        if y.dtype != np.int64 or (y.size and not 0 <= y.min() <= y.max() < len(a["classes"])):
            return f"y_{split} must be int64 labels 0..{len(a['classes']) - 1}"
    if a["classes"].dtype.kind != "U":
        return f"classes is {a['classes'].dtype}, expected unicode strings"
    return None


def read_provenance(root: Path) -> dict:
    file = root / PROVENANCE
    if not file.is_file():
        return {"archives": {}, "weights": {}}
    try:
        return {"archives": {}, "weights": {}, **json.loads(file.read_text())}
    except json.JSONDecodeError:
        raise CFBenchError(
            f"{file} is not valid JSON; delete it (prepare writes it again)"
        ) from None


def write_provenance(root: Path, record: dict) -> None:
    file = root / PROVENANCE
    part = file.with_name(f".{file.name}.part")
    text = json.dumps(record, indent=2, sort_keys=True)
    # one line per list of numbers (the per-class counts), not one line per number
    text = re.sub(r"\[\s+([\d,\s]+?)\s+\]", lambda m: f"[{' '.join(m[1].split())}]", text)
    part.write_text(text + "\n")
    os.replace(part, file)


def _entry(spec: ArchiveSpec, root: Path, path: Path, sha: str, arrays: dict, counts) -> dict:
    import PIL
    import torchvision

    source = SOURCES[spec.source]
    k = len(arrays["classes"])
    return {
        "file": path.name,
        "sha256": sha,
        "bytes": path.stat().st_size,
        "source": source.origin,
        "urls": list(source.urls),
        "revision": f"torchvision {torchvision.__version__} (it checks MD5s of what it downloads)",
        "raw_folder": str(root / source.folder),
        "procedure": PROCEDURE,
        "per_class": _counts_record(counts),
        "train": int(arrays["y_train"].size),
        "test": int(arrays["y_test"].size),
        "class_counts": {
            s: np.bincount(arrays[f"y_{s}"], minlength=k).tolist() for s in ("train", "test")
        },
        "numpy": np.__version__,
        "pillow": PIL.__version__,
    }


def _counts_record(counts: tuple[int, int] | None) -> list[int] | str:
    return list(counts) if counts else "round(2 n / 3) train, the rest test"


def _kept(spec: ArchiveSpec, path: Path, entry: dict | None, counts) -> str | None:
    """Why the archive on disk is kept, or None (build it). Kept: an archive of the expected
    kind that prepare recorded (same per-class counts, same SHA-256), or one it has no record
    of (e.g. a copy of ../shared/data)."""
    if not path.is_file() or archive_problem(path, spec):
        return None
    sha = sha256_file(path)
    if entry is None:
        return f"present (sha256 {sha[:12]}, not built here)"
    if entry.get("per_class") != _counts_record(counts) or entry.get("sha256") != sha:
        return None
    return f"already built (sha256 {sha[:12]})"


def build_archive(
    stem: str,
    root: Path,
    force: bool = False,
    per_class: tuple[int, int] | None = None,
    log: Callable[[str], None] = print,
) -> None:
    """Build ``<root>/<stem>.npz`` (fetching its source if needed) unless the one there is of
    the expected kind; ``per_class`` overrides the images per class (tests use tiny fixtures).
    A failed download is ``FetchFailed``; nothing on disk is replaced before the new file is
    complete."""
    spec = SPECS[stem]
    path = root / f"{stem}.npz"
    record = read_provenance(root)
    entry = record["archives"].get(stem)
    counts = per_class or spec.per_class
    why = None if force else _kept(spec, path, entry, counts)
    if why:
        log(f"{stem}: {path} {why}; kept (--force rebuilds it)")
        return
    source = SOURCES[spec.source]
    fetch(source, root, log)
    log(f"{stem}: reading {source.origin} in {root / source.folder}")
    arrays = build_arrays(spec, source.read(root / source.folder), counts)
    sha = write_npz(path, arrays)
    record = read_provenance(root)
    record["archives"][stem] = _entry(spec, root, path, sha, arrays, counts)
    write_provenance(root, record)
    log(
        f"{stem}: wrote {path} ({arrays['y_train'].size:,} train / {arrays['y_test'].size:,} "
        f"test, {len(arrays['classes'])} classes; sha256 {sha[:12]})"
    )


def offline_stems() -> list[str]:
    from tasks.sequences import SEQUENCES

    spec = SEQUENCES["offline"]
    return [name.removeprefix("npz:") for name in (*spec.tasks, *spec.controls)]


def prepare_offline(
    root: Path,
    force: bool = False,
    log: Callable[[str], None] = print,
    per_class: Mapping[str, tuple[int, int]] | None = None,
) -> None:
    """Every archive of the offline sequence and its checkpoint. What cannot be downloaded is
    collected; after building everything else the error names, in one line, what to fetch by
    hand and where to put it."""
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    missing = []
    stems = offline_stems()
    for i, stem in enumerate(stems, 1):
        log(f"[{i}/{len(stems)}] {stem}")
        try:
            build_archive(stem, root, force, (per_class or {}).get(stem), log)
        except FetchFailed as failed:
            log(f"{stem}: download failed ({failed.why})")
            missing.append(failed.hint)
    log("[weights] resnet20-12fca82f.th")
    try:
        record = read_provenance(root)
        record["weights"] = fetch_checkpoint(root, force, log)
        write_provenance(root, record)
    except FetchFailed as failed:
        log(f"weights: download failed ({failed.why})")
        missing.append(failed.hint)
    if missing:
        raise CFBenchError(
            f"could not download (no network?): {'; '.join(missing)}; then run "
            f"'run_benchmark.py data prepare --sequence offline --data-root {root}' again"
        )
