"""The perf mode's probe figures: ``linear_probe`` timed on random features of each dataset's
shape (probe train size, test size, feature dimension, classes), and the comparison with sklearn
(``benchmark.probe_bench``) on one of them."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from benchmark.config import ProbeConfig
from benchmark.perf.plan import DatasetShape

SKLEARN_MAX = (5000, 2000)  # train, test images of the sklearn comparison (it runs on the CPU)


def probe_features(
    n_train: int, n_test: int, dim: int, num_classes: int, device: torch.device, seed: int = 0
):
    """Gaussian class means plus noise (benchmark.probe.bench's problem, whose noise 6 at 512
    dimensions is scaled to keep its separation at ``dim``), every class in both splits:
    (x_train, y_train, x_test, y_test) on ``device``."""
    noise = 6.0 * (dim / 512) ** 0.5
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(num_classes, dim, generator=g)

    def split(n: int):
        y = (torch.randperm(n, generator=g) % num_classes).long()
        x = means[y] + noise * torch.randn(n, dim, generator=g)
        return F.normalize(x, dim=1).to(device), y.to(device)

    return (*split(n_train), *split(n_test))


def probe_seconds(
    n_train: int, n_test: int, dim: int, num_classes: int, device: torch.device, probe: ProbeConfig
) -> dict:
    """One ``linear_probe`` (C sweep on train minus val, refit, test) on random features of a
    dataset's shape, timed."""
    from benchmark.probe.fit import linear_probe
    from benchmark.probe.splits import probe_split

    xtr, ytr, xte, yte = probe_features(n_train, n_test, dim, num_classes, device)
    _, mask = probe_split(n_train, None)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    result = linear_probe(
        xtr,
        ytr,
        torch.as_tensor(mask, device=device),
        xte,
        yte,
        num_classes,
        probe.c_grid,
        probe.max_iter,
        tol=probe.tol,
    )
    sync()
    return {
        "train": n_train,
        "test": n_test,
        "dim": dim,
        "classes": num_classes,
        "seconds": time.perf_counter() - start,
        "accuracy": result.accuracy,
        "best_c": result.best_c,
        "converged": result.converged,
    }


def sklearn_comparison(
    n_train: int, n_test: int, dim: int, num_classes: int, device: torch.device, probe: ProbeConfig
) -> dict:
    """benchmark.probe.bench.probe_vs_sklearn on random features of one dataset's shape."""
    from benchmark.probe.bench import probe_vs_sklearn
    from benchmark.probe.splits import probe_split

    xtr, ytr, xte, yte = (
        t.cpu().numpy()
        for t in probe_features(n_train, n_test, dim, num_classes, torch.device("cpu"))
    )
    _, mask = probe_split(n_train, None)
    out = probe_vs_sklearn(xtr, ytr, xte, yte, mask, probe.c_grid, device=str(device))
    keep = (
        "seconds_ours",
        "seconds_sklearn",
        "speedup",
        "accuracy_ours",
        "accuracy_sklearn",
        "best_c_ours",
        "best_c_sklearn",
        "max_gap",
        "shape",
        "device",
    )
    return {k: out[k] for k in keep if k in out}


def probe_runs(plan: list[DatasetShape], dim: int, device: torch.device):
    """The probe's settings (the protocol's) and its seconds per dataset, after one untimed
    warm-up fit (the first fit of a process pays for lazy initialisation)."""
    probe = ProbeConfig()
    probe_seconds(200, 50, dim, 4, device, probe)
    out = {}
    for d in tqdm(plan, desc="perf probes", unit="probe", leave=False, disable=None):
        out[d.name] = probe_seconds(d.train, d.test, dim, d.num_classes, device, probe)
    return probe, out


def sklearn_run(d: DatasetShape, dim: int, device: torch.device, probe: ProbeConfig) -> dict:
    """The comparison on dataset ``d``, its splits capped at SKLEARN_MAX."""
    n_train, n_test = min(d.train, SKLEARN_MAX[0]), min(d.test, SKLEARN_MAX[1])
    out = sklearn_comparison(n_train, n_test, dim, d.num_classes, device, probe)
    return {"dataset": d.name, "cap": list(SKLEARN_MAX), **out}
