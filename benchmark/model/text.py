"""The frozen CLIP text side: prompts in, zero-shot class weights out, once per run.

A run needs each dataset's zero-shot class weights twice, for the task heads (``--head-init zs``)
and for the evaluation's ``zs`` records, and builds them once (``zero_shot_weights``), timed as
the cost's ``text`` phase with the number of prompts encoded. The 5tasks sequence encodes about
4,300 prompts (its tasks and controls, with the published template sets), 10tasks about 84,000
(ImageNet's 80 templates). They depend on the text tower alone, so every strategy and seed of
a sequence shares them: ``TextCache`` keeps them beside the pretrained-row cache.

CLIP pads every prompt to a 77-token context. Its text transformer masks attention causally and
pools the features at the end-of-text token (open_clip's ``text_pool_type == "argmax"``), so the
positions after the longest prompt's end token cannot change the result: ``encode_prompts``
leaves them out. That is the same arithmetic on the positions kept (only the order of float sums
in the attention may differ: 2.6e-6 on features of size 4 for a random ViT-B-32;
tests/test_text.py compares it with ``encode_text``, tests/test_openai_clip.py with OpenAI's
code) and about five times faster for prompts of 15-20 tokens. Models of another layout go
through ``encode_text``.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from tqdm.auto import tqdm

from benchmark.cost import Cost, timed
from benchmark.io import write_atomic

PROMPT_BATCH = 256  # prompts per forward


class TextTower:
    """Frozen CLIP text side: builds zero-shot class weights from class names and templates."""

    def __init__(self, clip_model: nn.Module, tokenizer: Callable, logit_scale: float):
        self.model = clip_model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.logit_scale = logit_scale

    @torch.no_grad()
    def class_weights(
        self, classnames: Sequence[str], templates: Sequence[str], progress=None
    ) -> torch.Tensor:
        """[C, D] rows: per class, mean of the L2-normalised template embeddings, re-normalised.
        ``progress``: a tqdm bar advanced by the prompts encoded."""
        if not templates:  # a mean over no prompts is NaN, which would only show in training
            raise ValueError("no prompt templates to build zero-shot class weights from")
        device = next(self.model.parameters()).device
        prompts = [t.format(name) for name in classnames for t in templates]
        parts = []
        for start in range(0, len(prompts), PROMPT_BATCH):
            tokens = self.tokenizer(prompts[start : start + PROMPT_BATCH]).to(device)
            parts.append(F.normalize(encode_prompts(self.model, tokens).float(), dim=-1))
            if progress is not None:
                progress.update(len(tokens))
        emb = torch.cat(parts).view(len(classnames), len(templates), -1)
        return F.normalize(emb.mean(dim=1), dim=-1)

    def to(self, device: torch.device) -> TextTower:
        self.model.to(device)
        return self


class _EncodeText(nn.Module):
    """``model.encode_text`` as a forward, so that ``functional_call`` can cut its context."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens)


def encode_prompts(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text(tokens)``, computed on the positions up to the batch's last
    end-of-text token where the model's layout makes that exact (module docstring). The cut
    positional embedding and mask are views of the model's own, passed with ``functional_call``:
    the model is not changed, and gradients reach its weights (FLYP trains the text tower)."""
    keep = context_kept(model, tokens)
    if keep is None:
        return model.encode_text(tokens)
    cut = {
        "model.positional_embedding": model.positional_embedding[:keep],
        "model.attn_mask": model.attn_mask[:keep, :keep],
    }
    return functional_call(_EncodeText(model), cut, (tokens[:, :keep],))


def context_kept(model: nn.Module, tokens: torch.Tensor) -> int | None:
    """How many context positions ``encode_prompts`` keeps: up to the batch's last end-of-text
    token, when the model has open_clip's CLIP text layout (a causal mask over the full context,
    argmax pooling) and that is shorter than the context; else None (the full context)."""
    mask = getattr(model, "attn_mask", None)
    position = getattr(model, "positional_embedding", None)
    length = tokens.shape[1]
    layout = (
        getattr(model, "text_pool_type", None) == "argmax"
        and isinstance(mask, torch.Tensor)
        and isinstance(position, torch.Tensor)
        and mask.shape == (length, length)
        and position.shape[0] == length
        and _causal(mask)
    )
    keep = int(tokens.argmax(dim=-1).max()) + 1  # CLIP's end-of-text id is its largest
    return keep if layout and keep < length else None


def _causal(mask: torch.Tensor) -> bool:
    """No position attends to a later one (every entry above the diagonal is -inf)."""
    later = torch.ones(mask.shape, dtype=torch.bool, device=mask.device).triu(1)
    return bool(torch.all(mask[later] == float("-inf")))


class TextCache:
    """Zero-shot class weights of earlier runs, in ``folder`` (None: off), one file per dataset.

    The weights depend only on the text tower (``context``: the model, a digest of its weights and
    its activation, the device type and torch version) and the dataset's class names and
    templates; every strategy and seed of a sequence shares them. The key is a SHA-256 of all of
    it, so an entry is never reused for other inputs; entries are written atomically."""

    def __init__(self, folder: Path | None, context: dict):
        self.folder, self.context = folder, context

    def file(self, data) -> Path | None:
        if self.folder is None:
            return None
        blob = {
            **self.context,
            "classnames": list(data.classnames),
            "templates": list(data.templates),
        }
        key = hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()
        return self.folder / f"{key}.pt"

    def get(self, data) -> torch.Tensor | None:
        file = self.file(data)
        try:
            return torch.load(file, weights_only=True) if file else None
        except Exception:  # noqa: BLE001 - absent, truncated or foreign: recompute it
            return None

    def put(self, data, weights: torch.Tensor) -> None:
        file = self.file(data)
        if file is None:
            return
        buffer = io.BytesIO()
        torch.save(weights, buffer)
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(file, buffer.getvalue())
        except OSError:  # a read-only cache: the run goes on without it
            pass


def zero_shot_weights(
    text: TextTower | None,
    datasets: Mapping,
    cost: Cost | None = None,
    cache: TextCache | None = None,
) -> dict[str, torch.Tensor]:
    """Every dataset's zero-shot class weights ([C, D], on the CPU): from ``cache`` where it has
    them, else encoded once, with a progress bar over the prompts; ``datasets``: name ->
    TaskData. Empty without a text tower. The encoding time goes to ``cost``'s ``text`` phase and
    the prompts encoded to its ``prompts_encoded``."""
    if text is None:
        return {}
    cache = cache or TextCache(None, {})
    weights = {name: cache.get(data) for name, data in datasets.items()}
    todo = {name: data for name, data in datasets.items() if weights[name] is None}
    total = sum(len(d.classnames) * len(d.templates) for d in todo.values())
    if not todo:
        return weights
    bar = tqdm(
        total=total,
        desc="zero-shot prompts",
        unit="prompt",
        leave=False,
        dynamic_ncols=True,
        disable=None,
    )  # off when stderr is no terminal
    with timed(cost, "text"), bar:
        for name, data in todo.items():
            weights[name] = text.class_weights(data.classnames, data.templates, bar).cpu()
            cache.put(data, weights[name])
    if cost is not None:
        cost.count("prompts_encoded", total)
    return weights
