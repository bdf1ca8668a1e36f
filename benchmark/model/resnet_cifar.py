"""ResNet for CIFAR (He et al., CVPR 2016, section 4.2): resnet20/32/44/56 with 6n + 2 layers.

A 3x3 stem with 16 channels, three stages of n BasicBlocks (16, 32, 64 channels; the first block
of stages 2 and 3 has stride 2) and a parameter-free "option A" shortcut when the shape changes
(subsample every second pixel, zero-pad the new channels, half on each side). Parameter names
(``conv1``, ``bn1``, ``layer{1,2,3}.{i}.{conv1,bn1,conv2,bn2}``, ``linear``) match the widely
used CIFAR-10 checkpoints, whose state_dicts load after stripping a ``module.`` prefix.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import CFBenchError

DEPTHS = {"resnet20-cifar": 3, "resnet32-cifar": 5, "resnet44-cifar": 7, "resnet56-cifar": 9}
# Normalisation the CIFAR checkpoints were trained with (ImageNet statistics).
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = planes - in_planes  # channels the option-A shortcut adds
        self.stride = stride

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1 and self.pad == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.pad // 2
        return F.pad(x, (0, 0, 0, 0, half, self.pad - half))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """``forward`` returns the pooled 64-d embedding; ``classify`` applies the own linear layer."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()  # its own module so LDIFS can tap the stem output
        stages, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(blocks_per_stage):
                blocks.append(BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(64, num_classes)
        self.output_dim = 64

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return x.mean(dim=(2, 3))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self(x))

    def taps(self) -> list[nn.Module]:
        """LDIFS taps: the stem output and each stage's output."""
        return [self.relu, self.layer1, self.layer2, self.layer3]


def _state_dict_keys(model: nn.Module) -> set[str]:
    return {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}


def load_checkpoint(model: ResNetCifar, path: str | Path) -> None:
    """Load a CIFAR ResNet checkpoint: a state_dict, or a dict holding one under ``state_dict``,
    with or without the ``module.`` prefix DataParallel adds."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CFBenchError(
            f"checkpoint {path} does not exist; pass --pretrained PATH to a "
            "resnet*-cifar state_dict file, or --pretrained none"
        )
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a bad file
        raise CFBenchError(f"cannot read checkpoint {path}: {type(error).__name__}") from None
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict):
        raise CFBenchError(f"checkpoint {path} holds no state_dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    expected = _state_dict_keys(model)
    if not expected <= set(state):
        missing = sorted(expected - set(state))[:3]
        raise CFBenchError(
            f"checkpoint {path} does not fit this architecture "
            f"(missing {', '.join(missing)} ...); check --model"
        )
    if state["linear.weight"].shape != model.linear.weight.shape:
        model.linear = nn.Linear(64, state["linear.weight"].shape[0])
    model.load_state_dict(state, strict=False)
