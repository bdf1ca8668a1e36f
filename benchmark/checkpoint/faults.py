"""Crash-test hook: ``CFBENCH_KILL_AT=<point>@<n>`` kills this process with SIGKILL the n-th time
it passes ``<point>``.

Points: ``train-step`` (after an optimiser step), ``eval`` (after one dataset of a stage's
evaluation) and ``write:<file name>`` (a results or checkpoint file is fully written to its
temporary name but not yet renamed into place). The resume tests use it to crash a real run at
exact places; unset, it costs one environment lookup. With ``CFBENCH_KILL_ONCE=<file>`` as well,
the kill happens only while that file does not exist (it is created first): a retried process
(a grid's Ray retry) then runs through.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_passes: Counter[str] = Counter()


def reached(point: str) -> None:
    target = os.environ.get("CFBENCH_KILL_AT")
    if not target:
        return
    name, _, count = target.rpartition("@")
    if name != point:
        return
    _passes[point] += 1
    if _passes[point] != int(count):
        return
    once = os.environ.get("CFBENCH_KILL_ONCE")
    if once:
        try:
            open(once, "x").close()
        except FileExistsError:
            return  # killed once already
    os.kill(os.getpid(), signal.SIGKILL)
