"""ZSCL: Zheng, Ma, Wang, Qin, Yue & You, "Preventing Zero-Shot Transfer Degradation in Continual
Learning of Vision-Language Models", ICCV 2023, arXiv:2303.06628 (official code:
github.com/Thunderbeee/ZSCL, ``mtil/src/models/finetune.py``).

Every step adds distillation toward the frozen *pretrained* encoder on a batch of a *reference*
dataset (images x_r, never a task's), and the task's weights are averaged while it trains:

    loss = CE + image_loss * KL_img + text_loss * KL_txt + feature_loss * MSE
              + l2 * ||theta - theta_s||^2

    z  = s * norm(f(x_r)) . norm(t)^T,   z0 = s * norm(f0(x_r)) . norm(t)^T      [B_ref, K]
    KL_img = T^2 mean_rows KL(softmax(z0 / T) || softmax(z / T))  (each image over the K texts)
    KL_txt = the same on z0^T, z^T                         (each text over the B_ref images)
    MSE    = mean (norm f(x_r) - norm f0(x_r))^2

f0 = the pretrained encoder (eval mode, no gradients), t = the reference texts' embeddings from the
frozen text tower (here: the reference dataset's zero-shot class vectors, the mean over its
prompt templates), s = CLIP's logit scale, theta_s = the model at the task's start. Weight
ensemble (the paper's "WE"): after optimiser step k of a task (k = 0, 1, ...), whenever
k % avg_freq == 0, the running mean of the start-of-task model and these snapshots is updated,
avg <- (avg * n + theta) / (n + 1); at the task's end the model (encoder and heads, the whole
classifier, as the official code averages the whole CLIP) is replaced by the average.

Defaults are those of the official ``scripts/ZSCL.sh`` and ``src/args.py``: ``--image_loss
--text_loss`` (weight 1 each), ``--T 2``, ``--we --avg_freq 100``, ``--l2 1``, reference batch =
the training batch (the reference loader is built with ``--batch-size``); ``--feature_mse`` is
off there, so the feature term is 0 with a text tower. Without one (the offline ResNet-20) no
logits exist: the feature term (weight 1, the official MSE) is the distillation, said in one log
line and in config.json ``strategy_details``.

Reference data (``ref_dataset``): any dataset the registry knows (``tasks.get_task``). The paper
uses ImageNet images and Conceptual Captions texts; cfbench uses the dataset's train images and its
class prompts as texts (no caption set is in the registry). ``auto`` takes the first of
``AUTO_REFERENCES`` that is neither a task nor a control of the run and is on disk (ImageNet, the
paper's; USPS, which ../shared/data holds for the offline sequence; the generated synth_control,
for the tiny test sequences), else the run's first control, with a note that it leaks into that
control's evaluation. Reference images go through the eval transform (the official code loads them
with the test preprocessing) and are drawn without replacement from a fixed subset
(``ref_images``, seed 0), reshuffled every pass (seed = pass number): a run resumes on the same
batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from benchmark.cost import timed
from benchmark.errors import CFBenchError, DatasetMissingError
from benchmark.plugin import StrategyPlugin
from benchmark.probe.features import Transformed
from strategies.anchors import frozen_copy
from strategies.common import check_weight
from strategies.penalties import feature_mse, l2sp_penalty, weight_average, zscl_distillation

AUTO = "auto"
AUTO_REFERENCES = ("imagenet", "npz:usps", "synth_control")
SUBSET_SEED = 0  # the reference subset is the same for every run and seed, like the val split


@dataclass(frozen=True)
class Config:
    """The official ZSCL.sh settings (module docstring); feature_loss None = 0 with a text tower
    (official: --feature_mse off), 1 without one (the only term left)."""

    ref_dataset: str = AUTO  # a registered dataset name or npz:<stem>; auto: see the docstring
    ref_images: int | None = None  # reference subset size (None: the whole train split)
    ref_batch: int | None = None  # reference images per step (None: the training batch)
    temperature: float = 2.0  # distillation temperature T
    image_loss: float = 1.0  # weight of KL_img
    text_loss: float = 1.0  # weight of KL_txt
    feature_loss: float | None = None  # weight of the feature MSE (None: see above)
    l2: float = 1.0  # weight of sum ||theta - theta_start||^2 (encoder and heads)
    we: bool = True  # weight ensemble during training
    avg_freq: int = 100  # optimiser steps between weight-ensemble snapshots

    def __post_init__(self):
        if not isinstance(self.ref_dataset, str) or not self.ref_dataset.strip():
            raise ValueError(
                f"ref_dataset must name a dataset or be auto, got {self.ref_dataset!r}"
            )
        for name in ("ref_images", "ref_batch"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 (or none for the default), got {value}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature}")
        for name in ("image_loss", "text_loss", "l2"):
            check_weight(name, getattr(self, name))
        if self.feature_loss is not None:
            check_weight("feature_loss", self.feature_loss)
        if not isinstance(self.we, bool):
            raise ValueError(f"we must be true or false, got {self.we!r}")
        if self.avg_freq < 1:
            raise ValueError(f"avg_freq must be >= 1 (optimiser steps), got {self.avg_freq}")


def load_reference(config: Config, context) -> tuple[object, str]:
    """The reference TaskData and a note on how it was chosen (module docstring)."""

    def load(name: str, **kwargs):
        if context.load_dataset is not None:
            return context.load_dataset(name, **kwargs)
        from benchmark.config import default_data_root
        from tasks import load_task

        return load_task(name, default_data_root(), **{"download": False, **kwargs})

    if config.ref_dataset != AUTO:
        return load(config.ref_dataset), "named"
    used = {d.name for d in (*context.tasks, *context.controls)}
    for name in (n for n in AUTO_REFERENCES if n not in used):
        try:
            return load(name, download=False), "auto: neither a task nor a control"
        except DatasetMissingError:
            continue
    if context.controls:
        return context.controls[0], "auto: the run's first control (it leaks into its evaluation)"
    raise CFBenchError(
        f"zscl: no reference dataset for ref_dataset=auto (tried {', '.join(AUTO_REFERENCES)}); "
        "name one with --strategy-arg ref_dataset=<dataset>"
    )


class ReferenceBatches:
    """Batches of ``size`` indices into a fixed subset, without replacement within a pass over
    it, each pass in the order of a permutation seeded with the pass number: batch ``step`` is a
    pure function of ``step`` (a resumed run draws the same batches)."""

    def __init__(self, subset: torch.Tensor, size: int):
        self.subset, self.size = subset, size
        self._orders: dict[int, torch.Tensor] = {}

    def indices(self, step: int) -> torch.Tensor:
        n = len(self.subset)
        positions = torch.arange(step * self.size, (step + 1) * self.size)
        out = torch.empty(self.size, dtype=torch.long)
        for p in positions.div(n, rounding_mode="floor").unique().tolist():
            if p not in self._orders:
                self._orders = {p: torch.randperm(n, generator=torch.Generator().manual_seed(p))}
            here = positions.div(n, rounding_mode="floor") == p
            out[here] = self.subset[self._orders[p][positions[here] % n]]
        return out


class ZSCLPlugin(StrategyPlugin):
    reference_forwards = 0  # counted per reference image in after_training_iteration

    def __init__(self, context, config: Config, reference, texts: torch.Tensor | None):
        super().__init__()
        self.config, self.model = config, context.model
        self.teacher = frozen_copy(context.model.encoder)  # built before training: pretrained
        self.texts = None if texts is None else texts.to(context.device)
        self.scale = context.encoder.text.logit_scale if texts is not None else 1.0
        self.feature_weight = config.feature_loss
        if self.feature_weight is None:
            self.feature_weight = 0.0 if texts is not None else 1.0
        self.images = Transformed(reference.train, context.encoder.eval_transform)
        n = len(reference.train)
        generator = torch.Generator().manual_seed(SUBSET_SEED)
        subset = torch.randperm(n, generator=generator)[: config.ref_images].sort().values
        size = config.ref_batch or context.train.batch_size
        self.batches = ReferenceBatches(subset, size)
        self.step = 0  # reference batches drawn so far (the whole run)
        self.iteration = 0  # optimiser steps in the current task
        self.start: dict[str, torch.Tensor] | None = None  # the model at the task's start
        self.average: dict[str, torch.Tensor] | None = None  # the weight ensemble
        self.count = 0  # models in the average
        self._pending, self._batch = False, 0
        self.details: dict = {}  # config.json strategy_details (set by build)

    # -- the loss ----------------------------------------------------------------------------
    def before_training_exp(self, strategy, **kwargs):
        self.start = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.average, self.count, self.iteration = dict(self.start), 1, 0

    def before_training_iteration(self, strategy, **kwargs):
        self._pending, self._batch = True, len(strategy.mbatch[0])

    def before_backward(self, strategy, **kwargs):
        """Once per optimiser step (the first micro-batch: its loss is scaled by its share of
        the batch afterwards, so the term is divided by that share here)."""
        if not self._pending:
            return
        self._pending = False
        share = len(strategy.mbatch[0]) / self._batch
        strategy.loss += self.reference_loss(strategy.device) / share

    def reference_loss(self, device: torch.device) -> torch.Tensor:
        index = self.batches.indices(self.step)
        self.step += 1
        x = torch.stack([self.images[i][0] for i in index.tolist()]).to(device)
        with torch.no_grad():
            f0 = self.teacher(x)
        f = self.model.encoder(x)
        cfg, loss = self.config, torch.zeros((), device=device)
        if self.texts is not None and (cfg.image_loss or cfg.text_loss):
            image, text = zscl_distillation(f, f0, self.texts, self.scale, cfg.temperature)
            loss = loss + cfg.image_loss * image + cfg.text_loss * text
        if self.feature_weight:
            loss = loss + self.feature_weight * feature_mse(f, f0)
        if cfg.l2:
            params = [p for k, p in self.model.named_parameters() if p.requires_grad]
            anchor = [self.start[k] for k, p in self.model.named_parameters() if p.requires_grad]
            loss = loss + cfg.l2 * l2sp_penalty(params, anchor)
        return loss

    # -- the weight ensemble and the cost ----------------------------------------------------
    def after_training_iteration(self, strategy, **kwargs):
        cost = getattr(strategy, "cost", None)
        if cost is not None:  # the student trains on the reference batch, the teacher encodes it
            cost.count("images_trained", self.batches.size)
            cost.count("reference_forwards", self.batches.size)
        if self.config.we and self.iteration % self.config.avg_freq == 0:
            self.average = weight_average(self.average, self.model.state_dict(), self.count)
            self.count += 1
        self.iteration += 1

    @torch.no_grad()
    def after_training_exp(self, strategy, **kwargs):
        if self.config.we:
            self.model.load_state_dict(self.average)
        self.start, self.average, self.count, self.iteration = None, None, 0, 0

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The reference subset and batch counter; within a task (checkpoints are taken between
        tasks, where these are empty) also the start-of-task weights and the ensemble."""
        within = self.start is not None
        return {
            "subset": self.batches.subset.clone(),
            "step": self.step,
            "iteration": self.iteration,
            "count": self.count,
            "start": {k: v.cpu() for k, v in self.start.items()} if within else None,
            "average": {k: v.cpu() for k, v in self.average.items()} if within else None,
        }

    def load_state_dict(self, state: dict) -> None:
        self.batches = ReferenceBatches(state["subset"].clone(), self.batches.size)
        self.step, self.iteration, self.count = state["step"], state["iteration"], state["count"]
        device = next(self.model.parameters()).device
        for key in ("start", "average"):
            value = state[key]
            setattr(self, key, value and {k: v.to(device) for k, v in value.items()})

    def config_entries(self) -> dict:
        return {"zscl": self.details}


def build(context, config: Config) -> list:
    reference, how = load_reference(config, context)
    text = context.encoder.text
    texts = None
    if text is not None:
        device = next(text.model.parameters()).device
        cost = getattr(context.features, "cost", None)
        with timed(cost, "text"):  # the reference prompts, counted as the run's own
            text.to(context.device)
            texts = text.class_weights(reference.classnames, reference.templates)
            text.to(device)
        if cost is not None:
            cost.count("prompts_encoded", len(reference.classnames) * len(reference.templates))
    plugin = ZSCLPlugin(context, config, reference, texts)
    terms = (
        f"image-text logits over its {len(reference.classnames)} class prompts"
        if texts is not None
        else "image features only (no text tower: no image-text logits)"
    )
    plugin.details = {
        "reference": reference.name,
        "chosen": how,
        "reference_images": len(plugin.batches.subset),
        "reference_batch": plugin.batches.size,
        "terms": terms,
        "feature_loss": plugin.feature_weight,
    }
    print(f"zscl: reference {reference.name} ({how}), {len(plugin.batches.subset)} images; {terms}")
    return [plugin]
