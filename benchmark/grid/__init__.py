"""Grids of runs (``run_benchmark.py grid`` and ``select``): the grid as data (spec.py), where its
cells run (executors.py: locally, one after another, or as Ray tasks with retries that resume)
and how select scores them (select.py). The commands and the cells' runs: benchmark/commands/
(grid.py, select.py, cells.py)."""
