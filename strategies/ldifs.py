"""LDIFS: Mukhoti, Gal, Torr & Dokania, "Fine-tuning can cripple your foundation model; preserving
features may be the solution", TMLR 2024, arXiv:2308.13320.

    loss = CE + lambda * mean_taps mean_(B, T, D) (norm(f_k(x)) - norm(f0_k(x)))^2

f_k are the tap outputs of the trained encoder (for open_clip ViTs: ``ln_pre`` and every L/4-th
block, [B, T, D]), recorded by forward hooks during the normal training forward; f0_k those of a
frozen reference copy (the anchor, as for L2-SP) run without gradients on the same batch. norm is
L2 normalisation along the token axis (as the official code) or the channel axis. Works for any
encoder that declares ``taps`` (CNN maps [B, C, H, W] are read as [B, H*W, C]; the reference's
batch norms use batch statistics while the student trains, so d = 0 at the anchor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from benchmark.plugin import StrategyPlugin
from strategies.anchors import ANCHORS, FrozenAnchor
from strategies.common import check_choice, check_weight
from strategies.penalties import AXES, REDUCTIONS, ldifs_distance
from strategies.taps import TapRecorder, tap_names


@dataclass(frozen=True)
class Config:
    """lam = 10 and token-axis normalisation as in the official code (calibrated on ViT-B/32:
    the mean over positions shrinks with their number, so other encoders may need another lam,
    or reduction=unit, which sums over the normalised axis and is invariant to it)."""

    lam: float = 10.0  # weight of the feature distance
    anchor: Literal["previous", "pretrained"] = "previous"
    axis: Literal["token", "channel"] = "token"  # normalisation axis
    reduction: Literal["mean", "unit"] = "mean"

    def __post_init__(self):
        check_weight("lam", self.lam)
        check_choice("anchor", self.anchor, ANCHORS)
        check_choice("axis", self.axis, AXES)
        check_choice("reduction", self.reduction, REDUCTIONS)


class LDIFSPlugin(StrategyPlugin):
    # The trainer runs the forward, the reference's and the loss in fp32 even under bf16: in bf16
    # the distance after a 1 % weight change is mostly rounding (README "Precision").
    fp32_forward = True
    reference_forwards = 1  # the frozen reference runs on every training image (cost.py)

    def __init__(self, encoder: nn.Module, taps: list[nn.Module], config: Config):
        super().__init__()
        self.config = config
        self.encoder, self.names = encoder, tap_names(encoder, taps)
        self.anchor = FrozenAnchor(encoder, config.anchor)
        self.student = TapRecorder(encoder, taps)
        self.reference: TapRecorder | None = None
        self.ref_bn: list[nn.Module] = []
        self.student_bn = [m for m in encoder.modules() if isinstance(m, _BatchNorm)]

    def _hook_reference(self) -> None:
        ref = self.anchor.module
        self.reference = TapRecorder(ref, [ref.get_submodule(n) for n in self.names])
        self.ref_bn = [m for m in ref.modules() if isinstance(m, _BatchNorm)]
        for m in self.ref_bn:
            m.momentum = 0.0  # may use batch statistics, never updates its running ones

    def before_training_exp(self, strategy, **kwargs):
        if self.anchor.update() or self.reference is None:
            self._hook_reference()

    def before_forward(self, strategy, **kwargs):
        self.student.start()  # only the training forward is recorded (not evaluation, EWC, LwF)

    def after_forward(self, strategy, **kwargs):
        self.student.stop()

    def before_backward(self, strategy, **kwargs):
        ref = self.anchor.module.eval()  # no dropout, but each batch norm normalises like the
        for m, s in zip(self.ref_bn, self.student_bn, strict=True):  # student's (batch or running
            m.train(s.training)  # statistics, as with --batchnorm frozen), so d = 0 at the anchor
        with torch.no_grad(), self.reference.capture():
            for x in self.student.inputs:  # the very images the student saw (= strategy.mb_x)
                ref(x)
        cfg = self.config
        distance = ldifs_distance(
            self.student.taps(), self.reference.taps(), cfg.axis, cfg.reduction
        )
        strategy.loss += cfg.lam * distance
        self.student.clear()
        self.reference.clear()

    def state_dict(self) -> dict:
        return {"anchor": self.anchor.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.anchor.load_state_dict(state["anchor"])
        if self.anchor.module is not None:
            self._hook_reference()


def build(context, config: Config) -> list:
    return [LDIFSPlugin(context.model.encoder, list(context.encoder.taps), config)]
