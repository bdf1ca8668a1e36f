"""The sequence registry and the YAML sequence files.

``SEQUENCES`` maps a sequence name to a SequenceSpec (tasks in training order, control datasets
never trained on, run defaults, default strategy arguments); ``get_sequence`` also accepts the
path of a YAML file describing a custom sequence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmark.errors import CFBenchError
from tasks.registry import get_task
from tasks.selected import apply_selection, load_selection, selection_path


@dataclass(frozen=True)
class SequenceSpec:
    """A named benchmark: tasks trained in order, controls only probed.

    ``epochs`` overrides the TaskSpec's epochs per task; ``defaults`` are run settings this sequence
    needs (e.g. the tiny model for ``smoke``) that the command line can still override;
    ``strategy_args`` are default hyper-parameters per strategy name; ``get_sequence`` merges
    into them the values ``run_benchmark.py select`` chose (``selection``, tasks/selected.py).
    """

    name: str
    tasks: tuple[str, ...]
    controls: tuple[str, ...] = ()
    epochs: Mapping[str, int] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    strategy_args: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # strategy -> how its arguments were chosen on validation (tasks/selected.py "chosen_by")
    selection: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def task_epochs(self, task: str) -> int:
        return int(self.epochs.get(task, get_task(task).epochs))


SMOKE_DEFAULTS = {
    "model": "cfbench-tiny-vit",
    "pretrained": "none",
    "lr": 1e-3,
    "batch_size": 32,
    "warmup_steps": 5,
    "weight_decay": 0.0,
}

# Real images and a real pretrained encoder on a CPU (../shared/data and ../shared/weights):
# the CIFAR-10 ResNet-20 fine-tuned on MNIST -> GTSRB -> DTD-10, probed on CIFAR-10 (its own
# pretraining data) and Caltech-101 as controls. Settings: README "The offline sequence" has the
# measurements behind them (FT forgets clearly on every seed; >= 2,000 test images per dataset
# where the data has them). Strategy weights: tasks/selected/offline.yaml (chosen on validation).
OFFLINE_DEFAULTS = {
    "model": "resnet20-cifar",
    "pretrained": "resnet20-12fca82f.th",
    "lr": 3e-3,
    "batch_size": 64,
    "warmup_steps": 10,
    "weight_decay": 0.0,
    "max_train_images": 3000,
    "batchnorm": "frozen",
    "probe_max_train_samples": 2000,
    "probe_max_test_samples": 2000,
}

SEQUENCES: dict[str, SequenceSpec] = {
    s.name: s
    for s in (
        SequenceSpec(
            "smoke", ("synth_a", "synth_b", "synth_c"), ("synth_control",), defaults=SMOKE_DEFAULTS
        ),
        SequenceSpec(
            "offline",
            ("npz:mnist", "npz:gtsrb", "npz:dtd10"),
            ("npz:cifar10", "npz:caltech101"),
            epochs={"npz:mnist": 3, "npz:gtsrb": 3, "npz:dtd10": 3},
            defaults=OFFLINE_DEFAULTS,
        ),
        SequenceSpec("3tasks", ("svhn", "cifar10", "resisc45")),
        SequenceSpec(
            "5tasks",
            ("svhn", "cifar10", "resisc45", "dtd", "gtsrb"),
            ("cifar100", "mnist", "eurosat", "cars"),
        ),
        SequenceSpec(
            "10tasks",
            (
                "cars",
                "cifar10",
                "cifar100",
                "dtd",
                "eurosat",
                "gtsrb",
                "mnist",
                "resisc45",
                "svhn",
                "imagenet",
            ),
        ),
    )
}


def get_sequence(name_or_path: str) -> SequenceSpec:
    """A registered sequence by name, or a custom one from a YAML file, with the strategy
    arguments selected on validation for it (tasks/selected.py) merged in."""
    registered = name_or_path in SEQUENCES
    if registered:
        spec = SEQUENCES[name_or_path]
    elif Path(name_or_path).suffix in (".yaml", ".yml"):
        spec = load_sequence_file(Path(name_or_path))
    else:
        raise _unknown(name_or_path)
    return apply_selection(spec, load_selection(selection_path(name_or_path, registered)))


def _unknown(name_or_path: str) -> CFBenchError:
    return CFBenchError(
        f"unknown sequence '{name_or_path}'; valid names: {', '.join(SEQUENCES)}, "
        "or the path of a .yaml sequence file"
    )


def _fail(path: Path, node: yaml.Node, message: str) -> CFBenchError:
    return CFBenchError(f"{path}, line {node.start_mark.line + 1}: {message}")


def _plain(node: yaml.Node) -> Any:
    return yaml.safe_load(yaml.serialize(node))


def _yaml_fields(path: Path) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """The top-level keys of a sequence file with their YAML nodes (which carry line numbers)."""
    if not path.is_file():
        raise CFBenchError(
            f"sequence file {path} does not exist; give a registered name "
            f"({', '.join(SEQUENCES)}) or an existing .yaml file"
        )
    try:
        root = yaml.compose(path.read_text(), Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", error)
        raise CFBenchError(f"{path}{where}: not valid YAML ({problem})") from None
    if not isinstance(root, yaml.MappingNode):
        raise CFBenchError(f"{path}: expected a mapping with at least a 'tasks' list")
    fields = {key.value: (key, value) for key, value in root.value}
    allowed = {"name", "tasks", "controls", "defaults", "strategy_args"}
    for key, (knode, _) in fields.items():
        if key not in allowed:
            raise _fail(
                path, knode, f"unknown key '{key}'; valid keys: {', '.join(sorted(allowed))}"
            )
    if "tasks" not in fields:
        raise CFBenchError(f"{path}: missing the 'tasks' list")
    return fields


def _dataset_entry(path: Path, item: yaml.Node, key: str, with_epochs: bool):
    """(name, epochs or None) of one list entry: a name, or {name, epochs} for tasks."""
    value, epochs = _plain(item), None
    if isinstance(value, dict) and with_epochs:
        name, epochs = value.get("name"), value.get("epochs")
        if set(value) - {"name", "epochs"} or not isinstance(name, str):
            raise _fail(path, item, "a task entry is a name or {name: ..., epochs: N}")
        if epochs is not None and (
            not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1
        ):
            raise _fail(path, item, f"epochs for '{name}' must be an integer >= 1")
    elif isinstance(value, str):
        name = value
    else:
        raise _fail(path, item, f"entries of '{key}' must be dataset names")
    try:
        get_task(name)
    except CFBenchError as error:
        raise _fail(path, item, str(error)) from None
    return name, epochs


def _dataset_list(path: Path, fields: dict, key: str, with_epochs: bool):
    """The dataset names under ``key`` and their per-task epochs."""
    if key not in fields:
        return (), {}
    knode, node = fields[key]
    if not isinstance(node, yaml.SequenceNode):
        raise _fail(path, knode, f"'{key}' must be a list of dataset names")
    entries = [_dataset_entry(path, item, key, with_epochs) for item in node.value]
    return tuple(n for n, _ in entries), {n: e for n, e in entries if e is not None}


def load_sequence_file(path: Path) -> SequenceSpec:
    """Parse a sequence file::

        name: my-sequence            # optional, default: the file name
        tasks: [svhn, {name: cifar10, epochs: 3}]
        controls: [mnist]            # optional
        defaults: {lr: 1.0e-5}       # optional run settings
        strategy_args: {ldifs: {lam: 1}}   # optional

    Every error names the file and line.
    """
    fields = _yaml_fields(path)
    tasks, epochs = _dataset_list(path, fields, "tasks", True)
    controls, _ = _dataset_list(path, fields, "controls", False)
    if not tasks:
        raise _fail(path, fields["tasks"][1], "'tasks' is empty")
    if set(tasks) & set(controls) or len(set(tasks)) != len(tasks):
        raise _fail(path, fields["tasks"][1], "a dataset appears twice in tasks and controls")
    extras = {}
    for key in ("defaults", "strategy_args"):
        if key in fields:
            value = _plain(fields[key][1])
            if not isinstance(value, dict):
                raise _fail(path, fields[key][0], f"'{key}' must be a mapping")
            extras[key] = value
    name = _plain(fields["name"][1]) if "name" in fields else path.stem
    return SequenceSpec(
        str(name),
        tasks,
        controls,
        epochs,
        extras.get("defaults", {}),
        extras.get("strategy_args", {}),
    )
