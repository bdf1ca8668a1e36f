"""What the perf mode measures on and projects to: every dataset of a sequence with its split sizes,
stored resolution and classes (real, or shrunk for a CPU), the projected wall time of the whole
sequence from the measured rates, and the printed table."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmark.errors import CFBenchError
from benchmark.probe.splits import validation_split
from tasks import SequenceSpec, get_task

# Native image side of the datasets stored at their own size (the prepared store keeps it; the
# others have a TaskSpec.store_size). MNIST is grey; the store holds it as RGB, as here.
NATIVE_SIDE = {
    "mnist": 28,
    "svhn": 32,
    "cifar10": 32,
    "cifar100": 32,
    "eurosat": 64,
    "resisc45": 256,
}
# Small size: splits divided by this (at least 10 train and 2 test images per class, so every
# class is in every split), images at most this side, so the command takes about a minute on a
# 2-core CPU.
SMALL_DIVISOR = 50
SMALL_MAX_SIDE = 64
SMALL_PER_CLASS = (10, 2)


@dataclass(frozen=True)
class DatasetShape:
    name: str
    role: str  # "task" or "control"
    train: int  # the train split, all of which the probe sees (its validation part included)
    test: int
    height: int
    width: int
    num_classes: int
    epochs: int | None  # tasks: the sequence's epochs; controls: None

    @property
    def resolution(self) -> str:
        return f"{self.height}x{self.width}"

    @property
    def fine_tune(self) -> int:
        """Images fine-tuned on per epoch: the train split minus the validation split."""
        return self.train - len(validation_split(self.train)[1])

    def to_dict(self) -> dict:
        return {**asdict(self), "fine_tune": self.fine_tune, "resolution": self.resolution}


def real_shape(name: str, data_root: Path) -> tuple[int, int, int, int, int]:
    """(train, test, height, width, classes) of a dataset: from the registry where it records
    them, else from the data (generated, or an .npz file under ``data_root``)."""
    spec = get_task(name)
    if spec.splits is not None and spec.num_classes:
        side = spec.store_size or NATIVE_SIDE.get(name)
        if side is None:
            raise CFBenchError(f"perf: no stored resolution recorded for dataset '{name}'")
        return spec.splits.train, spec.splits.test, side, side, spec.num_classes
    if spec.build is None:
        raise CFBenchError(f"perf: dataset '{name}' records no split sizes")
    data = spec.build(Path(data_root).expanduser(), False)
    images = getattr(data.train, "images", None)
    if images is None:
        raise CFBenchError(f"perf: dataset '{name}' is not held as an image array")
    return len(data.train), len(data.test), images.shape[1], images.shape[2], data.num_classes


def plan_datasets(sequence: SequenceSpec, size: str, data_root: Path) -> list[DatasetShape]:
    """Every task and control of the sequence, at real size or shrunk (``size="small"``)."""
    out = []
    for name in [*sequence.tasks, *sequence.controls]:
        train, test, h, w, k = real_shape(name, data_root)
        if size == "small":
            train = min(train, max(math.ceil(train / SMALL_DIVISOR), SMALL_PER_CLASS[0] * k))
            test = min(test, max(math.ceil(test / SMALL_DIVISOR), SMALL_PER_CLASS[1] * k))
            h, w = min(h, SMALL_MAX_SIDE), min(w, SMALL_MAX_SIDE)
        is_task = name in sequence.tasks
        epochs = sequence.task_epochs(name) if is_task else None
        out.append(
            DatasetShape(name, "task" if is_task else "control", train, test, h, w, k, epochs)
        )
    return out


def _part(items: list[dict]) -> dict:
    return {
        "images": sum(i["images"] for i in items),
        "seconds": sum(i["seconds"] for i in items),
        "items": items,
    }


def project(
    plan: list[DatasetShape], train_rates: dict, eval_rates: dict, probe_seconds: dict
) -> dict:
    """Projected wall time of the whole sequence per strategy: fine-tuning (epochs x images per
    task at its measured rate), encoding (every stage, tasks + 1, encodes train and test of
    every dataset) and probing (every dataset at every stage)."""
    stages = sum(d.role == "task" for d in plan) + 1
    encode = _part(
        [
            {
                "dataset": d.name,
                "images": stages * (d.train + d.test),
                "images_per_s": eval_rates[d.resolution],
                "seconds": stages * (d.train + d.test) / eval_rates[d.resolution],
            }
            for d in plan
        ]
    )
    probe = {
        "seconds": sum(stages * probe_seconds[d.name] for d in plan),
        "stages": stages,
        "datasets": len(plan),
    }
    out = {}
    for strategy, rates in train_rates.items():
        train = _part(
            [
                {
                    "task": d.name,
                    "epochs": d.epochs,
                    "fine_tune": d.fine_tune,
                    "images": d.epochs * d.fine_tune,
                    "images_per_s": rates[d.resolution],
                    "seconds": d.epochs * d.fine_tune / rates[d.resolution],
                }
                for d in plan
                if d.role == "task"
            ]
        )
        total = train["seconds"] + encode["seconds"] + probe["seconds"]
        out[strategy] = {
            "train": train,
            "encode": encode,
            "probe": probe,
            "total_seconds": total,
            "total_hours": total / 3600,
        }
    return out


def _si(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds:.0f} s"


def format_report(r: dict) -> str:
    """The readable summary of a perf result (the JSON holds every number behind it)."""
    dev = r["device"]
    lines = [
        f"perf: {r['sequence']['name']}, {r['model']} (random weights), {dev['name']}, "
        f"{r['precision']}, batch {r['batch_size']}, {r['steps']} steps, size {r['size']}",
        f"{'resolution':<11}{'pipeline':>12}{'eval':>12}"
        + "".join(f"{'train ' + s:>14}" for s in r["train"])
        + "   (images/s)",
    ]
    for res in r["pipeline"]:
        cells = [r["pipeline"][res]["images_per_s"], r["eval"][res]["images_per_s"]]
        row = "".join(f"{_si(c):>12}" for c in cells)
        row += "".join(
            f"{_si(t[res]['images_per_s']) if res in t else '-':>14}" for t in r["train"].values()
        )
        lines.append(f"{res:<11}{row}")
    ratios = r["ratios"]
    lines.append(
        f"step time at {ratios['resolution']}: trainer FT / bare loop "
        f"{ratios['ft_over_bare']:.2f} (target <= {ratios['ft_over_bare_target']}), "
        f"LDIFS / FT {ratios['ldifs_over_ft']:.2f} "
        f"(target <= {ratios['ldifs_over_ft_target']})"
    )
    f = r["flops"]
    lines.append(
        f"FLOPs per image: forward {_si(f['forward_per_image'])}, training "
        f"{_si(f['train_per_image'])}; peak {_si(dev['peak_flops'], 'FLOP/s')}"
    )
    for name, t in r["throughput"].items():
        mfu = "n/a" if t["mfu"] is None else f"{100 * t['mfu']:.1f} %"
        lines.append(f"  {name:<12} {_si(t['flops_per_s'], 'FLOP/s'):>14}  MFU {mfu}")
    probes = r["probe"]["datasets"]
    lines.append(
        "probe seconds: " + ", ".join(f"{n} {p['seconds']:.2f}" for n, p in probes.items())
    )
    sk = r["sklearn"]
    if sk.get("skipped"):
        lines.append(f"sklearn: skipped ({sk['skipped']})")
    else:
        lines.append(
            f"sklearn on {sk['dataset']} {sk['shape']['train']}: ours "
            f"{sk['seconds_ours']:.2f} s, sklearn {sk['seconds_sklearn']:.2f} s "
            f"({sk['speedup']:.1f}x); accuracy {sk['accuracy_ours']:.3f} vs "
            f"{sk['accuracy_sklearn']:.3f}"
        )
    lines.append(f"projected wall time of {r['sequence']['name']} ({r['size']} size):")
    for name, p in r["projection"].items():
        lines.append(
            f"  {name:<6} {_duration(p['total_seconds']):>10} = train "
            f"{_duration(p['train']['seconds'])} ({_si(p['train']['images'])} images) "
            f"+ encode {_duration(p['encode']['seconds'])} "
            f"({_si(p['encode']['images'])} images) + probe "
            f"{_duration(p['probe']['seconds'])}"
        )
    return "\n".join(lines)
