"""Task heads and the multi-task classifier that is trained: the encoder shared by one head per
task. Heads start zero-shot (text tower) or LP-initialised (benchmark/model/lp_init.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from avalanche.models import MultiTaskModule
from torch import nn

from benchmark.errors import CFBenchError
from benchmark.model.encoder import Encoder


class CosineHead(nn.Module):
    """logits = W @ normalize(f) + b, with CLIP's temperature inside the trained weight W.

    Zero-shot init: W = logit_scale.exp() * (text class weights), b = 0. LP init: W and b from the
    probe fitted on normalised features (``scale`` 1). The head the papers' code builds and
    trains: wise-ft's ClassificationHead (src/models/zeroshot.py multiplies the zero-shot
    weights by ``logit_scale.exp()`` before they become the Linear's weight) and the LDIFS
    authors' (model/heads.py, the same rule; trained with the encoder by default). AdamW's steps
    and weight decay therefore act on scale * W, not on W with the scale outside the parameter
    (which moved zero-shot logits ~100 times as far per step on ViT-B/32).

    ``scale`` multiplies ``weight`` once, at construction. A state dict written before the scale
    was folded in (a ``scale`` buffer beside W) loads as the same function: W <- scale * W.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, scale: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().float() * float(scale))
        b = torch.zeros(weight.shape[0]) if bias is None else bias.detach().clone().float()
        self.bias = nn.Parameter(b)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        f = F.normalize(features, dim=-1)
        return F.linear(f, self.weight.to(f.dtype)) + self.bias.to(f.dtype)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        legacy = state_dict.pop(prefix + "scale", None)  # load_state_dict passes a copy
        if legacy is not None and prefix + "weight" in state_dict:
            state_dict[prefix + "weight"] = state_dict[prefix + "weight"] * legacy
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def legacy_head_scales(state: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """The ``heads.<t>.scale`` entries of a model state dict written before CLIP's logit scale
    was folded into the head weights (cfbench's earlier CosineHead), by key."""
    return {k: float(v) for k, v in state.items() if LEGACY_SCALE.match(k)}


LEGACY_SCALE = re.compile(r"^heads\.[^.]+\.scale$")


def check_resumable_heads(state: Mapping[str, torch.Tensor], where: str) -> None:
    """Refuse to resume a run whose heads were trained with the scale outside their weight.

    Heads of scale 1 (LP-initialised) trained exactly as they do now, so they load (as the same
    function); zero-shot heads (scale = CLIP's logit scale) took ~scale times larger steps, and a
    run continued from them would mix two training rules."""
    scaled = {k: v for k, v in legacy_head_scales(state).items() if v != 1.0}
    if scaled:
        key, value = next(iter(scaled.items()))
        raise CFBenchError(
            f"{where} was written by an earlier cfbench whose zero-shot heads kept CLIP's logit "
            f"scale outside the trained weight ({key} = {value:g}), so its heads trained ~{value:g}"
            "x faster than the papers' code and this version; rerun with --fresh to start over"
        )


class MultiTaskClassifier(MultiTaskModule):
    """Image encoder shared by one head per task (task label t -> ``heads[str(t)]``).

    Task labels may stay on the CPU (the trainer keeps them there): the model reads them to pick
    heads, which on a GPU tensor would wait for the device every step."""

    def __init__(self, encoder: nn.Module, heads: Sequence[nn.Module]):
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleDict({str(t): h for t, h in enumerate(heads)})
        self.max_class_label = max(h.weight.shape[0] for h in heads)
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None  # (batch, features)

    def __getstate__(self) -> dict:
        # copies (LwF's teacher, anchors) must not carry the training graph's features
        return {**self.__dict__, "_last": None}

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)
        # the training forward's features, for forward_all_tasks on the same batch
        self._last = (x, features) if self.training and torch.is_grad_enabled() else None
        return features

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self.heads[str(task_label)](self._encode(x))

    def forward_all_tasks(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Every known task's logits from one encoder pass: the training forward's own when ``x``
        is its batch (LwF's student term then needs no second pass through the encoder).
        Avalanche's default runs the encoder once per task."""
        features = self.training_features(x)
        features = self._encode(x) if features is None else features
        return {t: self.heads[str(t)](features) for t in sorted(self.known_train_tasks_labels)}

    def training_features(self, x: torch.Tensor) -> torch.Tensor | None:
        """The encoder's features from this training forward on the batch ``x`` (the same
        tensor), for a loss on them without a second encoder pass; None outside one."""
        last = self._last
        reuse = last is not None and last[0] is x and self.training and torch.is_grad_enabled()
        return last[1] if reuse else None

    def forward(self, x: torch.Tensor, task_labels) -> torch.Tensor:
        """Mixed-task batches (replay): encode the batch once, apply each sample's head, and pad
        narrower heads with the most negative logit so cross-entropy ignores the padding.
        (Avalanche pads with zeros, which counts as real classes with logit 0.)"""
        if task_labels is None or isinstance(task_labels, int):
            return super().forward(x, task_labels)
        tasks = [int(t) for t in torch.unique(task_labels)]
        if len(tasks) == 1:
            return self.forward_single_task(x, tasks[0])
        features = self._encode(x)
        masks = {t: (task_labels == t).to(features.device) for t in tasks}
        outs = {t: self.heads[str(t)](features[masks[t]]) for t in tasks}
        dtype = next(iter(outs.values())).dtype
        out = features.new_full((len(x), self.max_class_label), torch.finfo(dtype).min, dtype=dtype)
        for t, logits in outs.items():
            out[masks[t], : logits.shape[1]] = logits
        return out


def choose_head_init(head_init: str | None, encoder: Encoder, model_name: str) -> str:
    """``zs`` for models with a text tower, else ``lp``; an explicit choice must be possible."""
    head_init = head_init or ("zs" if encoder.text is not None else "lp")
    if head_init == "zs" and encoder.text is None:
        raise CFBenchError(
            f"--head-init zs needs a text tower and {model_name} has none; use --head-init lp"
        )
    return head_init


def lp_heads_for_all(head_init: str | None, model_name: str) -> bool:
    """Every strategy's heads start from a linear probe (``--head-init lp``, or no text tower:
    the runner adds LP-init to every run), so lp_ft adds nothing to ft."""
    from benchmark.model.encoder import has_text_tower

    return head_init == "lp" or (head_init is None and not has_text_tower(model_name))


def build_heads(
    encoder: Encoder, tasks: Sequence, head_init: str, zero_shot: Sequence[torch.Tensor | None]
) -> list[CosineHead]:
    """Zero-shot heads (``zero_shot``: each task's class weights, from benchmark/model/text.py),
    or placeholders (zero) that LPInitPlugin fits when their task starts; until then the
    evaluation treats them as not fitted (benchmark/measures.py ``EvalDataset.head_from``)."""
    if head_init == "zs":
        return [CosineHead(w, scale=encoder.text.logit_scale) for w in zero_shot]
    return [CosineHead(torch.zeros(d.num_classes, encoder.embed_dim)) for d in tasks]
