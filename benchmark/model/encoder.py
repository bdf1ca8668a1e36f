"""Image encoders (open_clip, and the CIFAR ResNets of ../shared) with their transforms and taps.

Only the image encoder and the heads (benchmark/model/heads.py) live in the trained module. The CLIP
text tower is kept in a separate frozen ``TextTower`` used to build zero-shot heads
(docs/design.md section 3).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from benchmark.errors import CFBenchError
from benchmark.model.resnet_cifar import DEPTHS as RESNET_DEPTHS
from benchmark.model.resnet_cifar import MEAN as RESNET_MEAN
from benchmark.model.resnet_cifar import STD as RESNET_STD
from benchmark.model.resnet_cifar import ResNetCifar, load_checkpoint
from benchmark.model.text import TextTower

MODEL_CONFIGS = Path(__file__).parent / "configs"
TINY_MODELS = ("cfbench-tiny-vit",)


@dataclass(frozen=True)
class Activation:
    """The MLP activation of a CLIP model's towers and how it was decided.

    OpenAI's CLIP (and open_clip's laion400m and metaclip weights) were trained with QuickGELU,
    x * sigmoid(1.702 x); open_clip's plain model names (``ViT-B-32``) build standard GELU.
    """

    quick_gelu: bool
    why: str  # for the run's log line

    @property
    def name(self) -> str:
        return "QuickGELU" if self.quick_gelu else "GELU"

    def describe(self) -> str:
        return f"activation {self.name} ({self.why})"


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
    activation: Activation | None = None  # None: no CLIP towers (the CIFAR ResNets)


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


OPENAI_SHA256 = re.compile(r"/([0-9a-f]{64})/[^/]+$")  # OpenAI's URLs: .../<sha256>/<file>


def openai_releases() -> dict[str, tuple[str, str, bool]]:
    """SHA-256 -> (model, tag, quick_gelu) of the files OpenAI released, from open_clip's
    pretrained registry (OpenAI's download URLs name each file's SHA-256)."""
    import open_clip

    releases = {}
    for model, tag in open_clip.list_pretrained():
        cfg = open_clip.get_pretrained_cfg(model, tag)
        found = OPENAI_SHA256.search(cfg.get("url", ""))
        if found and "openaipublic" in cfg["url"]:
            releases.setdefault(found.group(1), (model, tag, bool(cfg.get("quick_gelu", False))))
    return releases


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def torchscript_code(path: Path) -> str | None:
    """The TorchScript source an archive holds (its ``code/`` files); None: not TorchScript."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if not any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in names):
            return None  # a torch.save zip, not TorchScript
        code = [n for n in names if "/code/" in f"/{n}" and n.endswith(".py")]
        return "\n".join(archive.read(n).decode("utf-8", "replace") for n in code)


def checkpoint_activation(path: Path) -> Activation | None:
    """The activation a checkpoint file was trained with, when the file says: one of OpenAI's
    releases (recognised by SHA-256), or a TorchScript archive, whose code names its modules
    (OpenAI's own format). A state-dict file does not say: None."""
    release = openai_releases().get(file_sha256(path))
    if release is not None:
        model, tag, quick = release
        return Activation(quick, f"{path.name} is OpenAI's {model} release, open_clip tag '{tag}'")
    code = torchscript_code(path)
    if code is None:
        return None
    if re.search(r"\bclass QuickGELU\b", code):
        return Activation(True, f"the TorchScript archive {path.name} has QuickGELU modules")
    if re.search(r"\bclass GELU\b|\bgelu\(", code):
        return Activation(False, f"the TorchScript archive {path.name} uses GELU")
    return None


def quickgelu_name(name: str) -> str | None:
    """open_clip's QuickGELU variant of model ``name`` (``ViT-B-32-quickgelu``), if it has one."""
    import open_clip

    quick = f"{name.removesuffix('-quickgelu')}-quickgelu"
    return quick if quick in open_clip.list_models() else None


