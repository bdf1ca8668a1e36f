"""The linear probe against sklearn: the same C sweep and refit, timed, with the objective gaps.

``probe_vs_sklearn`` runs ``benchmark.probe.linear_probe`` (sweep C on train minus val, pick the
best validation accuracy, refit on all of train, score on test) and the same procedure with
sklearn's ``LogisticRegression`` (multinomial, lbfgs, warm-started along ascending C like ours),
and compares their times, choices, accuracies and objectives. ``python -m benchmark.probe_bench``
runs it on a synthetic problem and prints the result as JSON. Importing this module does nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from contextlib import nullcontext

import numpy as np

# sklearn's tolerance (its gtol on the gradient's max-abs) for equal accuracy: on the default
# synthetic problem (20,000 x 512, 100 classes) 1e-7 is the largest power of ten whose sweep is
# within 1e-4 of a tol=1e-10 run at every C of the default grid (1e-6 is 2e-4 and 9e-3 off at
# C = 1e3 and 1e4).
SKLEARN_TOL = 1e-7


def objective(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray, c: float) -> float:
    """sklearn's LogisticRegression(C) objective divided by C * n, in float64."""
    x, w, b = (np.asarray(a, dtype=np.float64) for a in (x, w, b))
    z = x @ w.T + b
    m = z.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    return float((lse - z[np.arange(len(y)), y]).mean() + (w * w).sum() / (2 * c * len(y)))


