"""Forward-hook recorders for the modules an encoder declares as ``taps`` (used by LDIFS)."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from benchmark.errors import CFBenchError


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
