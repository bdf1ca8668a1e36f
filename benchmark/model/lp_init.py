"""Linear-probe initialisation of a task head: the head is set to the probe fitted on the current
encoder's L2-normalised features of the task's train split (eval transform; C swept on the
validation split, as the LP evaluation does):

    (W, b) = argmin mean_i CE(W normalize(f(x_i)) + b, y_i) + ||W||^2 / (2 C n),
    head(x) = W normalize(f(x)) + b          (no temperature: the probe's own scale)

LP-FT (strategies/lp_ft.py) does it before every task; a run whose encoder has no text tower
(``--head-init lp``) does it for every strategy, so the runner adds ``LPInitPlugin`` itself.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmark.config import ProbeConfig
from benchmark.cost import timed
from benchmark.phases import phase, smaller_eval_batch
from benchmark.plugin import StrategyPlugin
from benchmark.probe.features import FeaturePass, Transformed, extract_features
from benchmark.probe.fit import linear_probe
from benchmark.probe.splits import probe_split
from benchmark.rng import preserve_rng
from tasks.base import TaskData, targets_of


def fit_probe_head(
    encoder: nn.Module,
    data: TaskData,
    transform,
    probe: ProbeConfig,
    features: FeaturePass,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(W [C, D], b [C]) of the linear probe on ``encoder``'s features of ``data.train``."""
    idx, val_mask = probe_split(len(data.train), probe.max_train_samples)
    with preserve_rng(features.device):  # the probe's data pass must not shift the training RNG
        x = extract_features(
            encoder,
            Transformed(data.train, transform, idx),
            desc=f"LP-FT probe {data.name}",
            **features.kwargs(),
        )
    device = features.device
    y = torch.as_tensor(np.asarray(targets_of(data.train))[idx], device=device)
    mask = torch.as_tensor(val_mask, device=device)
    with timed(features.cost, "probe"):
        result = linear_probe(
            x, y, mask, x, y, data.num_classes, probe.c_grid, probe.max_iter, tol=probe.tol
        )
    return result.weight, result.bias


@torch.no_grad()
def set_head(head: nn.Module, weight: torch.Tensor, bias: torch.Tensor):
    """Overwrite a CosineHead in place (the optimiser keeps the same Parameter objects)."""
    head.weight.copy_(weight)
    head.bias.copy_(bias)


def lp_init_head(
    model: nn.Module,
    task: int,
    data: TaskData,
    transform,
    probe: ProbeConfig,
    features: FeaturePass,
) -> None:
    """LP-initialise ``model.heads[str(task)]`` from ``model.encoder`` (reusable: encoders without
    a text tower need LP-initialised heads)."""
    weight, bias = fit_probe_head(model.encoder, data, transform, probe, features)
    set_head(model.heads[str(task)], weight, bias)


class LPInitPlugin(StrategyPlugin):
    """LP-initialise the current task's head at the start of the task. It keeps nothing between
    tasks (the fitted heads are in the model): the base's empty state."""

    def __init__(self, context):
        super().__init__()
        self.context = context

    def before_training_exp(self, strategy, **kwargs):
        t = strategy.experience.task_label  # = the task's index in the sequence (streams.py)
        c = self.context
        features = c.features or FeaturePass(
            strategy.device,
            c.probe.batch_size or FeaturePass.default_batch(strategy.device),
            kwargs.get("num_workers", 0),
        )
        what = f"preparing task '{c.tasks[t].name}' (e.g. the feature pass of its LP-init probe)"
        with phase(smaller_eval_batch(what, features.batch_size)):
            lp_init_head(strategy.model, t, c.tasks[t], c.encoder.eval_transform, c.probe, features)
