"""Linear probe: full-batch multinomial logistic regression in torch (GPU when there is one).

The objective is sklearn's ``LogisticRegression(C=C)`` (multinomial, L2 on the weights, intercept
unpenalised), divided by ``C * n`` so it reads as a mean:

    mean_i CE(W x_i + b, y_i) + ||W||^2 / (2 C n)

solved with L-BFGS. ``C`` is swept on the validation split, then the probe is refit on the whole
train split with the best ``C`` and scored on the test split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ProbeResult:
    accuracy: float  # test accuracy of the refit probe, in [0, 1]
    best_c: float
    val_accuracy: float  # validation accuracy of the best C
    weight: torch.Tensor  # [C, D], for heads initialised from the probe
    bias: torch.Tensor  # [C]


def fit_logreg(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    c: float,
    max_iter: int = 300,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise mean cross-entropy + ||W||^2 / (2 c n); returns (W [K, D], b [K])."""
    n, d = x.shape
    if init is None:
        w = torch.zeros(num_classes, d, device=x.device, dtype=x.dtype)
        b = torch.zeros(num_classes, device=x.device, dtype=x.dtype)
    else:
        w, b = (t.detach().clone() for t in init)
    w.requires_grad_(True)
    b.requires_grad_(True)
    penalty = 1.0 / (2.0 * c * n)
    opt = torch.optim.LBFGS(
        [w, b], lr=1.0, max_iter=max_iter, history_size=20,
        tolerance_grad=1e-5, tolerance_change=1e-10, line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w.T + b, y) + penalty * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


def top1(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of correct argmax predictions, from exact integer counts."""
    return int((logits.argmax(dim=1) == y).sum()) / len(y)


def accuracy(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> float:
    return top1(x @ w.T + b, y)


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_mask: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    c_grid: Sequence[float],
    max_iter: int = 300,
) -> ProbeResult:
    """Sweep C on (train minus val -> val), refit on all of train with the best C, score on test.

    Features are L2-normalised here (DESIGN.md: the probe sees normalised embeddings).
    """
    train_x, test_x = F.normalize(train_x.float(), dim=1), F.normalize(test_x.float(), dim=1)
    fit_x, fit_y = train_x[~val_mask], train_y[~val_mask]
    val_x, val_y = train_x[val_mask], train_y[val_mask]
    best = (-1.0, None, None)
    init = None
    for c in sorted(c_grid):  # ascending C: each solution warm-starts the next, weaker penalty
        init = fit_logreg(fit_x, fit_y, num_classes, c, max_iter, init)
        score = accuracy(val_x, val_y, *init)
        if score > best[0]:
            best = (score, c, init)
    val_acc, best_c, start = best
    w, b = fit_logreg(train_x, train_y, num_classes, best_c, max_iter, start)
    return ProbeResult(accuracy(test_x, test_y, w, b), best_c, val_acc, w.cpu(), b.cpu())


def subsample(n: int, max_n: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_n`` of ``range(n)`` (all of them when max_n is None)."""
    if max_n is None or n <= max_n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_n, replace=False))