def _normalised(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _sklearn_probe(xtr, ytr, xte, yte, val_mask, grid, tol, max_iter):
    from sklearn.linear_model import LogisticRegression

    fit_x, fit_y, val_x, val_y = xtr[~val_mask], ytr[~val_mask], xtr[val_mask], ytr[val_mask]
    model = LogisticRegression(tol=tol, max_iter=max_iter, warm_start=True)
    path, best = {}, None
    for c in grid:  # ascending: each fit warm-starts from the last
        model.set_params(C=c).fit(fit_x, fit_y)
        score = model.score(val_x, val_y)
        path[c] = (model.coef_.copy(), model.intercept_.copy(), int(model.n_iter_.max()))
        if best is None or score > best[1]:  # ties go to the smaller C, as in linear_probe
            best = (c, score)
    refit = LogisticRegression(C=best[0], tol=tol, max_iter=max_iter, warm_start=True)
    refit.coef_, refit.intercept_ = path[best[0]][0].copy(), path[best[0]][1].copy()
    refit.fit(xtr, ytr)
    return path, best, refit


def probe_vs_sklearn(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    val_mask: np.ndarray,
    c_grid: Sequence[float],
    *,
    sklearn_tol: float = SKLEARN_TOL,
    sklearn_max_iter: int = 100_000,
    sklearn_blas_threads: int | None = None,
    device: str = "cpu",
) -> dict:
    """Our sweep + refit (``linear_probe`` with its defaults, on ``device``) against sklearn's.

    Returns seconds for each (``seconds_ours``, ``seconds_sklearn``) and ``speedup`` (sklearn's
    seconds over ours), both test accuracies, both chosen C and validation accuracies, and
    ``gaps``: for every C, (our objective - sklearn's) / sklearn's on the sweep's fit split
    (train minus val), both evaluated by ``objective`` (negative: ours is lower); ``refit_gap``
    likewise on all of train where both chose the same C. sklearn's runs are float64 with
    ``sklearn_tol`` (see SKLEARN_TOL) and, if given, ``sklearn_blas_threads`` BLAS threads
    (fewer can be faster on a small, shared machine). The features are L2-normalised for both,
    as ``linear_probe`` does.
    """
    grid = sorted(c_grid)
    val_mask = np.asarray(val_mask, dtype=bool)
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    ours, our_path, seconds_ours = _ours(
        x_train, y_train, val_mask, x_test, y_test, num_classes, grid, device
    )
    xtr, xte = _normalised(x_train), _normalised(x_test)
    (sk_path, sk_best, sk_refit), seconds_sklearn = _theirs(
        xtr,
        y_train,
        xte,
        y_test,
        val_mask,
        grid,
        sklearn_tol,
        sklearn_max_iter,
        sklearn_blas_threads,
    )
    gaps, refit_gap = _gaps(xtr, y_train, val_mask, our_path, sk_path, ours, sk_best, sk_refit)
    shape = {
        "train": list(np.shape(x_train)),
        "test": list(np.shape(x_test)),
        "classes": num_classes,
        "val": int(val_mask.sum()),
    }
    return {
        "seconds_ours": seconds_ours,
        "seconds_sklearn": seconds_sklearn,
        "speedup": seconds_sklearn / seconds_ours,
        "accuracy_ours": ours.accuracy,
        "accuracy_sklearn": float(sk_refit.score(xte, y_test)),
        "best_c_ours": ours.best_c,
        "best_c_sklearn": sk_best[0],
        "val_accuracy_ours": ours.val_accuracy,
        "val_accuracy_sklearn": float(sk_best[1]),
        "gaps": gaps,
        "max_gap": max(gaps.values()),
        "refit_gap": refit_gap,
        "converged_ours": ours.converged,
        "c_at_edge_ours": ours.c_at_edge,
        "sklearn_iterations": {repr(c): it for c, (_, _, it) in sk_path.items()},
        "sklearn_tol": sklearn_tol,
        "sklearn_blas_threads": sklearn_blas_threads,
        "device": str(device),
        "torch_threads": _torch_threads(),
        "shape": shape,
    }


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _theirs(xtr, y_train, xte, y_test, val_mask, grid, tol, max_iter, blas_threads):
    """sklearn's timed sweep + refit, with at most ``blas_threads`` BLAS threads if given."""
    limits = nullcontext()
    if blas_threads is not None:
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(limits=blas_threads, user_api="blas")
    with limits:
        start = time.perf_counter()
        out = _sklearn_probe(xtr, y_train, xte, y_test, val_mask, grid, tol, max_iter)
        return out, time.perf_counter() - start


def _ours(x_train, y_train, val_mask, x_test, y_test, num_classes, grid, device):
    """Our timed sweep + refit, and the sweep's solutions (the same computation, not timed)."""
    import torch

    from benchmark.probe.fit import fit_path, linear_probe

    dev = torch.device(device)
    args = [torch.as_tensor(a).to(dev) for a in (x_train, y_train, val_mask, x_test, y_test)]
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    ours = linear_probe(*args, num_classes, grid)
    sync()
    seconds = time.perf_counter() - start
    fit_x = torch.nn.functional.normalize(args[0].float(), dim=1)[~args[2]]
    return ours, fit_path(fit_x, args[1][~args[2]], num_classes, grid), seconds


def _gaps(xtr, y_train, val_mask, our_path, sk_path, ours, sk_best, sk_refit):
    """Relative objective gaps, ours minus sklearn's, per C of the sweep and at the refit."""
    fx, fy = xtr[~val_mask], y_train[~val_mask]
    gaps = {}
    for p in our_path:
        w, b, _ = sk_path[p.c]
        ref = objective(fx, fy, w, b, p.c)
        gaps[repr(p.c)] = (
            objective(fx, fy, p.weight.cpu().numpy(), p.bias.cpu().numpy(), p.c) - ref
        ) / abs(ref)
    refit_gap = None
    if ours.best_c == sk_best[0]:
        ref = objective(xtr, y_train, sk_refit.coef_, sk_refit.intercept_, ours.best_c)
        mine = objective(xtr, y_train, ours.weight.numpy(), ours.bias.numpy(), ours.best_c)
        refit_gap = (mine - ref) / abs(ref)
    return gaps, refit_gap


def synthetic_problem(
    n_train: int = 20_000,
    n_test: int = 5_000,
    dim: int = 512,
    num_classes: int = 100,
    noise: float = 6.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian class means (N(0, I)) plus N(0, noise^2 I) noise, L2-normalised, float32.

    At noise 6 a probe reaches about 80 % test accuracy, the best C is interior (1) and at
    C >= 100 the probe separates the train split: weak penalties are slow to converge."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((num_classes, dim)).astype(np.float32)
    y = rng.integers(0, num_classes, n_train + n_test)
    x = means[y] + noise * rng.standard_normal((n_train + n_test, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def main(argv: Sequence[str] | None = None) -> dict:
    from benchmark.config import ProbeConfig

    ap = argparse.ArgumentParser(prog="python -m benchmark.probe.bench", description=__doc__)
    ap.add_argument("--n-train", type=int, default=20_000)
    ap.add_argument("--n-test", type=int, default=5_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--noise", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--sklearn-tol", type=float, default=SKLEARN_TOL)
    ap.add_argument("--sklearn-blas-threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    xtr, ytr, xte, yte = synthetic_problem(a.n_train, a.n_test, a.dim, a.classes, a.noise, a.seed)
    val = np.zeros(len(ytr), dtype=bool)
    val[
        np.random.default_rng(a.seed + 1).permutation(len(ytr))[: int(a.val_fraction * len(ytr))]
    ] = True
    out = probe_vs_sklearn(
        xtr,
        ytr,
        xte,
        yte,
        val,
        ProbeConfig().c_grid,
        sklearn_tol=a.sklearn_tol,
        sklearn_blas_threads=a.sklearn_blas_threads,
        device=a.device,
    )
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
