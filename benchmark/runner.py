"""One benchmark run: sequence -> data -> model -> stream -> trainer + plugins -> run folder."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmark.checkpoint import Checkpoint, capture, plugin_name, restore, resumable
from benchmark.checkpoint_store import CheckpointStore, weights_digest
from benchmark.config import RunConfig, autocast_dtype
from benchmark.cost import Cost, flops_per_image
from benchmark.errors import CFBenchError
from benchmark.evaluation import EvalDataset, MatrixEvaluation
from benchmark.features import FeaturePass
from benchmark.feeding import choose_pipeline, device_loaders, load_data, row0_cache
from benchmark.loss_watch import NonFiniteLossError
from benchmark.model import CosineHead, Encoder, MultiTaskClassifier, build_encoder, image_size
from benchmark.results import RunResults, print_summary, run_dir
from benchmark.streams import build_stream
from benchmark.trainer import Trainer, default_workers, resolve_device
from strategies import StrategyContext, resolve
from strategies.lp_ft import LPInitPlugin
from tasks import SequenceSpec, TaskData


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def choose_head_init(cfg: RunConfig, encoder: Encoder) -> str:
    """``zs`` for models with a text tower, else ``lp``; an explicit choice must be possible."""
    head_init = cfg.head_init or ("zs" if encoder.text is not None else "lp")
    if head_init == "zs" and encoder.text is None:
        raise CFBenchError(
            f"--head-init zs needs a text tower and {cfg.model} has none; use --head-init lp"
        )
    return head_init


def build_heads(encoder: Encoder, tasks: list[TaskData], head_init: str) -> list[CosineHead]:
    """Zero-shot heads from the text tower, or all-zero heads that LPInitPlugin fits per task."""
    if head_init == "zs":
        return [
            CosineHead(encoder.text.class_weights(d.classnames, d.templates).cpu(),
                       scale=encoder.text.logit_scale)
            for d in tasks
        ]  # fmt: skip
    return [CosineHead(torch.zeros(d.num_classes, encoder.embed_dim)) for d in tasks]


def eval_datasets(sequence: SequenceSpec, data: dict[str, TaskData], encoder: Encoder):
    out = []
    for name in list(sequence.tasks) + list(sequence.controls):
        d, is_task = data[name], name in sequence.tasks
        zs = encoder.text.class_weights(d.classnames, d.templates) if encoder.text else None
        out.append(EvalDataset(name, "task" if is_task else "control",
                               sequence.tasks.index(name) if is_task else None, d, zs))  # fmt: skip
    return out


# Settings that change where and how fast a run executes, not its numbers: a resumed run may
# change them. Everything else in config.json must match the checkpoint's run. ("sequence" is
# the name or path as typed; its content is compared as sequence_spec and the resolved settings.
# "strategy_args" are the arguments as typed; they are compared by effect, as strategy_config.)
# "source" only says where to look: the data itself is compared as config.json's "data".
EXECUTION_ONLY = ("out", "device", "data_root", "download", "source", "fresh", "keep_checkpoints",
                  "sequence", "strategy_args", "cache")  # fmt: skip
EXECUTION_ONLY_NESTED = (("train", "workers"), ("train", "micro_batch"), ("train", "compile"),
                         ("probe", "batch_size"))  # fmt: skip


def run_settings(config: dict) -> dict:
    settings = {k: v for k, v in config.items() if k not in EXECUTION_ONLY}
    for group, key in EXECUTION_ONLY_NESTED:
        settings[group] = {k: v for k, v in settings[group].items() if k != key}
    return settings


def run(cfg: RunConfig, sequence: SequenceSpec, log=print) -> Path:
    """Execute one (sequence, strategy, seed) run, or resume it from its latest checkpoint, and
    return its folder."""
    started = time.time()
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    names = list(sequence.tasks) + list(sequence.controls)
    data = load_data(names, cfg, log)  # fail before training
    make_plugins = resolve(cfg.strategy, cfg.strategy_args)
    encoder = build_encoder(cfg.model, cfg.pretrained, cfg.data_root)
    head_init = choose_head_init(cfg, encoder)
    pipeline = choose_pipeline(cfg, encoder, data)
    epochs = [cfg.train.epochs or sequence.task_epochs(t) for t in sequence.tasks]
    config = {**cfg.to_dict(), "strategy_config": make_plugins.settings, "head_init": head_init,
              "pipeline": "device" if pipeline else "pil",
              "precision_used": "bf16" if autocast_dtype(cfg.train.precision, device) else "fp32",
              "initial_weights": weights_digest(encoder.module), "sequence_spec": {
        "name": sequence.name, "tasks": list(sequence.tasks), "controls": list(sequence.controls),
        "epochs": dict(zip(sequence.tasks, epochs, strict=True))},
        "data": {n: d.provenance for n, d in data.items()}}  # fmt: skip
    folder = run_dir(cfg.out, sequence.name, cfg.strategy, cfg.seed)
    store = CheckpointStore(folder, run_settings(config), cfg.keep_checkpoints)
    resume = None if cfg.fresh else store.latest()
    complete = resume is not None and resume.stage == len(sequence.tasks)
    # Built before the run folder is touched, so that a setting it refuses changes nothing there.
    session = None if complete else build_session(
        cfg, sequence, data, encoder, head_init, make_plugins, device, pipeline,
        row0_cache(cfg, config, device),
    )  # fmt: skip
    if cfg.fresh:
        store.clear()
    store.sweep()
    identity = {"sequence": sequence.name, "strategy": cfg.strategy, "seed": cfg.seed}
    results = RunResults(folder, identity, list(sequence.tasks), list(sequence.controls),
                         resume.records if resume else None)  # fmt: skip
    if resume is None:
        results.write_config(config)
    else:  # a kill between a checkpoint and its results files left them a stage behind
        results.write()
    if complete:
        log(f"{folder} is already complete (--fresh runs it again)")
        cost = Cost(device, (resume.cost or {}).get("stages"))
        cost.flops = (resume.cost or {}).get("flops")
    else:
        train_stages(session, epochs, store, results, resume, log, cfg.fresh)
        cost = session.cost
    print_summary(results, log, time.time() - started, cost.summary())
    return folder


@dataclass
class Session:
    """A run's live objects: the model, its strategy plugins, the evaluation, trainer, stream."""

    model: MultiTaskClassifier
    plugins: list  # the strategy's (and LP-init's); checkpointed in this order
    evaluation: MatrixEvaluation
    trainer: Trainer
    stream: object  # Avalanche benchmark with .train_stream
    pending: list[list[dict]]  # records of the stage just evaluated, until committed
    cost: Cost  # images, FLOPs and seconds per stage (metrics.json "cost")


