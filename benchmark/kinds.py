"""The record kinds: what each ``kind`` of records.csv measures, where it exists, what it needs.

One registry, read by the evaluation (which kinds a dataset gets at a stage), the pretrained-row
cache key (benchmark/row0_cache.py: the kinds a cached entry holds), the results files (the
``<kind>_matrix.csv`` files and metrics.json) and the report (labels, figures). A new kind is one
entry here and the measure that computes it (benchmark/measures.py; VRF's in benchmark/vrf/).
Pure data: no project module below it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """One record kind (docs/design.md section 2)."""

    name: str  # the ``kind`` column of records.csv
    measures: str  # one line: what the accuracy is of
    per: str  # "dataset": every task and control; "task": tasks only
    needs_text: bool = False  # the pretrained text tower's zero-shot weights (CLIP only)
    needs_head: bool = False  # the task's fitted head (an LP-init head has none before its task)
    needs_vrf: bool = False  # only with a VRF evaluator (the ``vrf`` strategy or ``--vrf``)
    row0_cache: bool = False  # held by a pretrained-row cache entry (its key names it)
    matrix: bool = False  # a ``<name>_matrix.csv``, a metrics.json entry and report heatmaps
    short: str = ""  # the report's short name of the matrix (table legends)
    label: str = ""  # the report's axis label ("" without a matrix)


LP = Kind(
    "lp",
    "the linear probe's test accuracy (C chosen on validation, refitted on the train split)",
    "dataset",
    row0_cache=True,
    matrix=True,
    short="LP",
    label="linear-probe accuracy (%)",
)
LP_VAL = Kind(
    "lp_val",
    "the probe chosen on validation, on the dataset's whole validation split (selection's score)",
    "dataset",
    row0_cache=True,
)
ZS = Kind(
    "zs",
    "the pretrained text tower's zero-shot head on the current encoder's test features",
    "dataset",
    needs_text=True,
    row0_cache=True,
    matrix=True,
    short="ZS",
    label="zero-shot accuracy (%)",
)
HEAD = Kind(
    "head",
    "the task's own trained head on its test split (task-incremental)",
    "task",
    needs_head=True,
    row0_cache=True,
    matrix=True,
    short="head",
    label="task-head accuracy (%)",
)
VAL = Kind(
    "val",
    "the task's head on its validation images (never trained on): selection's head score",
    "task",
    needs_head=True,
    row0_cache=True,
)
VRF = Kind(
    "vrf",
    "VRF: the task head ensembled with the pretrained zero-shot model, per-image weight",
    "task",
    needs_text=True,
    needs_head=True,
    needs_vrf=True,
    matrix=True,
    short="VRF",
    label="VRF accuracy (%)",
)
OSE = Kind(
    "ose",
    "the same ensemble with a fixed weight (a calibrated output ensemble, not the paper's OSE)",
    "task",
    needs_text=True,
    needs_head=True,
    needs_vrf=True,
    matrix=True,
    short="OSE",
    label="fixed-weight output ensemble accuracy (%)",
)

# In record order: a stage's records of one dataset come in this order.
KINDS: tuple[Kind, ...] = (LP, LP_VAL, ZS, HEAD, VAL, VRF, OSE)
BY_NAME: dict[str, Kind] = {k.name: k for k in KINDS}
# The kinds with a matrix file (<kind>_matrix.csv), in this order.
MATRIX_KINDS: tuple[str, ...] = tuple(k.name for k in KINDS if k.matrix)
# The kinds a VRF evaluator adds.
VRF_KINDS: tuple[str, ...] = tuple(k.name for k in KINDS if k.needs_vrf)
# The kinds a pretrained-row cache entry holds.
ROW0_KINDS: tuple[str, ...] = tuple(k.name for k in KINDS if k.row0_cache)


def label(kind: str) -> str:
    """The report's axis label of a kind (its name when it has none)."""
    found = BY_NAME.get(kind)
    return found.label if found is not None and found.label else kind
