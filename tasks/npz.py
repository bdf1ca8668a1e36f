"""Datasets stored as one ``.npz`` file: ``x_train, y_train, x_test, y_test, classes``.

Images are uint8 arrays [N, H, W, C] (C = 1 or 3) or [N, H, W]; grey images are served as RGB,
and the encoder's own transforms resize them to its input size. Any such file under
``--data-root`` is a dataset: ``npz:<stem>`` names ``<data-root>/<stem>.npz``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.errors import CFBenchError, DatasetMissingError
from tasks.base import TaskData, TaskSpec
from tasks.synthetic import ArrayImages

PREFIX = "npz:"
KEYS = ("x_train", "y_train", "x_test", "y_test", "classes")
TEMPLATES = ("a photo of a {}.", "an image of a {}.")
# the offline sequence's archives: tasks/offline_build.py makes them from public sources
OFFLINE_STEMS = ("mnist", "gtsrb", "dtd10", "cifar10", "caltech101")
OFFLINE_HINT = "; or build it: run_benchmark.py data prepare --sequence offline --data-root FOLDER"


def _images(array: np.ndarray, file: Path, key: str) -> np.ndarray:
    if array.dtype != np.uint8 or array.ndim not in (3, 4):
        raise CFBenchError(
            f"{file}: {key} must be uint8 images [N, H, W(, C)], got {array.dtype} {array.shape}"
        )
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]  # PIL reads [H, W] as grey, then converts to RGB
    return array


def load_npz(file: Path, name: str) -> TaskData:
    if not file.is_file():
        raise DatasetMissingError(
            f"dataset '{name}': {file} not found; put {file.name} (arrays "
            f"{', '.join(KEYS)}) in {file.parent} or pass --data-root FOLDER that holds it"
            + (OFFLINE_HINT if file.stem in OFFLINE_STEMS else "")
        )
    with np.load(file, allow_pickle=False) as d:
        missing = [k for k in KEYS if k not in d]
        if missing:
            raise CFBenchError(f"{file}: missing arrays {', '.join(missing)}")
        train = ArrayImages(_images(d["x_train"], file, "x_train"), d["y_train"])
        test = ArrayImages(_images(d["x_test"], file, "x_test"), d["y_test"])
        classes = [str(c).replace("_", " ") for c in d["classes"]]
    labels = set(train.targets) | set(test.targets)
    if min(labels) < 0 or max(labels) >= len(classes):
        raise CFBenchError(f"{file}: labels must be 0..{len(classes) - 1} (one per class name)")
    return TaskData(name, train, test, classes, TEMPLATES)


def npz_task(name: str, epochs: int = 2) -> TaskSpec:
    """TaskSpec for ``npz:<stem>``: the file ``<data-root>/<stem>.npz``."""
    stem = name.removeprefix(PREFIX)

    def build(root: Path, download: bool) -> TaskData:
        return load_npz(Path(root) / f"{stem}.npz", name)

    return TaskSpec(
        name=name, title=f"{stem} (npz file)", build=build, epochs=epochs, templates=TEMPLATES
    )
