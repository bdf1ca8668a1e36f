"""One perf part of ``run_benchmark.py perf --gpu-check``, run in a process of its own so the
check can stop it at its time cap and a compiled encoder leaves nothing behind in the next part.

It measures what ``perf`` measures (benchmark/perf/measure.py, on the same Bench) that the check
reports: training images/s of FT and LDIFS through the trainer, feature extraction and the device
pipeline per resolution, and (``--probes``) the probe's seconds per dataset, which the projected
wall time needs. The most telling figures come first (FT, then extraction at every resolution,
then LDIFS, at the first task's resolution), and the JSON is rewritten after each measurement:
a part stopped at its cap keeps what it had measured.

    python -m benchmark.perf.gpu_check_part --config '{"compile": true}' --out part.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from benchmark.errors import CFBenchError, print_user_error
from benchmark.io import write_atomic
from benchmark.perf.measure import eval_rate, pipeline_rate, trainer_rate
from benchmark.perf.plan import DatasetShape
from benchmark.perf.run import STRATEGIES, PerfConfig, header, setup, synthetic_buffers, validate


def job_order(plan: list[DatasetShape], pipeline: bool) -> list[tuple[str, str]]:
    """(kind, resolution) in the order measured: FT at the first task's resolution, extraction
    (and the pipeline, when ``pipeline``) at every resolution, LDIFS at the first task's, then
    FT and LDIFS at the other task resolutions."""
    resolutions = list(dict.fromkeys(d.resolution for d in plan))
    tasks = list(dict.fromkeys(d.resolution for d in plan if d.role == "task"))
    first = tasks[0]
    jobs = [("ft", first), *(("eval", r) for r in resolutions)]
    if pipeline:
        jobs += [("pipeline", r) for r in resolutions]
    jobs.append(("ldifs", first))
    return jobs + [(s, r) for s in STRATEGIES for r in tasks[1:]]


def measure_part(cfg: PerfConfig, path: Path, probes: bool, strategies, log=print) -> dict:
    """Every job of ``job_order`` (the pipeline only without compiling: it is not compiled),
    then the probes when ``probes``; ``path`` is rewritten after each."""
    import torch

    validate(cfg)
    started = time.perf_counter()
    cfg, plan, bench = setup(cfg, strategies)
    out = {
        **header(cfg, bench, plan),
        "pipeline": {},
        "eval": {},
        "train": {s: {} for s in STRATEGIES},
        "job_seconds": [],  # each job's wall time, warm-up (and compilation) included
        "complete": False,
    }

    def save() -> None:
        out["seconds"] = time.perf_counter() - started
        write_atomic(path, json.dumps(out, indent=1))

    save()
    if cfg.compile:  # in place, as a run does
        bench.encoder.module.compile()
        bench.compiled = True
    task_of = {}
    for d in plan:
        if d.role == "task":
            task_of.setdefault(d.resolution, d)
    images = synthetic_buffers(plan)
    for kind, res in job_order(plan, pipeline=not cfg.compile):
        begin = time.perf_counter()
        if kind == "pipeline":
            out["pipeline"][res] = pipeline_rate(bench, images[res])
        elif kind == "eval":
            out["eval"][res] = eval_rate(bench, images[res], cfg.eval_batch_size)
        else:
            classes = task_of[res].num_classes
            out["train"][kind][res] = trainer_rate(bench, kind, images[res], classes)
        seconds = time.perf_counter() - begin
        out["job_seconds"].append({"job": kind, "resolution": res, "seconds": seconds})
        log(f"{kind} {res}: {seconds:.1f} s", flush=True)
        save()
    if probes:
        from benchmark.perf.probes import probe_runs

        probe, per_dataset = probe_runs(plan, bench.encoder.embed_dim, bench.device)
        out["probe"] = {"settings": asdict(probe), "datasets": per_dataset}
        log("probes done", flush=True)
    out["complete"] = True
    save()
    del bench
    if cfg.compile:
        torch._dynamo.reset()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.perf.gpu_check_part")
    p.add_argument("--config", required=True, help="PerfConfig fields as a JSON object")
    p.add_argument("--out", required=True, help="JSON file, rewritten after every measurement")
    p.add_argument("--probes", action="store_true", help="also time the probe per dataset")
    args = p.parse_args(argv)
    from strategies import STRATEGIES as registry

    try:
        cfg = PerfConfig(**json.loads(args.config))
        measure_part(cfg, Path(args.out), args.probes, registry)
    except (CFBenchError, TypeError, ValueError) as error:
        return print_user_error(error, False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
