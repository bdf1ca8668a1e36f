"""Online EWC: Kirkpatrick et al., "Overcoming catastrophic forgetting in neural networks", PNAS
2017, arXiv:1612.00796; online form of Schwarz et al., "Progress & Compress", ICML 2018,
arXiv:1805.06370, as Avalanche's ``EWCPlugin(mode="online")`` implements it:

    loss = CE + lam * sum_i F_i (theta_i - theta*_i)^2,   F <- decay * F + F_t after task t,

theta* = the weights at the end of the previous task, F_t = mean over mini-batches of the squared
gradient of the mini-batch-mean CE on task t (all model parameters, the heads included). Online
mode keeps one parameter copy and one importance copy; "separate" mode keeps one per task.

The importance pass (``after_training_exp``, model in eval mode, fp32) runs over the task's
training split as the experience holds it (its train transform, in order, not shuffled), in
batches of B = ``--batch-size``, the training batch (Avalanche passes ``strategy.train_mb_size``;
with ``--micro-batch`` each batch's gradient is accumulated over micro-batches, so B is still the
training batch). With g_n the gradient of sample n's CE and K batches of sizes B_k,

    F_i = (1/K) sum_k ((1/B_k) sum_{n in k} g_n,i)^2
        = (1/K) sum_k (1/B_k^2) [sum_n g_n,i^2 + sum_{n != m} g_n,i g_m,i].

Where the per-sample gradients are roughly uncorrelated with mean ~0 (near a minimum of the
task's loss) the cross terms average out and F ~= F^sample / B, F^sample_i = mean_n g_n,i^2 the
per-sample empirical Fisher (labels from the data), when every batch holds B samples (a smaller
last batch, of b, counts 1/b instead of 1/B). The usual convention (Kirkpatrick et al.) writes
the penalty (lambda/2) sum_i F^sample_i (theta_i - theta*_i)^2, so

    lambda_usual = 2 * lam / B,   lam = B * lambda_usual / 2,

lambda_usual for a mean-CE task loss (no 1/2 in our penalty; the 1/B is Avalanche's Fisher). Away
from a minimum the mean gradient adds (mean_n g_n,i)^2 to F, which does not shrink with B: the
penalty is then stronger than the lambda_usual above.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from avalanche.models.utils import avalanche_forward
from avalanche.training.plugins import EWCPlugin
from avalanche.training.utils import ParamData, zerolike_params_dict
from torch.utils.data import DataLoader

from benchmark.micro_batch import micro_batches
from benchmark.plugin import StrategyPlugin
from benchmark.rng import preserve_rng
from strategies.common import FROM_MODEL, check_weight, equals_model


@dataclass(frozen=True)
class Config:
    """decay = 1: the importances of all past tasks add up, which is the recursive Laplace
    approximation of the past tasks' losses (Huszar 2018, arXiv:1712.03847), anchored at the
    latest weights. lam = None: B / 2, half the training batch size. Avalanche's F is the squared
    *mini-batch-mean* gradient, about F^sample / B near a minimum (module docstring), so
    lam = B / 2 is lambda_usual = 2 lam / B = 1: the penalty (1/2) sum F^sample (theta - theta*)^2
    is that Laplace approximation (tasks of similar size) for the mean-CE loss. It is a
    principled start, not a tuned value: sweep it (x10 steps) for a study; a lam found at one
    batch size B keeps its effect at another B' as lam * B' / B."""

    lam: float | None = None  # penalty weight (None: train batch size / 2)
    decay: float = 1.0  # decay of the accumulated importances, in [0, 1]

    def __post_init__(self):
        if self.lam is not None:
            check_weight("lam", self.lam)
        if not 0.0 <= self.decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {self.decay}")


def _tensors(params: dict) -> dict:
    return {
        task: {k: p.data.detach().cpu().clone() for k, p in d.items()} for task, d in params.items()
    }


def _params(tensors: dict, device) -> dict:
    return {
        int(task): {k: ParamData(k, init_tensor=t.to(device), device=device) for k, t in d.items()}
        for task, d in tensors.items()
    }


class OnlineEWCPlugin(EWCPlugin, StrategyPlugin):
    """Avalanche's EWC in online mode, with a checkpointable state and an importance pass that
    does not shift the training RNG."""

    def __init__(
        self,
        model: torch.nn.Module,
        lam: float,
        decay: float,
        device: torch.device | str = "cpu",
        micro_batch: int | None = None,
    ):
        super().__init__(ewc_lambda=lam, mode="online", decay_factor=decay)
        self.model = model  # the live model: what saved weights equal to it are rebuilt from
        self.device = torch.device(device)  # where a loaded state goes (the training device)
        self.micro_batch = micro_batch  # the run's --micro-batch: also for the importance pass

    def after_training_exp(self, strategy, **kwargs):
        with preserve_rng(strategy.device):
            super().after_training_exp(strategy, **kwargs)

    def compute_importances(
        self, model, criterion, optimizer, dataset, device, batch_size, num_workers=0
    ):
        """Avalanche's importances (squared mini-batch gradients, averaged over the mini-batches
        of the task), with each mini-batch's gradient accumulated over micro-batches when the run
        uses --micro-batch, so that the pass fits where training fits."""
        size = self.micro_batch
        if not size or size >= batch_size:
            return super().compute_importances(
                model, criterion, optimizer, dataset, device, batch_size, num_workers
            )
        model.eval()
        importances = zerolike_params_dict(model)
        collate = getattr(dataset, "collate_fn", None)
        loader = DataLoader(dataset, batch_size, collate_fn=collate, num_workers=num_workers)
        for batch in loader:
            x, y, tasks = batch[0], batch[1], batch[-1]
            optimizer.zero_grad()
            for (xs, ys, ts), share in micro_batches([x, y, tasks], size):
                out = avalanche_forward(model, xs.to(device), ts)
                (criterion(out, ys.to(device)) * share).backward()
            for (_, p), imp in zip(model.named_parameters(), importances.values(), strict=True):
                if p.grad is not None:
                    imp.data += p.grad.detach().pow(2)
        for imp in importances.values():
            imp.data /= float(len(loader))
        model.train()
        return importances

    def state_dict(self) -> dict:
        """Importances in full; the saved weights, which at a checkpoint (between tasks) are the
        model's own, as FROM_MODEL."""
        saved = _tensors(self.saved_params)
        return {
            "saved_params": {
                t: FROM_MODEL if equals_model(w, self.model) else w for t, w in saved.items()
            },
            "importances": _tensors(self.importances),
        }

    def load_state_dict(self, state: dict) -> None:
        weights = {k: p.detach().clone() for k, p in self.model.named_parameters()}
        saved = {t: weights if w == FROM_MODEL else w for t, w in state["saved_params"].items()}
        self.saved_params.clear()
        self.importances.clear()
        self.saved_params.update(_params(saved, self.device))
        self.importances.update(_params(state["importances"], self.device))


def build(context, config: Config) -> list:
    lam = context.train.batch_size / 2 if config.lam is None else config.lam
    micro = context.train.micro_batch
    return [OnlineEWCPlugin(context.model, lam, config.decay, context.device, micro)]
