"""The one training loop: a subclass of Avalanche's SupervisedTemplate.

Adds what the protocol needs and Avalanche lacks: a fresh AdamW state and a warm-up + cosine
schedule (stepped per iteration) for every task, grad-norm clipping, bf16 autocast on CUDA around
the forward, the criterion and the plugins' loss terms, a finite-loss check, progress bars, and
an out-of-memory hint with the fix that applies (benchmark/phases.py).
Strategies never copy this loop; they add Avalanche plugins.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Sequence

import torch
from avalanche.training.plugins import EvaluationPlugin, SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate
from torch import nn
from tqdm.auto import tqdm

from benchmark.checkpoint import faults
from benchmark.config import TrainConfig, autocast_dtype
from benchmark.cost import Cost
from benchmark.errors import CFBenchError
from benchmark.loss_watch import SYNC_EVERY, LossWatch, NonFiniteLossError
from benchmark.micro_batch import micro_batches
from benchmark.phases import phase
from benchmark.plugin import declared


def warmup_cosine(warmup: int, total: int):
    """LR factor at step s: linear warm-up for ``warmup`` steps, then cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CFBenchError("--device cuda was asked for but torch sees no GPU; use --device cpu")
    return torch.device(name)


def default_workers(cfg: TrainConfig, device: torch.device) -> int:
    """Loader processes: as configured, else none on CPU (the cores train) and up to 8 on GPU."""
    if cfg.workers is not None:
        return cfg.workers
    return 0 if device.type == "cpu" else min(8, os.cpu_count() or 1)


