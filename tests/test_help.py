"""``--help`` answers without importing the heavy libraries (torch, Avalanche, peft, pandas, ...):
each command's help is built from light modules, and the strategy names the run command lists
come from ``strategies.NAMES``, which must agree with the registry."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT

HEAVY = ("torch", "avalanche", "peft", "transformers", "pandas", "open_clip", "datasets", "ray")
COMMANDS = ["", "report", "data", "grid", "soup", "merge", "select", "perf"]

PROBE = """
import sys
sys.argv = ["run_benchmark.py", *{argv!r}]
import run_benchmark
try:
    run_benchmark.main()
except SystemExit as done:
    assert done.code == 0, done.code
print(sorted(m for m in {heavy!r} if m in sys.modules))
"""


@pytest.mark.parametrize("command", COMMANDS)
def test_help_imports_no_heavy_library(command):
    argv = [command, "--help"] if command else ["--help"]
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "usage: run_benchmark.py" in out
    assert out.strip().splitlines()[-1] == "[]", f"{command or 'run'} --help imported {out[-200:]}"


def test_the_light_strategy_names_are_the_registry():
    from strategies import NAMES, STRATEGIES

    assert NAMES == tuple(STRATEGIES)
