"""The commands of ``run_benchmark.py``: one module each, all of one shape.

A command module has ``build_parser() -> argparse.ArgumentParser`` (its options and their help)
and ``run(args) -> int`` (the work, returning the exit code). ``main`` (run_benchmark.py's, the
console script's) picks the module by the first word of the command line (``NAMES``; none of
them: ``run``, the default command), parses the rest, calls ``run`` and turns a CFBenchError into
one line on stderr and exit 2. A
command whose arguments are not all its parser's also has ``parse_args(argv) -> Namespace``:
grid and select pass the options they do not know to every run (``args.run_options``), data
takes its dataset names between its options.

A command module imports only light modules at its top (argparse, benchmark.errors,
strategies.NAMES, ...), so that its ``--help`` does not load torch (tests/test_help.py); its
``run`` imports the implementation.

- run.py: the default command, its parser assembled from run_options.py; launch.py turns its
  arguments into run configurations (``build_configs``) and runs them (``run_all``).
- cells.py: the runs of a grid (grid and select): checked, then run here or on Ray.
- report.py, data.py, grid.py, select.py, soup.py, merge.py, perf.py: the other commands.
- options.py: the options several commands share.
"""

from __future__ import annotations

import importlib
import sys

from benchmark.errors import CFBenchError, print_user_error

NAMES = ("report", "data", "grid", "select", "soup", "merge", "perf")


def main(argv: list[str] | None = None) -> int:
    """The command named by the first word (benchmark/commands/NAME.py; none: run.py) on the
    rest of ``argv``; its exit code. A CFBenchError is one line on stderr and exit 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    name = argv[0] if argv[:1] and argv[0] in NAMES else "run"
    command = importlib.import_module(f"benchmark.commands.{name}")
    args = parse(command, argv[1:] if name != "run" else argv)
    try:
        return command.run(args)
    except CFBenchError as error:
        return print_user_error(error, args.debug)


def parse(module, argv: list[str]):
    """A command's arguments: its own ``parse_args`` where it has one, else its parser's."""
    own = getattr(module, "parse_args", None)
    return own(argv) if own is not None else module.build_parser().parse_args(argv)
