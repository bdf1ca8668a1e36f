"""Image encoders (open_clip, and the CIFAR ResNets of ../shared) with their transforms and taps.

Only the image encoder and the heads (benchmark/model/heads.py) live in the trained module. The CLIP
text tower is kept in a separate frozen ``TextTower`` used to build zero-shot heads
(docs/design.md section 3).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import CFBenchError
from benchmark.model.resnet_cifar import DEPTHS as RESNET_DEPTHS
from benchmark.model.resnet_cifar import MEAN as RESNET_MEAN
from benchmark.model.resnet_cifar import STD as RESNET_STD
from benchmark.model.resnet_cifar import ResNetCifar, load_checkpoint

MODEL_CONFIGS = Path(__file__).parent / "configs"
TINY_MODELS = ("cfbench-tiny-vit",)


class TextTower:
    """Frozen CLIP text side: builds zero-shot class weights from class names and templates."""

    def __init__(self, clip_model: nn.Module, tokenizer: Callable, logit_scale: float):
        self.model = clip_model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.logit_scale = logit_scale

    @torch.no_grad()
    def class_weights(self, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        """[C, D] rows: per class, mean of the L2-normalised template embeddings, re-normalised."""
        if not templates:  # a mean over no prompts is NaN, which would only show in training
            raise ValueError("no prompt templates to build zero-shot class weights from")
        device = next(self.model.parameters()).device
        rows = []
        for name in classnames:
            tokens = self.tokenizer([t.format(name) for t in templates]).to(device)
            emb = F.normalize(self.model.encode_text(tokens).float(), dim=-1)
            rows.append(F.normalize(emb.mean(dim=0), dim=0))
        return torch.stack(rows)

    def to(self, device: torch.device) -> TextTower:
        self.model.to(device)
        return self


@dataclass
class Encoder:
    """An image encoder and everything the benchmark needs to know about it.

    ``module`` maps a batch of preprocessed images to embeddings [B, embed_dim]; ``taps`` are the
    modules whose outputs LDIFS compares; ``text`` is None for encoders without a text tower.
    """

    module: nn.Module
    embed_dim: int
    train_transform: Callable
    eval_transform: Callable
    taps: list[nn.Module] = field(default_factory=list)
    text: TextTower | None = None


def image_size(encoder: Encoder) -> tuple[int, int]:
    """The (height, width) of the images the encoder sees: its eval transform's output."""
    from PIL import Image

    return tuple(encoder.eval_transform(Image.new("RGB", (97, 89))).shape[-2:])


