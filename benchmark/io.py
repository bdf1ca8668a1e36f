"""Atomic file writes: a reader (or a crash) never sees a half-written file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from benchmark.checkpoint import faults


def _umask_by_setting() -> int:
    mask = os.umask(0)  # setting it is the portable way to read it (racy with other threads)
    os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _umask_by_setting()


def current_umask() -> int:
    """The process's umask now (Linux: /proc, without changing it); elsewhere as at import."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return _UMASK_AT_IMPORT


def write_atomic(path: Path, content: str | bytes | memoryview) -> None:
    """Write ``content`` to a temporary file beside ``path``, flush it to disk, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; results are shared
        with os.fdopen(fd, "w" if isinstance(content, str) else "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        faults.reached(f"write:{path.name}")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
