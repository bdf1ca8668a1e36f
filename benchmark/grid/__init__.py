"""Grids of runs (``run_benchmark.py grid``): the grid as data (spec.py) and where its cells run
(executors.py: locally, one after another, or as Ray tasks with retries that resume)."""