def vit_taps(visual: nn.Module) -> list[nn.Module]:
    """LDIFS taps of an open_clip VisionTransformer: ``ln_pre`` and every L/4-th block."""
    blocks = list(visual.transformer.resblocks)
    step = max(1, len(blocks) // 4)
    return [visual.ln_pre] + [blocks[i - 1] for i in range(step, len(blocks) + 1, step)]


def modified_resnet_taps(visual: nn.Module) -> list[nn.Module]:
    """LDIFS taps of an open_clip ModifiedResNet (RN50 ...): the stem output and each stage."""
    return [visual.avgpool, visual.layer1, visual.layer2, visual.layer3, visual.layer4]


def open_clip_taps(visual: nn.Module) -> list[nn.Module]:
    if hasattr(visual, "transformer") and hasattr(visual, "ln_pre"):
        return vit_taps(visual)
    if all(hasattr(visual, a) for a in ("avgpool", "layer1", "layer4", "attnpool")):
        return modified_resnet_taps(visual)
    return []  # other towers (timm, ...): LDIFS will say it needs taps


def _register_configs() -> None:
    import open_clip

    if TINY_MODELS[0] not in open_clip.list_models():
        open_clip.add_model_config(MODEL_CONFIGS)


def build_open_clip(name: str, pretrained: str | None) -> Encoder:
    """An open_clip model split into the trained image encoder and a frozen text tower.

    ``pretrained``: an open_clip tag (``openai``, ``laion2b_s34b_b79k`` ...), a local checkpoint
    file, or ``none``/``None`` for random weights.
    """
    import open_clip

    _register_configs()
    if name not in open_clip.list_models():
        raise CFBenchError(
            f"unknown model '{name}'; use an open_clip architecture (e.g. ViT-B-32, ViT-B-16, "
            f"ViT-L-14, RN50; full list: open_clip.list_models()), {', '.join(TINY_MODELS)}, "
            f"or {', '.join(RESNET_DEPTHS)}"
        )
    tag = None if pretrained in (None, "", "none") else pretrained
    root = logging.getLogger()
    level = root.level
    if tag is None:  # random weights were asked for: open_clip's warning about them is noise
        root.setLevel(logging.ERROR)
    try:
        model, train_tf, eval_tf = open_clip.create_model_and_transforms(name, pretrained=tag)
    except Exception as error:  # noqa: BLE001 - hub/network errors come in many types
        if tag and Path(tag).exists():
            raise CFBenchError(f"could not load checkpoint {tag} into {name}: {error}") from None
        raise CFBenchError(
            f"could not get pretrained weights '{tag}' for {name} ({type(error).__name__}); "
            f"without internet, download the checkpoint (open_clip.list_pretrained() lists tags; "
            f"the files are on the Hugging Face hub) and pass --pretrained /path/to/checkpoint, "
            f"or use --pretrained none for random weights"
        ) from None
    finally:
        root.setLevel(level)
    visual = model.visual
    del model.visual  # the text side must not carry (or optimise) a second image tower
    text = TextTower(model, open_clip.get_tokenizer(name), model.logit_scale.detach().exp().item())
    return Encoder(visual, int(visual.output_dim), train_tf, eval_tf, open_clip_taps(visual), text)


def find_weights(pretrained: str, data_root: Path | None = None) -> Path:
    """Resolve a checkpoint given as a path or a bare file name.

    A bare name is looked up in ``$CFBENCH_WEIGHTS``, ``<data-root>/../weights`` (the layout of
    the offline data) and ``~/.cache/cfbench/weights``.
    """
    path = Path(pretrained).expanduser()
    if path.is_file():
        return path
    places = [Path(os.environ["CFBENCH_WEIGHTS"])] if "CFBENCH_WEIGHTS" in os.environ else []
    if data_root is not None:
        places.append(Path(data_root).expanduser().resolve().parent / "weights")
    places.append(Path("~/.cache/cfbench/weights").expanduser())
    for place in places:
        if (place / path.name).is_file():
            return place / path.name
    raise CFBenchError(
        f"checkpoint '{pretrained}' not found (looked in {', '.join(str(p) for p in places)}); "
        "pass --pretrained /path/to/file, set CFBENCH_WEIGHTS, or use --pretrained none"
    )


def build_resnet_cifar(name: str, pretrained: str | None, data_root: Path | None) -> Encoder:
    """A CIFAR ResNet (no text tower): heads are initialised from linear probes."""
    from torchvision import transforms as T

    model = ResNetCifar(RESNET_DEPTHS[name])
    if pretrained not in (None, "", "none"):
        load_checkpoint(model, find_weights(pretrained, data_root))
    model.linear = nn.Identity()  # the encoder ends at the pooled embedding; heads are ours
    norm = [T.ToTensor(), T.Normalize(RESNET_MEAN, RESNET_STD)]
    size = (32, 32)
    train_tf = T.Compose([T.Resize(size), T.RandomCrop(size, padding=4), *norm])
    eval_tf = T.Compose([T.Resize(size), *norm])
    return Encoder(model, model.output_dim, train_tf, eval_tf, model.taps(), None)


def has_text_tower(name: str) -> bool:
    """Whether ``build_encoder(name, ...)`` gives a text tower, known without building it: every
    open_clip model has one, the CIFAR ResNets have none."""
    return name not in RESNET_DEPTHS


def build_encoder(name: str, pretrained: str | None, data_root: Path | None = None) -> Encoder:
    """The encoder factory: CIFAR ResNets (resnet20/32/44/56-cifar) or any open_clip model
    (ViTs, ModifiedResNets and the tiny offline ``cfbench-tiny-vit``)."""
    if name in RESNET_DEPTHS:
        return build_resnet_cifar(name, pretrained, data_root)
    return build_open_clip(name, pretrained)
