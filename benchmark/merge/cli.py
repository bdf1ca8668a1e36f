"""Only make.py's import of ``METHOD_NAMES`` (benchmark/merge/__init__.py holds them); the merge
command, its options and their help are benchmark/commands/merge.py."""

from benchmark.merge import METHOD_NAMES

__all__ = ["METHOD_NAMES"]
