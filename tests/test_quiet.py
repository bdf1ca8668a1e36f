"""A normal run says nothing on stderr: no third-party warning reaches the user (progress bars,
which tqdm writes to stderr, are switched off with TQDM_DISABLE=1 here)."""

import os
import pkgutil
import subprocess
import sys

from tests.conftest import ROOT

PACKAGES = ("benchmark", "strategies", "tasks")


def _project_modules() -> list[str]:
    names = ["run_benchmark"]
    for package in PACKAGES:
        names.append(package)
        for info in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
            names.append(info.name)
    return names


def _python(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "TQDM_DISABLE": "1"}
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_every_project_module_imports_without_a_word_on_stderr():
    modules = _project_modules()
    assert len(modules) > 30 and "benchmark.runner" in modules and "strategies.ewc" in modules
    code = f"import importlib\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
    proc = _python("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_a_smoke_run_writes_nothing_to_stderr(tmp_path):
    proc = _python(
        str(ROOT / "run_benchmark.py"),
        "--sequence",
        "smoke",
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "run folder:" in proc.stdout
