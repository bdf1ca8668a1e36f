"""One benchmark run, as the data flows (docs/design.md section 2):

prepare (data, encoder, config) -> build the session once ->
evaluate stage 0 (or restore the latest checkpoint) ->
for each task left: train, evaluate, commit (checkpoint first, then the results files).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from benchmark.checkpoint.state import Checkpoint, capture, plugin_name, restore, resumable
from benchmark.checkpoint.store import CheckpointStore
from benchmark.config import RunConfig
from benchmark.cost import Cost
from benchmark.errors import CFBenchError
from benchmark.kinds import LP
from benchmark.loss_watch import NonFiniteLossError
from benchmark.phases import OutOfMemory
from benchmark.results import RunResults, print_summary, run_dir
from benchmark.rng import seed_everything
from benchmark.row0_cache import Row0Cache
from benchmark.session import Session, build_session, config_json, prepare, run_settings
from benchmark.strategy_api import Resolved
from tasks import SequenceSpec


def run(cfg: RunConfig, sequence: SequenceSpec, strategy: Resolved, log=print) -> Path:
    """Execute one (sequence, strategy, seed) run, or resume it from its latest checkpoint, and
    return its folder. ``strategy``: ``strategies.resolve(cfg.strategy, cfg.strategy_args)``."""
    started = time.time()
    seed_everything(cfg.seed)
    setup = prepare(cfg, sequence, strategy, log)
    folder = run_dir(cfg.out, sequence.name, cfg.name, cfg.seed)
    store = CheckpointStore(folder, run_settings(setup.config), cfg.keep_checkpoints)
    resume = None if cfg.fresh else store.latest()
    complete = resume is not None and resume.stage == len(sequence.tasks)
    # Built before the run folder is touched, so that a setting it refuses changes nothing there.
    cache = Row0Cache.for_run(cfg, setup.initial_weights, setup.device)
    session = None if complete else build_session(setup, cache)
    if cfg.fresh:
        store.clear()
    store.sweep()
    identity = {"sequence": sequence.name, "strategy": cfg.name, "seed": cfg.seed}
    results = RunResults(
        folder,
        identity,
        list(sequence.tasks),
        list(sequence.controls),
        resume.records if resume else None,
        setup.test_images,
    )
    if resume is None:  # written from the typed values, never read back
        results.write_config(config_json(setup, session.details))
    else:  # a kill between a checkpoint and its results files left them a stage behind
        results.write()
    if complete:
        log(f"{folder} is already complete (--fresh runs it again)")
        cost = Cost(
            setup.device, (resume.cost or {}).get("stages"), (resume.cost or {}).get("flops")
        )
    else:
        Stages(session, store, results, log, Progress(folder, fresh=cfg.fresh)).run(
            resume, setup.epochs
        )
        cost = session.cost
    print_summary(results, log, time.time() - started, cost.summary())
    return folder


@dataclass
class Progress:
    """Where a run is, for the messages of an interrupted or failed run."""

    folder: Path
    stage: int | None = None  # the last stage saved, None before stage 0 is
    fresh: bool = False  # the command has --fresh: resuming means running it without

    def saved(self) -> str:
        if self.stage is None:
            return "no stage was finished"
        if self.stage == 0:
            return f"stage 0 (the pretrained model) is saved in {self.folder}"
        return f"stages 0-{self.stage} are saved in {self.folder}"

    def rerun(self) -> str:
        """How to resume: the same command, but never with --fresh (it would delete the run)."""
        return "run the same command (without --fresh)" if self.fresh else "run the same command"


@dataclass
class Stages:
    """Stage 0, then every task left, each committed before the next starts."""

    s: Session
    store: CheckpointStore
    results: RunResults
    log: object  # print-like
    progress: Progress

    def run(self, resume: Checkpoint | None, epochs: list[int]) -> None:
        s, done = self.s, self.progress
        done.stage = resume.stage if resume else None
        try:
            first = self.restore(resume) if resume else self.start()
            for t in range(first, len(epochs)):
                s.trainer.train_task(s.stream.train_stream[t], epochs[t])
                self.commit(t + 1, s.evaluation.evaluate(s.model, t + 1))
        except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: main() prints this and exits 130/143
            raise type(stop)(f"{done.saved()}; {done.rerun()} to resume") from None
        except NonFiniteLossError as error:
            raise CFBenchError(f"{error}; {done.saved()}") from None
        except OutOfMemory as oom:
            raise CFBenchError(
                f"GPU out of memory while {oom.hint(done.rerun())} ({done.saved()})"
            ) from None
        except torch.cuda.OutOfMemoryError:  # outside every phase (e.g. restoring a checkpoint)
            raise CFBenchError(
                f"GPU out of memory; free the GPU (nvidia-smi shows what uses it) "
                f"and {done.rerun()} ({done.saved()})"
            ) from None

    def start(self) -> int:
        """Evaluate and commit stage 0; the first task to train is then task 0."""
        for p in self.s.plugins:
            if not resumable(p):
                self.log(
                    f"note: {plugin_name(p)} has no state_dict(); this run cannot be resumed "
                    "once its first task is finished"
                )
        self.commit(0, self.s.evaluation.evaluate(self.s.model, 0))
        return 0

    def restore(self, resume: Checkpoint) -> int:
        """Load the checkpoint into the session; the first task to train is the next one."""
        s, tasks = self.s, self.results.tasks
        restore(
            resume, s.model, s.plugins, s.trainer, f"checkpoint {self.store.path(resume.stage)}"
        )
        s.cost.stages = list((resume.cost or {}).get("stages", []))
        self.results.note_resume(
            resume.stage,
            {
                "device": str(s.trainer.device),
                "workers": s.trainer.workers,
                "micro_batch": s.trainer.cfg.micro_batch,
                "eval_batch_size": s.evaluation.batch_size,
            },
        )
        self.log(
            f"resuming {self.results.folder} after stage {resume.stage} "
            f"({len(tasks) - resume.stage} of {len(tasks)} tasks left)"
        )
        return resume.stage

    def commit(self, stage: int, records: list[dict]) -> None:
        """Checkpoint first, then the results files, so that the results on disk never run
        ahead of what can be resumed."""
        lp = "  ".join(
            f"{r['dataset']} {r['accuracy']:.1f}" for r in records if r["kind"] == LP.name
        )
        tqdm.write(f"stage {stage} ({records[0]['stage_task']}): LP {lp}")
        s, results = self.s, self.results
        results.append(records)
        try:
            cost = {"stages": s.cost.close_stage(stage), "flops": s.cost.flops}
            self.store.save(capture(stage, results.records, s.model, s.plugins, s.trainer, cost))
            self.progress.stage = stage
            results.write()
        except OSError as error:  # e.g. a full disk: checkpoints are model-sized
            raise CFBenchError(
                f"cannot write stage {stage} to {results.folder} ({error.strerror or error}); "
                f"free some space or choose another --out; {self.progress.saved()}"
            ) from None
