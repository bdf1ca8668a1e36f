"""A grid is data: sequences x strategies x seeds x strategy-argument values -> one cell per run.

A grid comes from a YAML file and/or the command line::

    sequences: [smoke]                 # --sequence smoke
    strategies: [ft, ldifs]            # --strategy ft ldifs
    seeds: [0, 1, 2]                   # --seeds 0 1 2
    grid:                              # --grid ldifs.lam=1,10,100
      ldifs.lam: [1, 10, 100]
    options:                           # run options, as on the command line without "--"
      epochs: 1
      out: results/grid

Every cell is the argument list of one ordinary run (``run_benchmark.py ARGS``), so a cell runs,
resumes and fails exactly as that command would. A strategy argument that takes several values in
the grid is part of the cell's run name (``ldifs@lam=10``), which names its folder and its rows in
the report, so cells never share a folder.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmark.errors import CFBenchError

GRID_KEYS = ("sequences", "strategies", "seeds", "grid", "options")


@dataclass(frozen=True)
class Cell:
    """One run of a grid."""

    sequence: str
    strategy: str
    seed: int
    args: Mapping[str, Any] = field(default_factory=dict)  # the grid's values for this strategy
    name: str = ""  # run name: the strategy, plus the arguments that vary within the grid
    options: tuple[str, ...] = ()  # the run options shared by every cell, as argv
    env: Mapping[str, str] = field(default_factory=dict)  # extra environment for its worker

    @property
    def label(self) -> str:
        return f"{self.sequence}/{self.name or self.strategy}/seed{self.seed}"

    def argv(self) -> list[str]:
        """The run command's arguments for this cell."""
        out = ["--sequence", self.sequence, "--strategy", self.strategy, "--seed", str(self.seed)]
        for key, value in self.args.items():
            out += ["--strategy-arg", f"{key}={_text(value)}"]
        if self.name and self.name != self.strategy:
            out += ["--run-name", self.name]
        return out + list(self.options)


@dataclass(frozen=True)
class GridSpec:
    sequences: tuple[str, ...]
    strategies: tuple[str, ...]
    seeds: tuple[int, ...]
    # strategy -> argument -> the values it takes
    values: Mapping[str, Mapping[str, tuple]] = field(default_factory=dict)
    options: tuple[str, ...] = ()

    def cells(self) -> list[Cell]:
        """Every cell, in order: sequence, strategy, argument values, seed."""
        out = []
        for sequence, strategy in itertools.product(self.sequences, self.strategies):
            grid = self.values.get(strategy, {})
            keys = list(grid)
            varying = [k for k in keys if len(grid[k]) > 1]
            for combo in itertools.product(*(grid[k] for k in keys)):
                args = dict(zip(keys, combo, strict=True))
                name = run_name(strategy, {k: args[k] for k in varying})
                for seed in self.seeds:
                    out.append(Cell(sequence, strategy, seed, args, name, self.options))
        return out


def run_name(strategy: str, varying: Mapping[str, Any]) -> str:
    """``strategy``, or ``strategy@key=value,...`` for the arguments that vary within the grid."""
    if not varying:
        return strategy
    return strategy + "@" + ",".join(f"{k}={_text(v)}" for k, v in varying.items())


def _text(value: Any) -> str:
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


def parse_values(items: Sequence[str]) -> dict[str, dict[str, tuple]]:
    """``--grid STRATEGY.KEY=V1,V2`` items -> {strategy: {key: values}} (values YAML-typed)."""
    out: dict[str, dict[str, tuple]] = {}
    for item in items:
        target, sep, text = item.partition("=")
        strategy, dot, key = target.partition(".")
        if not sep or not dot or not strategy or not key or not text:
            raise CFBenchError(f"--grid '{item}' is not STRATEGY.KEY=V1,V2 (e.g. ldifs.lam=1,10)")
        values = tuple(yaml.safe_load(v) for v in text.split(","))
        out.setdefault(strategy, {})[key] = values
    return out


def load_grid_file(path: Path) -> dict[str, Any]:
    """A grid YAML file's fields (see the module docstring); CFBenchError on a bad file."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise CFBenchError(f"cannot read grid file {path}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise CFBenchError(f"grid file {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise CFBenchError(f"grid file {path} must be a mapping with keys {', '.join(GRID_KEYS)}")
    unknown = sorted(set(data) - set(GRID_KEYS))
    if unknown:
        raise CFBenchError(
            f"grid file {path}: unknown keys {', '.join(unknown)}; valid keys: "
            f"{', '.join(GRID_KEYS)}"
        )
    grid = data.get("grid") or {}
    if not isinstance(grid, dict):
        raise CFBenchError(f"grid file {path}: 'grid' must map STRATEGY.KEY to a list of values")
    items = []
    for target, values in grid.items():
        values = values if isinstance(values, list) else [values]
        items.append(f"{target}=" + ",".join(_text(v) for v in values))
    data["grid"] = parse_values(items)
    return data


def options_argv(options: Mapping[str, Any]) -> tuple[str, ...]:
    """YAML ``options`` (run option name -> value) as command-line arguments."""
    out: list[str] = []
    for key, value in options.items():
        flag = "--" + str(key).replace("_", "-")
        if value is True:
            out.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, list):
            out += [flag, *(str(v) for v in value)]
        else:
            out += [flag, str(value)]
    return tuple(out)


def build_grid(
    file: dict[str, Any] | None, sequences, strategies, seeds, values, extra, registered=()
) -> GridSpec:
    """The grid from a file's fields and the command line (the command line's axes replace the
    file's; its run options come after the file's, so they win). A strategy ``all`` stands for
    every name in ``registered``."""
    file = file or {}
    seqs = tuple(sequences or file.get("sequences") or ())
    named = strategies or file.get("strategies") or ()
    strats = tuple(dict.fromkeys(n for s in named for n in (registered if s == "all" else [s])))
    seed_list = tuple(int(s) for s in (seeds or file.get("seeds") or (0,)))
    if not seqs:
        raise CFBenchError("the grid has no sequence: give --sequence NAME ... or 'sequences:'")
    if not strats:
        raise CFBenchError("the grid has no strategy: give --strategy NAME ... or 'strategies:'")
    # the file's values of strategies the command line left out do not apply
    merged = {s: dict(v) for s, v in (file.get("grid") or {}).items() if s in strats}
    for strategy, keys in (values or {}).items():
        merged.setdefault(strategy, {}).update(keys)
    stray = sorted(set(merged) - set(strats))
    if stray:
        raise CFBenchError(
            f"--grid names {', '.join(stray)}, which the grid does not run; "
            f"add it to --strategy or drop its values"
        )
    options = options_argv(file.get("options") or {}) + tuple(extra)
    return GridSpec(seqs, strats, seed_list, merged, options)
