"""FLYP: Goyal, Kumar, Garg, Kolter & Raghunathan, "Finetune like you pretrain: Improved
finetuning of zero-shot vision models", CVPR 2023, arXiv:2212.00638 (official code:
locuslab/FLYP, ``src/models/flyp_loss.py``; the LDIFS authors' baseline: omegafragger/ldifs_code,
``finetune_functions.finetune_flyp``).

Fine-tuning with CLIP's own pretraining loss instead of cross-entropy on a head. Each image i of
a batch of n is paired with a prompt of its class, one template drawn uniformly at random per
image and step (``template.format(class name)``, from the task's zero-shot templates), and

    logits = s * norm(f_img) norm(f_txt)^T            (n x n, s = exp(logit_scale))
    loss   = (CE(logits, diag) + CE(logits^T, diag)) / 2,

image i's positive is its own prompt, every other prompt of the batch a negative, even one of
the same class (the official loss is called without labels: ``torch.arange`` targets). The
image tower, the text tower and CLIP's logit scale all train (the official optimiser takes every
parameter of the CLIP model, with one learning rate and weight decay; the LDIFS authors' baseline
passes the scale as a number, so there it stays fixed). The heads are the text
tower's zero-shot classifier: after each task every task's head is rebuilt from the fine-tuned
text tower, s * (mean over templates of the normalised prompt embeddings, renormalised), as the
official evaluation rebuilds its head after each epoch (``get_zeroshot_classifier``); the bias
is 0. The cross-entropy on the heads is not part of the loss.

In cfbench the text tower is the frozen ``TextTower`` outside the trained model (the ``zs``
records and the zero-shot cache must stay pretrained), so this strategy owns a trainable copy of
it (logit scale included) on the training device. For every task the copy joins the trainer's
AdamW as a second parameter group (the run's lr, warm-up + cosine schedule and weight decay), is
clipped with the model in one global gradient norm (the protocol's --grad-clip), and leaves the
optimiser when the task ends, so each task starts from fresh moments for both towers, as the
trainer's per-task AdamW does. The copy's weights are the plugin's ``state_dict`` (checkpoints are
taken between tasks, where there are no optimiser moments to keep). The templates are drawn from
the global torch RNG, which a checkpoint restores.

Differences from the official code: the protocol's optimiser settings (lr, schedule, weight
decay, grad clipping, batch size) instead of FLYP's scripts' (ImageNet: lr 1e-5, wd 0.1, batch
512, 500 warm-up steps, 10 epochs; no grad clipping); a template drawn per image and step,
where the official loader shuffles a CSV of every (image, template) pair and takes an epoch of
as many batches as there are images (each image drawn comes with a uniformly random template
there too, but an epoch may hold an image twice or not at all; here each image once); each
distinct prompt of a batch encoded once (the same features as encoding duplicates, and the
gradients sum alike); prompts encoded up to the batch's longest one where the text layout makes
that exact (benchmark/model/text.py). The heads are always the text tower's: under
``--head-init lp`` the probe heads are replaced after each task. The loss is over the whole
batch, so ``--micro-batch`` (which would split the negatives) is refused. The cost's FLOPs count
the image tower only (the text tower's forward and backward per prompt are not in them).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import CFBenchError
from benchmark.model.text import TextTower, encode_prompts
from benchmark.plugin import StrategyPlugin
from strategies.common import cpu_state, require_text_tower


@dataclass(frozen=True)
class Config:
    """FLYP has no hyper-parameters of its own (the optimiser settings are the run's, for both
    towers)."""


def contrastive_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, scale: torch.Tensor | float
) -> torch.Tensor:
    """CLIP's symmetric cross-entropy, in float32: rows L2-normalised, logits = scale * image .
    text (n x n), row i's target i, the mean of the image-to-text and text-to-image losses."""
    images = F.normalize(image_features.float(), dim=-1)
    texts = F.normalize(text_features.float(), dim=-1)
    scale = scale.float() if isinstance(scale, torch.Tensor) else scale
    logits = scale * images @ texts.T
    target = torch.arange(len(images), device=images.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


class FLYPPlugin(StrategyPlugin):
    """Replaces each step's loss by FLYP's contrastive loss; trains a copy of the text tower."""

    def __init__(
        self, model: nn.Module, text: TextTower, tasks: list, grad_clip: float, device: torch.device
    ):
        super().__init__()
        self.model, self.tasks, self.grad_clip = model, tasks, grad_clip
        self.text = copy.deepcopy(text.model).to(device).requires_grad_(True)
        self.tokenizer = text.tokenizer
        self._tokens: dict[int, torch.Tensor] = {}  # task -> [classes x templates, context]
        self.group: dict | None = None  # the copy's parameter group while a task trains

    def prompts(self, task: int) -> torch.Tensor:
        """Task ``task``'s tokenised prompts, class-major (row c T + j: class c, template j)."""
        if task not in self._tokens:
            data = self.tasks[task]
            texts = [t.format(name) for name in data.classnames for t in data.templates]
            self._tokens[task] = self.tokenizer(texts)
        return self._tokens[task]

    def before_training_exp(self, strategy, **kwargs):
        self.text.train()
        strategy.optimizer.add_param_group({"params": list(self.text.parameters())})
        self.group = strategy.optimizer.param_groups[-1]

    def before_backward(self, strategy, **kwargs):
        x, labels = strategy.mb_x, strategy.mb_y
        features = self.model.training_features(x)  # the training forward's, when it ran
        features = self.model.encoder(x) if features is None else features
        texts = self.text_features(strategy.mb_task_id, labels.cpu(), x.device)
        strategy.loss = contrastive_loss(features, texts, self.text.logit_scale.exp())

    def text_features(self, tasks, labels: torch.Tensor, device: torch.device) -> torch.Tensor:
        """One prompt per image: its class's with a template drawn uniformly at random (global
        torch RNG); each distinct prompt encoded once."""
        tasks = torch.as_tensor(tasks).cpu().expand(len(labels)).tolist()
        counts = torch.tensor([len(self.tasks[t].templates) for t in tasks])
        drawn = (torch.rand(len(labels)) * counts).long().minimum(counts - 1)
        rows = [
            (t, y * c + j)
            for t, y, c, j in zip(
                tasks, labels.tolist(), counts.tolist(), drawn.tolist(), strict=True
            )
        ]
        unique = {row: k for k, row in enumerate(dict.fromkeys(rows))}
        index = torch.tensor([unique[r] for r in rows], device=device)
        tokens = torch.stack([self.prompts(t)[r] for t, r in unique]).to(device)
        return encode_prompts(self.text, tokens)[index]

    def before_update(self, strategy, **kwargs):
        if self.grad_clip > 0:  # one global norm over both towers (the trainer's is then a no-op)
            params = [*strategy.model.parameters(), *self.text.parameters()]
            nn.utils.clip_grad_norm_(params, self.grad_clip)

    def after_training_exp(self, strategy, **kwargs):
        optimizer = strategy.optimizer
        optimizer.param_groups.remove(self.group)  # Avalanche resets single-group optimisers
        for p in self.group["params"]:
            optimizer.state.pop(p, None)
        self.group = None
        self.refresh_heads()

    @torch.no_grad()
    def refresh_heads(self) -> None:
        """Every task's head <- exp(logit_scale) * the fine-tuned text tower's zero-shot class
        weights (TextTower.class_weights on the copy), bias 0."""
        self.text.eval()
        view = SimpleNamespace(model=self.text, tokenizer=self.tokenizer)
        scale = self.text.logit_scale.exp()
        for t, data in enumerate(self.tasks):
            weights = TextTower.class_weights(view, data.classnames, data.templates)
            head = self.model.heads[str(t)]
            head.weight.copy_(scale * weights.to(head.weight))
            head.bias.zero_()

    def state_dict(self) -> dict:
        """The trainable text tower (logit scale included); between tasks it has no optimiser
        state (its parameter group leaves the optimiser with the task)."""
        return {"text": cpu_state(self.text)}

    def load_state_dict(self, state: dict) -> None:
        self.text.load_state_dict(state["text"])


def build(context, config: Config) -> list:
    because = "it contrasts images with their class prompts and its heads are the text tower's"
    require_text_tower(context, "flyp", because)
    train = context.train
    if train.micro_batch and train.micro_batch < train.batch_size:
        raise CFBenchError(
            "strategy flyp cannot use --micro-batch: its contrastive loss pairs every image with "
            "every prompt of the whole batch; drop --micro-batch (or lower --batch-size)"
        )
    plugin = FLYPPlugin(
        context.model, context.encoder.text, list(context.tasks), train.grad_clip, context.device
    )
    return [plugin]
