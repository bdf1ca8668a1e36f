"""``run_benchmark.py perf``: how fast this machine runs a sequence, with nothing downloaded.

run.py measures and projects (``PerfConfig``, ``run_perf``); plan.py, measure.py and probes.py
hold its parts; gpu_check*.py is ``perf --gpu-check``. The command, its options and their help:
benchmark/commands/perf.py.
"""
