"""Linear probe: full-batch multinomial logistic regression in torch (GPU when there is one).

The objective is sklearn's ``LogisticRegression(C=C)`` (multinomial, L2 on the weights, intercept
unpenalised), divided by ``C * n`` so it reads as a mean:

    mean_i CE(W x_i + b, y_i) + ||W||^2 / (2 C n)

solved with L-BFGS to a tolerance, not for a fixed number of iterations (``probe_solver``): a
fit stops once its estimated remaining decrease of the objective is below ``tol`` of the
objective's weight-dependent part (``Problem.scale``: at a small C the objective is about the
labels' entropy and only a small part of it depends on the weights), or after ``max_iter``
iterations, a safety cap (float32 and a float64 finish together). ``C`` is swept on the validation
split in ascending order, each fit warm-started from the last (with its curvature history), then
the probe is refit on the whole train split with the best ``C`` and scored on the test split.

L-BFGS runs in variables where the Hessian is about the identity (``probe_solver.Problem``: centred
features in their covariance's eigenbasis, scaled by the approximate curvature per direction, an
exact change of variables), so that weak penalties (large C, nearly separable data) converge in
tens of iterations rather than hundreds. Computation is float32 on the features' device, with a
cross-entropy whose loss and gradient keep their relative precision when the probe separates the
data; a fit that stalls at float32's resolution before meeting ``tol`` is finished in float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from benchmark.probe.solver import Problem, solve

TOL = 1e-5  # default: a fit stops when its remaining objective decrease is about TOL * objective
MAX_ITER = 5000  # default cap on the L-BFGS iterations of one fit (float32 and float64 finish)
WINDOW = 5  # the shortest run of iterations whose objective decrease ``converged_by_trend`` reads
HISTORY = 30  # L-BFGS curvature pairs kept (memory: 2 * HISTORY * K * (D + 1) numbers)


@dataclass(frozen=True)
class ProbeResult:
    accuracy: float  # test accuracy of the refit probe, in [0, 1]
    best_c: float
    # validation accuracy of the best C: the best of the sweep's validation scores (the images
    # that chose C), optimistic as an accuracy
    val_accuracy: float
    weight: torch.Tensor  # [C, D], for heads initialised from the probe
    bias: torch.Tensor  # [C]
    # The best C is the smallest or the largest of a grid of more than one value: the optimum may
    # lie outside the grid (widen it).
    c_at_edge: bool = False
    # Every fit (sweep and refit) met ``tol`` before ``max_iter``.
    converged: bool = True
    # The sweep's fit at the best C (train minus val, never a validation image): what scores
    # further validation images (benchmark/evaluation.py, record kind lp_val).
    sweep_weight: torch.Tensor | None = None
    sweep_bias: torch.Tensor | None = None


class PathFit(NamedTuple):
    c: float
    weight: torch.Tensor  # [K, D]
    bias: torch.Tensor  # [K]
    converged: bool  # met ``tol`` before ``max_iter``


def _penalty(c: float, n: int) -> float:
    return 1.0 / (2.0 * c * n)


def _dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def fit_logreg(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    c: float,
    max_iter: int = MAX_ITER,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    tol: float = TOL,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise mean cross-entropy + ||W||^2 / (2 c n); returns (W [K, D], b [K]).

    Stops when the remaining decrease of the objective is estimated below ``tol`` of its
    weight-dependent part (within 1e-4 of that part of sklearn's optimum at the default, at
    every C of the default grid: tests/test_probe.py); ``max_iter`` caps the L-BFGS iterations
    of a fit.
    From zero (no ``init``) the fit follows the path from a strong penalty to ``c``.
    """
    if init is None:  # from zero: along the path from a strong penalty, where the fit is easy
        fit = fit_path(x, y, num_classes, _continuation(x, num_classes, c), max_iter, tol=tol)[-1]
    else:
        fit = _fit_one(x, y, num_classes, c, max_iter, init, tol)
    return fit.weight, fit.bias


def _continuation(x: torch.Tensor, num_classes: int, c: float) -> list[float]:
    """C values rising by factors of 10 to ``c`` from about c0, where the penalty's curvature
    matches the data's, 1 / (c0 n) = mean feature variance / K (for a cold start at a large C,
    whose solution lies far from zero in directions of little curvature: slow for L-BFGS)."""
    variance = float(x.float().var(0).mean()) if len(x) > 1 else 0.0
    c0 = num_classes / (len(x) * variance) if variance > 0 else c
    steps = math.floor(math.log10(c / c0)) if c > c0 else 0
    return [c / 10**j for j in range(steps, 0, -1)] + [c]


