"""What a run cost: images trained and encoded, encoder GFLOPs, wall seconds per phase, per stage.

A compute-matched comparison of strategies, and a user planning a grid, need these next to the
accuracies (metrics.json "cost"). Stage t's entry covers everything between the commits of
stages t-1 and t: training task t (with its strategy's passes), an LP-init probe, and the
stage's evaluation. Entries travel in the checkpoints, so a resumed run's totals are those of an
uninterrupted one (less the work lost to the interruption, which is not counted).

GFLOPs are the encoder's, counted once per run with ``torch.utils.flop_counter`` on one image
(forward; forward + backward for training); frozen reference forwards of LDIFS and LwF are
counted as forwards. Heads, losses, optimiser updates and EWC's Fisher pass are not counted, nor
are the text tower's FLOPs (its prompts are counted, and its seconds are the ``text`` phase).
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext

import torch
from torch.utils.flop_counter import FlopCounterMode

# "text": zero-shot class weights from prompts (benchmark/model/text.py); "wall": the stage's
# whole time. Entries written before "text" and "prompts_encoded" existed count them as 0.
PHASES = ("train", "features", "probe", "text")
COUNTS = ("images_trained", "images_encoded", "reference_forwards", "prompts_encoded")


def _entry() -> dict:
    return {**dict.fromkeys(COUNTS, 0), "seconds": dict.fromkeys((*PHASES, "wall"), 0.0)}


def flops_per_image(module: torch.nn.Module, size: tuple[int, int], device) -> dict[str, float]:
    """Encoder FLOPs of one image at ``size``: forward, and forward + backward (gradients taken
    with ``autograd.grad``, so no ``.grad`` is left behind; eval mode: no batch-norm update)."""
    was_training = module.training
    module.eval()
    x = torch.zeros(1, 3, *size, device=device)
    params = [p for p in module.parameters() if p.requires_grad]
    try:
        with FlopCounterMode(display=False) as forward:
            with torch.no_grad():
                module(x)
        with FlopCounterMode(display=False) as train:
            out = module(x).float().sum()
            torch.autograd.grad(out, params, allow_unused=True)
    finally:
        module.train(was_training)
    return {"forward": float(forward.get_total_flops()), "train": float(train.get_total_flops())}


def timed(cost: Cost | None, name: str):
    """``cost.phase(name)``, or nothing when there is no cost to fill."""
    return cost.phase(name) if cost is not None else nullcontext()


class Cost:
    """Per-stage counters and phase timers of one run (``stages``: restored from a checkpoint;
    ``flops``: the encoder's per image, ``flops_per_image``; None: not counted)."""

    def __init__(
        self,
        device: torch.device,
        stages: list[dict] | None = None,
        flops: dict[str, float] | None = None,
    ):
        self.device = device
        self.stages = [dict(s) for s in stages or []]
        self.current = _entry()
        self.flops = flops
        self.started = time.perf_counter()  # of the current stage (``start`` resets it)

    def start(self) -> None:
        """The current stage's wall clock starts now."""
        self.started = time.perf_counter()

    def count(self, key: str, n: int) -> None:
        self.current[key] += int(n)

    @contextmanager
    def phase(self, name: str):
        """Add the wall time of the block to ``name`` (after the device has finished it)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.current["seconds"][name] += time.perf_counter() - start

    def close_stage(self, stage: int) -> list[dict]:
        """End stage ``stage``'s entry; returns every entry so far (for the checkpoint)."""
        self.current["seconds"]["wall"] = time.perf_counter() - self.started
        self.stages = [s for s in self.stages if s["stage"] < stage]
        self.stages.append({"stage": stage, **self.current})
        self.current = _entry()
        self.start()
        return [dict(s) for s in self.stages]

    def summary(self) -> dict:
        """Totals over the stages (metrics.json "cost"), with the per-stage entries."""
        total = {k: sum(s.get(k, 0) for s in self.stages) for k in COUNTS}
        seconds = {
            p: round(sum(s["seconds"].get(p, 0.0) for s in self.stages), 3)
            for p in (*PHASES, "wall")
        }
        out = {**total, "seconds": seconds, "per_stage": self.stages}
        if self.flops is not None:
            fwd, train = self.flops["forward"], self.flops["train"]
            flops = (
                total["images_trained"] * train
                + (total["images_encoded"] + total["reference_forwards"]) * fwd
            )
            out["gflops_per_image"] = {"forward": fwd / 1e9, "train": train / 1e9}
            out["gflops"] = flops / 1e9
        return out
