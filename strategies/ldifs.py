"""LDIFS: Mukhoti, Gal, Torr & Dokania, "Fine-tuning can cripple your foundation model; preserving
features may be the solution", TMLR 2024, arXiv:2308.13320.

    loss = CE + lambda * mean_taps mean_(B, T, D) (norm(f_k(x)) - norm(f0_k(x)))^2

f_k are the tap outputs of the trained encoder (for open_clip ViTs: ``ln_pre`` and every L/4-th
block, [B, T, D]), recorded by forward hooks during the normal training forward; f0_k those of a
frozen reference copy (the anchor, as for L2-SP) run without gradients on the same batch. norm is
L2 normalisation along the token axis (as the official code) or the channel axis. Works for any
encoder that declares ``taps`` (CNN maps [B, C, H, W] are read as [B, H*W, C]).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch
from avalanche.training.plugins import SupervisedPlugin
from torch import nn

from benchmark.errors import CFBenchError
from strategies.anchors import ANCHORS, FrozenAnchor
from strategies.common import check_choice, check_weight
from strategies.penalties import AXES, REDUCTIONS, ldifs_distance


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


class TapRecorder:
    """Records the inputs of ``root`` and the outputs of ``taps`` (one entry per call of ``root``;
    a batch mixing tasks calls the encoder once per task), only inside ``capture()``.

    The hooks are closures, not bound methods, so deep copies of the model (LwF's teacher, the
    anchors) do not drag the recorder along.
    """

    def __init__(self, root: nn.Module, taps: list[nn.Module]):
        self.active = False
        self.inputs: list[torch.Tensor] = []
        self.outputs: list[list[torch.Tensor]] = [[] for _ in taps]
        inputs, outputs = self.inputs, self.outputs

        def on_input(module, args):
            if self.active:
                inputs.append(args[0])

        def on_output(k):
            def hook(module, args, output):
                if self.active:
                    outputs[k].append(output[0] if isinstance(output, (tuple, list)) else output)

            return hook

        self.handles = [root.register_forward_pre_hook(on_input)]
        self.handles += [tap.register_forward_hook(on_output(k)) for k, tap in enumerate(taps)]

    def clear(self) -> None:
        self.inputs.clear()
        for out in self.outputs:
            out.clear()

    def start(self) -> None:
        self.clear()
        self.active = True

    def stop(self) -> None:
        self.active = False

    @contextlib.contextmanager
    def capture(self):
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def taps(self) -> list[torch.Tensor]:
        """One tensor per tap, the calls concatenated along the batch."""
        return [torch.cat(out) if len(out) > 1 else out[0] for out in self.outputs]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def tap_names(root: nn.Module, taps: list[nn.Module]) -> list[str]:
    """Qualified names of the tap modules inside ``root`` (to find them again in a copy)."""
    names = {id(m): name for name, m in root.named_modules()}
    if not taps or any(id(t) not in names for t in taps):
        raise CFBenchError(
            "LDIFS needs an encoder that declares taps (modules inside it whose "
            "outputs are compared); this encoder declares none"
        )
    return [names[id(t)] for t in taps]


class LDIFSPlugin(SupervisedPlugin):
    def __init__(self, encoder: nn.Module, taps: list[nn.Module], config: Config):
        super().__init__()
        self.config = config
        self.names = tap_names(encoder, taps)
        self.anchor = FrozenAnchor(encoder, config.anchor)
        self.student = TapRecorder(encoder, taps)
        self.reference: TapRecorder | None = None

    def _hook_reference(self) -> None:
        ref = self.anchor.module
        self.reference = TapRecorder(ref, [ref.get_submodule(n) for n in self.names])

    def before_training_exp(self, strategy, **kwargs):
        if self.anchor.update() or self.reference is None:
            self._hook_reference()

    def before_forward(self, strategy, **kwargs):
        self.student.start()  # only the training forward is recorded (not evaluation, EWC, LwF)

    def after_forward(self, strategy, **kwargs):
        self.student.stop()

    def before_backward(self, strategy, **kwargs):
        with torch.no_grad(), self.reference.capture():
            for x in self.student.inputs:  # the very images the student saw (= strategy.mb_x)
                self.anchor.module(x)
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