def _fit_one(x, y, num_classes, c, max_iter, init, tol) -> PathFit:
    """One fit from ``init`` = (W, b)."""
    penalty = _penalty(c, len(x))
    problem = Problem(x, y, num_classes, _dtype(x), penalty)
    theta = problem.to_theta(*init)
    problem.loss_grad(theta)  # kappa at the start
    (theta,) = problem.rescale(penalty, problem.last_kappa, [theta], [])
    fit = solve(problem, theta, tol, max_iter)
    w, b = problem.to_wb(fit.theta)
    return PathFit(c, w.to(x.dtype), b.to(x.dtype), fit.converged)


def top1(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of correct argmax predictions, from exact integer counts."""
    return int((logits.argmax(dim=1) == y).sum()) / len(y)


def accuracy(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> float:
    return top1(x @ w.T + b, y)


def fit_path(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    c_grid: Sequence[float],
    max_iter: int = MAX_ITER,
    *,
    tol: float = TOL,
) -> list[PathFit]:
    """``fit_logreg`` at every C of ``c_grid``, in ascending order, each fit warm-started from the
    previous one (the path extrapolated linearly in log C where that starts lower) and keeping its
    L-BFGS curvature history, made exact for the new C."""
    grid = sorted(c_grid)
    problem = Problem(x, y, num_classes, _dtype(x), _penalty(grid[0], len(x)))
    wide: list = []  # the float64 problem, built only if a fit needs it
    theta = torch.zeros(problem.kd + problem.k, device=x.device, dtype=problem.x.dtype)
    fit = previous = None  # the last solution and the one before, in the current variables
    out = []
    for i, c in enumerate(grid):
        history, start = None, None
        if fit is not None:
            history = fit.history
            vectors = [fit.theta] + ([] if previous is None else [previous])
            mapped = problem.rescale(_penalty(c, problem.n), problem.last_kappa, vectors, history)
            theta = mapped[0]
            start = problem.loss_grad(theta)
            if len(mapped) == 2 and grid[i - 2] < grid[i - 1]:
                step = math.log(c / grid[i - 1]) / math.log(grid[i - 1] / grid[i - 2])
                guess = theta.add(theta - mapped[1], alpha=step)
                at_guess = problem.loss_grad(guess)
                if at_guess[0] < start[0]:
                    theta, start = guess, at_guess
            previous = mapped[0]
        fit = solve(problem, theta, tol, max_iter, history, start, wide)
        w, b = problem.to_wb(fit.theta)
        out.append(PathFit(c, w.to(x.dtype), b.to(x.dtype), fit.converged))
    return out


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_mask: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    c_grid: Sequence[float],
    max_iter: int = MAX_ITER,
    *,
    tol: float = TOL,
) -> ProbeResult:
    """Sweep C on (train minus val -> val), refit on all of train with the best C, score on test.

    Features are L2-normalised here (docs/design.md section 3: the probe sees normalised
    embeddings). Ties in validation accuracy go to the smaller C. Each fit stops at ``tol`` (see
    ``fit_logreg``) or after ``max_iter`` iterations; the refit starts from the sweep's solution
    at the best C.
    """
    train_x, test_x = F.normalize(train_x.float(), dim=1), F.normalize(test_x.float(), dim=1)
    val_mask = val_mask.to(train_x.device)
    fit_x, fit_y = train_x[~val_mask], train_y[~val_mask]
    val_x, val_y = train_x[val_mask], train_y[val_mask]
    path = fit_path(fit_x, fit_y, num_classes, c_grid, max_iter, tol=tol)
    scores = [accuracy(val_x, val_y, p.weight, p.bias) for p in path]
    best = scores.index(max(scores))  # the first: the smallest C of those tied
    chosen = path[best]
    refit = _fit_one(
        train_x, train_y, num_classes, chosen.c, max_iter, (chosen.weight, chosen.bias), tol
    )
    converged = refit.converged and all(p.converged for p in path)
    edge = len(path) > 1 and chosen.c in (path[0].c, path[-1].c)
    w, b = refit.weight, refit.bias
    return ProbeResult(
        accuracy(test_x, test_y, w, b),
        chosen.c,
        scores[best],
        w.cpu(),
        b.cpu(),
        edge,
        converged,
        chosen.weight,
        chosen.bias,
    )
