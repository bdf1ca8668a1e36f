"""Anchors: frozen copies of the image encoder that L2-SP and LDIFS pull the trained encoder to.

The copy lives in the plugin, outside ``strategy.model``, so Avalanche never hands it to the
optimiser (docs/design.md section 5).
"""

from __future__ import annotations

import copy

from torch import nn

ANCHORS = ("previous", "pretrained")


def freeze(module: nn.Module) -> nn.Module:
    """In place: eval mode, no gradients (none kept, none computed), and no forward hooks (a copy
    inherits the original's, e.g. LDIFS's recorders, which must only see the trained encoder)."""
    for m in module.modules():
        m._forward_hooks.clear()
        m._forward_pre_hooks.clear()
    for p in module.parameters():
        p.grad = None  # a copy of a model mid-training carries its last gradients
    return module.eval().requires_grad_(False)


def frozen_copy(module: nn.Module) -> nn.Module:
    return freeze(copy.deepcopy(module))


class FrozenAnchor:
    """A frozen copy of ``encoder`` (the live, trained encoder).

    ``mode="previous"``: retaken at the start of every task, so it is the encoder at the end of the
    previous task (the pretrained one for the first task). ``mode="pretrained"``: taken once, when
    the anchor is built, which is before any training (strategies are built from the freshly
    built model, also when a run resumes).

    Its checkpoint state is therefore only the mode: checkpoints are taken between tasks, where a
    "previous" anchor is about to be retaken and a "pretrained" one is rebuilt with the run.
    """

    def __init__(self, encoder: nn.Module, mode: str = "previous"):
        if mode not in ANCHORS:
            raise ValueError(f"anchor must be one of {', '.join(ANCHORS)}; got {mode!r}")
        self.encoder, self.mode = encoder, mode
        self.module: nn.Module | None = frozen_copy(encoder) if mode == "pretrained" else None

    def update(self) -> bool:
        """Call at the start of a task; True when the copy was (re)taken."""
        if self.mode == "pretrained":
            return False
        self.module = frozen_copy(self.encoder)
        return True

    def state_dict(self) -> dict:
        return {"mode": self.mode}

    def load_state_dict(self, state: dict) -> None:
        if state["mode"] != self.mode:
            raise ValueError(f"checkpoint anchor is '{state['mode']}', this run's is '{self.mode}'")
        if self.mode == "previous":
            self.module = None  # retaken from the restored encoder when the next task starts
