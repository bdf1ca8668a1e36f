"""Zero-shot prompt templates, and class names that torchvision does not ship.

The seed datasets use the published prompt sets as the package clip_benchmark ships them
(LAION-AI/CLIP_benchmark, MIT licence; version 1.6.2, the file
``clip_benchmark/datasets/en_zeroshot_classification_templates.json``): CLIP's sets (OpenAI's
``data/prompts.md`` and its ImageNet notebook: 18 for CIFAR, 80 for ImageNet, ...), the ones the
wise-ft, task_vectors and LDIFS code use (for RESISC45 and SVHN see tasks/vision.py). The file
is read from the installed distribution; clip_benchmark's Python modules are never imported (they
import torch, open_clip, transformers). Its placeholder ``{c}`` becomes ``{}`` here
(``template.format(classname)``).

A TaskSpec's ``templates`` are either ``published(key)`` (loaded on first use, so that the
synthetic and ``.npz`` datasets never need the package) or a tuple of our own ("cfbench"), and
``template_records`` is what config.json records of them ("templates"): the source, package
version, file, key, count and a SHA-256 of the prompts. Without clip_benchmark installed a
published set is a CFBenchError naming the install command: a run never silently falls back to
other prompts, which would change every zero-shot head.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from benchmark.errors import CFBenchError

PACKAGE = "clip_benchmark"
TEMPLATES_FILE = "clip_benchmark/datasets/en_zeroshot_classification_templates.json"
# The requirement pyproject.toml has; a newer minor version may change the file.
REQUIREMENT = "clip_benchmark>=1.6.2,<1.7"
OWN = "cfbench"


@functools.cache
def _published_file() -> tuple[str, dict[str, list[str]]]:
    """clip_benchmark's version and its English prompt sets, by key (read once)."""
    install = f"install it: pip install '{REQUIREMENT}'"
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise CFBenchError(
            f"the published zero-shot prompt templates come from the package {PACKAGE}, which "
            f"is not installed; {install}"
        ) from None
    path = Path(str(dist.locate_file(TEMPLATES_FILE)))
    try:
        sets = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as why:
        raise CFBenchError(
            f"{PACKAGE} {dist.version}: cannot read {TEMPLATES_FILE} ({why}); {install}"
        ) from None
    return dist.version, sets


def _sha256(templates: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(templates)).encode()).hexdigest()


class PublishedTemplates(Sequence[str]):
    """clip_benchmark's prompt set ``key``, read when first used (a tuple-like sequence)."""

    def __init__(self, key: str):
        self.key = key

    @functools.cached_property
    def _loaded(self) -> tuple[tuple[str, ...], str]:
        version, sets = _published_file()
        if not isinstance(sets.get(self.key), list) or not sets[self.key]:
            raise CFBenchError(
                f"{PACKAGE} {version} has no prompt set '{self.key}' in {TEMPLATES_FILE}; "
                f"install the version cfbench reads: pip install '{REQUIREMENT}'"
            )
        templates = tuple(t.replace("{c}", "{}") for t in sets[self.key])
        bad = [t for t in templates if t.count("{}") != 1 or set("{}") & set(t.replace("{}", ""))]
        if bad:
            raise CFBenchError(
                f"{PACKAGE} {version}: prompt set '{self.key}' has templates without exactly one "
                f"{{c}} placeholder ({bad[0]!r}); reinstall it: pip install '{REQUIREMENT}'"
            )
        return templates, version

    def __getitem__(self, index):
        return self._loaded[0][index]

    def __len__(self) -> int:
        return len(self._loaded[0])

    def __eq__(self, other) -> bool:
        if isinstance(other, PublishedTemplates):
            return self.key == other.key
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash((PACKAGE, self.key))

    def __repr__(self) -> str:  # without reading the file
        return f"published({self.key!r})"

    def record(self) -> dict:
        templates, version = self._loaded
        return {
            "source": PACKAGE,
            "version": version,
            "file": TEMPLATES_FILE,
            "key": self.key,
            "count": len(templates),
            "sha256": _sha256(templates),
        }


def published(key: str) -> PublishedTemplates:
    """The prompt set ``key`` of clip_benchmark's templates file (cifar10, imagenet1k, ...)."""
    return PublishedTemplates(key)


def template_record(templates: Sequence[str]) -> dict:
    """What config.json records of one dataset's templates: a published set's source, version,
    file, key, count and SHA-256; for our own ("cfbench") the count and SHA-256."""
    if isinstance(templates, PublishedTemplates):
        return templates.record()
    return {"source": OWN, "count": len(templates), "sha256": _sha256(templates)}


def template_records(data: Mapping) -> dict[str, dict]:
    """config.json's "templates": the record of each dataset's (TaskData's) templates."""
    return {name: template_record(d.templates) for name, d in data.items()}


# Class names are ours. clip_benchmark's en_classnames.json has CLIP's GTSRB and EuroSAT names
# (the papers' too): the same count and label order, other words. They stay ours because a
# prepared store keeps the names it was written with (classes.json); MNIST's and ImageNet's
# (open_clip's) are the same as clip_benchmark's.
DIGITS = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]

# GTSRB class ids 0..42 in the official order.
GTSRB_CLASSES = [
    "speed limit 20 km/h",
    "speed limit 30 km/h",
    "speed limit 50 km/h",
    "speed limit 60 km/h",
    "speed limit 70 km/h",
    "speed limit 80 km/h",
    "end of speed limit 80 km/h",
    "speed limit 100 km/h",
    "speed limit 120 km/h",
    "no overtaking",
    "no overtaking by trucks",
    "right of way at the next intersection",
    "priority road",
    "yield",
    "stop",
    "no vehicles",
    "no trucks",
    "no entry",
    "general caution",
    "dangerous curve to the left",
    "dangerous curve to the right",
    "double curve",
    "bumpy road",
    "slippery road",
    "road narrows on the right",
    "road work",
    "traffic signals",
    "pedestrians",
    "children crossing",
    "bicycles crossing",
    "beware of ice or snow",
    "wild animals crossing",
    "end of all speed and passing limits",
    "turn right ahead",
    "turn left ahead",
    "ahead only",
    "go straight or right",
    "go straight or left",
    "keep right",
    "keep left",
    "roundabout mandatory",
    "end of no overtaking",
    "end of no overtaking by trucks",
]

# EuroSAT folder names -> readable names.
EUROSAT_NAMES = {
    "AnnualCrop": "annual crop land",
    "Forest": "forest",
    "HerbaceousVegetation": "brushland or shrubland",
    "Highway": "highway or road",
    "Industrial": "industrial buildings",
    "Pasture": "pasture land",
    "PermanentCrop": "permanent crop land",
    "Residential": "residential buildings",
    "River": "river",
    "SeaLake": "lake or sea",
}