def quiet_evaluator() -> EvaluationPlugin:
    """Avalanche's evaluator with no metrics and no loggers (the matrices are ours, in
    evaluation.py), without its warning that nothing will be logged, which would be a stray
    line on stderr."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No loggers specified")
        return EvaluationPlugin(loggers=[])


class Trainer(SupervisedTemplate):
    """SupervisedTemplate with the fine-tuning protocol of docs/design.md section 3."""

    def __init__(
        self,
        *,
        model: nn.Module,
        cfg: TrainConfig,
        device: torch.device,
        plugins: Sequence[SupervisedPlugin] = (),
        task_names: Sequence[str] = (),
        cost: Cost | None = None,
        device_loader=None,
    ):
        # fused: one kernel for the whole update on CUDA (the same arithmetic as the loop)
        optimizer = torch.optim.AdamW(
            model.parameters(),
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            fused=device.type == "cuda",
        )
        super().__init__(  # keyword-only, as Avalanche asks of its templates
            model=model,
            optimizer=optimizer,
            train_mb_size=cfg.batch_size,
            train_epochs=1,
            eval_mb_size=cfg.batch_size,
            device=device,
            plugins=list(plugins),
            evaluator=quiet_evaluator(),
        )
        self.cfg = cfg
        if cfg.micro_batch and self.batch_statistics():  # also at the batch size: replay
            # batches are larger than it (new and remembered images)
            raise CFBenchError(
                "--micro-batch would change what this model's batch norms see (statistics of "
                "each micro-batch, not the batch); use --batchnorm frozen, or a smaller "
                "--batch-size without --micro-batch"
            )
        self.task_names = list(task_names)
        self.workers = default_workers(cfg, device)
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self._bar = None
        # Task index -> training batches from the prepared store on the device (pipeline.py);
        # None: Avalanche's DataLoader over the PIL transforms.
        self.device_loader = device_loader
        # Autocast dtype of the forward, criterion and plugin losses (None: fp32). A plugin that
        # declares ``fp32_forward`` (LDIFS: its distance must not be bf16 rounding) runs them in
        # fp32 (benchmark/plugin.py).
        wants_fp32 = any(declared(p).fp32_forward for p in self.plugins)
        self.autocast = None if wants_fp32 else autocast_dtype(cfg.precision, device)
        self._loss_watch = LossWatch(device)
        self.cost = cost  # the run's (benchmark/cost.py); None: not counted
        self._epoch_started = 0.0

    def batch_statistics(self) -> bool:
        """True when training normalises with batch statistics (batch norms not frozen)."""
        bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.model.modules())
        return bn and self.cfg.batchnorm == "train"

    # -- task-level setup -------------------------------------------------------------------
    def train_task(self, experience, epochs: int) -> None:
        """Fine-tune on one experience for ``epochs`` epochs (every plugin's before and
        after_training_exp included)."""
        self.train_epochs = epochs
        with phase(self.memory_hint):
            self.train(experience, num_workers=self.workers, persistent_workers=self.workers > 0)

    def memory_hint(self, rerun: str) -> str:
        """What to do when training runs out of GPU memory (benchmark/phases.py)."""
        b, micro = self.cfg.batch_size, self.cfg.micro_batch
        where = f"training task '{self._task_name()}'"
        if self.batch_statistics():  # micro-batches would change the batch norms
            half = max(1, b // 2)
            return (
                f"{where} at batch size {b}; a smaller --batch-size (e.g. {half}) changes "
                "the protocol, so rerun with it and --fresh or another --out"
            )
        per_pass = min(micro or b, b)
        if per_pass == 1:
            return (
                f"{where} with one image per pass: the model does not fit in the GPU's free "
                "memory (nvidia-smi shows what else uses it)"
            )
        return (
            f"{where} at {per_pass} images per pass; {rerun} with --micro-batch "
            f"{per_pass // 2}: it resumes, and still updates on batches of {b}"
        )

    def _unpack_minibatch(self):
        """Images and labels to the device; task labels stay where the loader made them (the
        CPU), so that the model's choice of heads does not wait for the GPU."""
        task_labels = self.mbatch[-1]
        super()._unpack_minibatch()
        self.mbatch[-1] = task_labels

    def make_train_dataloader(self, **kwargs):
        if self.device_loader is None:
            return super().make_train_dataloader(**kwargs)
        self.dataloader = self.device_loader(self.experience.current_experience)

    def make_optimizer(self, **kwargs):
        # Each task starts from fresh AdamW moments, as the papers' per-task scripts do.
        kwargs["reset_optimizer_state"] = True
        super().make_optimizer(**kwargs)

    def _before_training_exp(self, **kwargs):
        super()._before_training_exp(**kwargs)  # plugins (e.g. replay) may replace the dataloader
        total = self.train_epochs * len(self.dataloader)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] = self.cfg.lr
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(self.cfg.warmup_steps, total)
        )

    # -- one optimiser step, optionally over micro-batches -------------------------------------
    def training_epoch(self, **kwargs):
        """Avalanche's SGD iteration; with ``micro_batch`` each batch is split into micro-batches
        that each run forward, criterion, plugin loss terms and backward, their losses scaled by
        their share of the batch, so the summed gradients are those of the whole batch; then one
        optimiser step. Plugins see each micro-batch as ``mbatch``/``mb_output`` while it runs."""
        size = self.cfg.micro_batch
        if not size:
            return super().training_epoch(**kwargs)
        for mbatch in self.dataloader:
            if self._stop_training:
                break
            self.mbatch = mbatch
            self._unpack_minibatch()
            self._before_training_iteration(**kwargs)
            self.optimizer.zero_grad()
            batch = self.mbatch
            total, outputs = 0.0, []
            for self.mbatch, share in micro_batches(batch, size):
                self.loss = self._make_empty_loss()
                self._before_forward(**kwargs)
                self.mb_output = self.forward()
                self._after_forward(**kwargs)
                self.loss += self.criterion()
                self._before_backward(**kwargs)
                self.loss = self.loss * share
                self.backward()
                self._after_backward(**kwargs)
                total, outputs = total + self.loss.detach(), [*outputs, self.mb_output.detach()]
            self.mbatch, self.mb_output, self.loss = batch, torch.cat(outputs), total
            self._before_update(**kwargs)
            self.optimizer_step()
            self._after_update(**kwargs)
            self._after_training_iteration(**kwargs)

    # -- autocast around everything that builds the loss --------------------------------------
    def _autocast(self):
        if self.autocast is not None:
            return torch.autocast(self.device.type, dtype=self.autocast)
        return contextlib.nullcontext()

    def forward(self):
        with self._autocast():
            return super().forward()

    def criterion(self):
        with self._autocast():
            return super().criterion()

    def _before_backward(self, **kwargs):
        with self._autocast():  # plugin losses (LwF, LDIFS) run their forwards here
            super()._before_backward(**kwargs)

    def backward(self):
        if self.is_training:  # on the device: no host synchronisation per step
            self._loss_watch.check(self.loss.detach(), self.clock.train_exp_iterations)
        super().backward()

    def _check_loss(self) -> None:
        """Read the loss watch (a host synchronisation): the progress bar's loss, and the error
        for a loss that was not finite, naming the first such step."""
        last, bad = self._loss_watch.read()
        if bad is not None:
            value, step = bad
            raise NonFiniteLossError(
                f"loss became {value} on task '{self._task_name()}' at step {step}; lower --lr "
                "or the strategy's weight"
            )
        if last is not None and self._bar is not None:
            self._bar.set_postfix(loss=f"{last:.3f}", refresh=False)

    def optimizer_step(self):
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        super().optimizer_step()
        self.scheduler.step()
        faults.reached("train-step")

    # -- progress ---------------------------------------------------------------------------
    def _task_name(self) -> str:
        t = self.clock.train_exp_counter
        return self.task_names[t] if t < len(self.task_names) else f"task {t}"

    def _before_training_epoch(self, **kwargs):
        super()._before_training_epoch(**kwargs)
        if self.cfg.batchnorm == "frozen":
            # Re-applied every epoch: evaluation and probes restore train() on the whole model.
            for m in self.model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        t = self.clock.train_exp_counter
        desc = (
            f"train {t + 1}/{len(self.task_names)} {self._task_name()} "
            f"ep {self.clock.train_exp_epochs + 1}/{self.train_epochs}"
        )
        self._bar = tqdm(
            total=len(self.dataloader), desc=desc, leave=False, dynamic_ncols=True, disable=None
        )
        self._epoch_started = time.perf_counter()

    def _after_training_iteration(self, **kwargs):
        super()._after_training_iteration(**kwargs)
        self._loss_watch.last = self.loss.detach()  # the whole batch's (micro-batches summed)
        if self.cost is not None:
            n = len(self.mbatch[0])
            self.cost.count("images_trained", n)
            # frozen forwards per image that plugins run (LDIFS's reference, LwF's teacher)
            frozen = sum(declared(p).reference_forwards for p in self.plugins)
            self.cost.count("reference_forwards", n * frozen)
        self._bar.update(1)
        if self.clock.train_exp_iterations % SYNC_EVERY == 0:
            self._check_loss()

    def _after_training_epoch(self, **kwargs):
        self._check_loss()  # the epoch's last steps, before anything after it runs
        if self.cost is not None:  # _check_loss synchronised: the epoch's work is done
            self.cost.current["seconds"]["train"] += time.perf_counter() - self._epoch_started
        super()._after_training_epoch(**kwargs)
        self._bar.close()
