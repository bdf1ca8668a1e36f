"""LwF: Li & Hoiem, "Learning without Forgetting", ECCV 2016 / TPAMI 2017, arXiv:1606.09282, as
Avalanche's ``LwFPlugin`` implements it:

    loss = CE + alpha * sum_{past tasks s} KL(softmax(z0_s / T) || softmax(z_s / T)),

z_s = the current model's logits of past task s's head on the current batch, z0_s = those of the
model frozen at the end of the previous task (the teacher, kept outside ``strategy.model``).
"""

from __future__ import annotations

from dataclasses import dataclass

from avalanche.training.plugins import LwFPlugin
from torch import nn

from benchmark.plugin import StrategyPlugin
from strategies.anchors import freeze, frozen_copy
from strategies.common import FROM_MODEL, check_weight, cpu_state, equals_model


@dataclass(frozen=True)
class Config:
    """alpha = 1 and T = 2: the paper's loss-balance weight lambda_o = 1 and temperature T = 2
    (also Avalanche's defaults)."""

    alpha: float = 1.0  # weight of the distillation term
    temperature: float = 2.0

    def __post_init__(self):
        check_weight("alpha", self.alpha)
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


class CheckpointableLwF(LwFPlugin, StrategyPlugin):
    """Avalanche's LwF with a frozen (eval, no-grad) teacher and a checkpointable state."""

    def __init__(self, model: nn.Module, alpha: float, temperature: float):
        super().__init__(alpha=alpha, temperature=temperature)
        self.model = model  # the live model: the architecture a loaded teacher is rebuilt from

    @property
    def reference_forwards(self) -> int:
        """Teacher forwards per training image (benchmark/cost.py): none on the first task."""
        return int(self.lwf.prev_model is not None)

    def after_training_exp(self, strategy, **kwargs):
        super().after_training_exp(strategy, **kwargs)
        freeze(self.lwf.prev_model)  # Avalanche's copy is still in train mode, with gradients

    def state_dict(self) -> dict:
        """The teacher is the model at the end of the previous task, so at a checkpoint (between
        tasks) it is stored as FROM_MODEL and copied from the restored model."""
        teacher = self.lwf.prev_model
        if teacher is not None:
            same = equals_model(teacher.state_dict(), self.model)
            weights = FROM_MODEL if same else cpu_state(teacher)
        return {
            "teacher": None if teacher is None else weights,
            "teacher_tasks": [] if teacher is None else sorted(teacher.known_train_tasks_labels),
            "expcount": self.lwf.expcount,
            "prev_classes": {t: sorted(c) for t, c in self.lwf.prev_classes_by_task.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        teacher = None
        if state["teacher"] is not None:
            teacher = frozen_copy(self.model)
            if state["teacher"] != FROM_MODEL:
                teacher.load_state_dict(state["teacher"])
            teacher.known_train_tasks_labels = set(state["teacher_tasks"])
        self.lwf.prev_model = teacher
        self.lwf.expcount = state["expcount"]
        self.lwf.prev_classes_by_task.clear()
        self.lwf.prev_classes_by_task.update(
            {int(t): set(c) for t, c in state["prev_classes"].items()}
        )


def build(context, config: Config) -> list:
    return [CheckpointableLwF(context.model, config.alpha, config.temperature)]