def build_session(cfg, sequence, data, encoder, head_init, make_plugins, device, pipeline,
                  cache) -> Session:  # fmt: skip
    tasks = [data[n] for n in sequence.tasks]
    if encoder.text is not None:
        encoder.text.to(device)
    # On the training device before the plugins are built: their copies (a pretrained anchor,
    # a restored LwF teacher) must live where the model trains.
    model = MultiTaskClassifier(encoder.module, build_heads(encoder, tasks, head_init)).to(device)
    evals = eval_datasets(sequence, data, encoder)
    if encoder.text is not None:
        encoder.text.to("cpu")  # only needed for the heads: free the GPU for training
    pending: list[list[dict]] = []

    def on_stage(stage: int, records: list[dict]) -> None:
        pending.append(records)
        lp = "  ".join(f"{r['dataset']} {r['accuracy']:.1f}" for r in records if r["kind"] == "lp")
        tqdm.write(f"stage {stage} ({records[0]['stage_task']}): LP {lp}")

    cost = Cost(device)
    cost.flops = flops_per_image(encoder.module, image_size(encoder), device)
    features = FeaturePass(device, cfg.probe.batch_size or FeaturePass.default_batch(device),
                           default_workers(cfg.train, device), pipeline,
                           autocast_dtype(cfg.train.precision, device), cost)  # fmt: skip
    context = StrategyContext(model, encoder, device, cfg.train, cfg.probe, tasks, features)
    plugins = make_plugins(context)  # built from the pretrained model, before any restore
    if head_init == "lp" and cfg.strategy != "lp_ft":  # lp_ft initialises the heads itself
        plugins.insert(0, LPInitPlugin(context))
    if cfg.train.compile:  # in place (parameter names stay), after the FLOP count (eager ops)
        encoder.module.compile()  # and the plugins' hooks (compiled at the first forward)
    evaluation = MatrixEvaluation(evals, encoder.eval_transform, cfg.probe, device,
                                  list(sequence.tasks), on_stage, features, cache)  # fmt: skip
    # The evaluation plugin goes last so it sees what every strategy plugin did after a task.
    trainer = Trainer(model=model, cfg=cfg.train, device=device, plugins=[*plugins, evaluation],
                      task_names=list(sequence.tasks))  # fmt: skip
    trainer.cost = cost
    if pipeline is not None:
        trainer.device_loader = device_loaders(tasks, cfg, pipeline, device, trainer)
    stream = build_stream(
        tasks, encoder.train_transform, encoder.eval_transform, cfg.train.max_train_images
    )
    return Session(model, plugins, evaluation, trainer, stream, pending, cost)