def choose_activation(name: str, pretrained: str | None) -> Activation:
    """QuickGELU or GELU for open_clip model ``name`` with ``pretrained`` (a tag, a file, None).

    The rule: the weights' own activation where it is known (a tag: the ``quick_gelu`` of
    open_clip's pretrained config for it; a file: ``checkpoint_activation``); otherwise the model
    name's (its open_clip config's ``quick_gelu``: open_clip's ``-quickgelu`` names, such as
    ``ViT-B-32-quickgelu``, state QuickGELU). A ``-quickgelu`` name with weights known to be
    trained with GELU is refused.
    """
    import open_clip

    _register_configs()
    named = bool((open_clip.get_model_config(name) or {}).get("quick_gelu", False))
    trained = None
    if pretrained not in (None, "", "none"):
        tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)  # a tag wins, as in open_clip
        if "quick_gelu" in tag_cfg:  # without it (roberta-ViT-B-32): the model config's
            quick = bool(tag_cfg["quick_gelu"])
            trained = Activation(quick, f"open_clip's pretrained config of {name}/{pretrained}")
        elif not tag_cfg and Path(pretrained).is_file():
            trained = checkpoint_activation(Path(pretrained))
    if trained is None:
        why = f"the model name {name}"
        if not named and quickgelu_name(name):
            why += f"; for weights trained with QuickGELU use --model {quickgelu_name(name)}"
        return Activation(named, why)
    if named and not trained.quick_gelu:
        raise CFBenchError(
            f"--model {name} builds QuickGELU but {trained.why} (GELU); use --model "
            f"{name.removesuffix('-quickgelu')}"
        )
    return trained


def built_quick_gelu(model: nn.Module) -> bool:
    """Whether a built open_clip model's towers use QuickGELU (checked on the modules)."""
    from open_clip.transformer import QuickGELU

    return any(isinstance(m, QuickGELU) for m in model.modules())


def load_torchscript(model: nn.Module, path: Path) -> None:
    """Load a TorchScript archive's weights (OpenAI's release format, which open_clip reads only
    through torch.load with weights_only=True, which refuses TorchScript)."""
    with warnings.catch_warnings():  # torch 2.9+ calls TorchScript deprecated: it is the format
        warnings.simplefilter("ignore", DeprecationWarning)
        state = torch.jit.load(str(path), map_location="cpu").state_dict()
    for key in ("input_resolution", "context_length", "vocab_size"):
        state.pop(key, None)
    model.load_state_dict(state, strict=True)


def build_open_clip(name: str, pretrained: str | None) -> Encoder:
    """An open_clip model split into the trained image encoder and a frozen text tower.

    ``pretrained``: an open_clip tag (``openai``, ``laion2b_s34b_b79k`` ...), a local checkpoint
    file, or ``none``/``None`` for random weights. The towers get the activation the weights were
    trained with (``choose_activation``).
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
    activation = choose_activation(name, tag)
    is_file = (
        tag is not None and not open_clip.get_pretrained_cfg(name, tag) and Path(tag).is_file()
    )
    script = is_file and torchscript_code(Path(tag)) is not None
    root = logging.getLogger()
    level = root.level
    if tag is None or script:  # no weights for open_clip to load: its warning about it is noise
        root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # open_clip's check reads a pretrained config without quick_gelu as GELU; the
            # activation is decided above, logged, and checked on the built model below.
            warnings.filterwarnings("ignore", "QuickGELU mismatch", UserWarning)
            model, train_tf, eval_tf = open_clip.create_model_and_transforms(
                name, pretrained=None if script else tag, force_quick_gelu=activation.quick_gelu
            )
        if script:
            load_torchscript(model, Path(tag))
    except Exception as error:  # noqa: BLE001 - hub/network errors come in many types
        quick = quickgelu_name(name)
        quick_hint = f" (a state-dict file of QuickGELU weights: --model {quick})" if quick else ""
        if tag and Path(tag).exists():
            raise CFBenchError(f"could not load checkpoint {tag} into {name}: {error}") from None
        raise CFBenchError(
            f"could not get pretrained weights '{tag}' for {name} ({type(error).__name__}); "
            f"without internet, download the checkpoint (open_clip.list_pretrained() lists tags; "
            f"the files are on the Hugging Face hub) and pass --pretrained /path/to/checkpoint"
            f"{quick_hint}, or use --pretrained none for random weights"
        ) from None
    finally:
        root.setLevel(level)
    if built_quick_gelu(model) != activation.quick_gelu:  # e.g. a timm tower ignores the flag
        raise CFBenchError(
            f"open_clip built {name} without the {activation.name} that {activation.why} asks "
            f"for; use an open_clip model whose towers follow open_clip's quick_gelu setting"
        )
    visual = model.visual
    del model.visual  # the text side must not carry (or optimise) a second image tower
    text = TextTower(model, open_clip.get_tokenizer(name), model.logit_scale.detach().exp().item())
    taps = open_clip_taps(visual)
    return Encoder(visual, int(visual.output_dim), train_tf, eval_tf, taps, text, activation)


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