def train_stages(
    s: Session,
    epochs: list[int],
    store: CheckpointStore,
    results: RunResults,
    resume: Checkpoint | None,
    log,
    fresh: bool = False,
) -> None:
    """Evaluate stage 0 (or restore the checkpoint), then train and evaluate every task left,
    committing each stage: checkpoint first, then the results files, so the results on disk
    never run ahead of what can be resumed."""

    def commit(stage: int) -> None:
        results.append(s.pending.pop())
        try:
            cost = {"stages": s.cost.close_stage(stage), "flops": s.cost.flops}
            store.save(capture(stage, results.records, s.model, s.plugins, s.trainer, cost))
            done.stage = stage
            results.write()
        except OSError as error:  # e.g. a full disk: checkpoints are model-sized
            raise CFBenchError(
                f"cannot write stage {stage} to {results.folder} ({error.strerror or error}); "
                f"free some space or choose another --out; {done.saved()}"
            ) from None

    tasks = results.tasks
    done = Progress(results.folder, resume.stage if resume else None, tasks, s.trainer,
                    s.evaluation, fresh)  # fmt: skip
    try:
        s.cost.start()
        if resume is None:
            for p in s.plugins:
                if not resumable(p):
                    log(f"note: {plugin_name(p)} has no state_dict(); this run cannot be resumed "
                        "once its first task is finished")  # fmt: skip
            s.evaluation.evaluate(s.model)
            commit(0)
        else:
            restore(resume, s.model, s.plugins, s.trainer, f"checkpoint {store.path(resume.stage)}")
            s.evaluation.next_stage = resume.stage + 1
            s.cost.stages = list((resume.cost or {}).get("stages", []))
            results.note_resume(resume.stage, {
                "device": str(s.trainer.device), "workers": s.trainer.workers,
                "micro_batch": s.trainer.cfg.micro_batch,
                "eval_batch_size": s.evaluation.batch_size})  # fmt: skip
            log(f"resuming {results.folder} after stage {resume.stage} "
                f"({len(tasks) - resume.stage} of {len(tasks)} tasks left)")  # fmt: skip
        for t in range(done.stage, len(tasks)):
            s.trainer.train_task(s.stream.train_stream[t], epochs[t])
            commit(t + 1)
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: main() prints this and exits 130/143
        raise type(stop)(f"{done.saved()}; {done.rerun()} to resume") from None
    except NonFiniteLossError as error:
        raise CFBenchError(f"{error}; {done.saved()}") from None
    except torch.cuda.OutOfMemoryError:
        raise CFBenchError(done.out_of_memory()) from None


@dataclass
class Progress:
    """Where a run is, for the messages of an interrupted or failed run."""

    folder: Path
    stage: int | None  # the last stage saved, None before stage 0 is
    tasks: list[str]
    trainer: Trainer
    evaluation: MatrixEvaluation
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

    def out_of_memory(self) -> str:
        task = self.tasks[self.stage or 0]
        if self.evaluation.busy or self.trainer.phase == "preparing":
            what = (
                f"evaluating stage {self.evaluation.next_stage}"
                if self.evaluation.busy
                else f"preparing task '{task}' (e.g. the feature pass of its LP-init probe)"
            )
            half = max(1, self.evaluation.batch_size // 2)
            return (f"GPU out of memory while {what}; {self.rerun()} with --eval-batch-size "
                    f"{half}, which resumes ({self.saved()})")  # fmt: skip
        b, micro = self.trainer.cfg.batch_size, self.trainer.cfg.micro_batch
        what = "training" if self.trainer.phase == "training" else "finishing"
        where = f"while {what} task '{task}'"
        if self.trainer.batch_statistics():  # micro-batches would change the batch norms
            return (f"GPU out of memory {where} at batch size {b}; a smaller --batch-size "
                    f"(e.g. {max(1, b // 2)}) changes the protocol, so rerun with it and --fresh "
                    f"or another --out ({self.saved()})")  # fmt: skip
        per_pass = min(micro or b, b)
        if per_pass == 1:
            return (f"GPU out of memory {where} with one image per pass: the model does not fit "
                    f"in the GPU's free memory (nvidia-smi shows what else uses it) "
                    f"({self.saved()})")  # fmt: skip
        return (f"GPU out of memory {where} at {per_pass} images per pass; {self.rerun()} "
                f"with --micro-batch {per_pass // 2}: it resumes, and still updates on "
                f"batches of {b} ({self.saved()})")  # fmt: skip
