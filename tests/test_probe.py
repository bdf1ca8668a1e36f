import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

import benchmark.probe.fit as probe
import benchmark.probe.solver as probe_solver
from benchmark.config import ProbeConfig
from benchmark.probe.fit import accuracy, fit_logreg, fit_path, linear_probe
from benchmark.probe.splits import subsample


def classification(n, n_train, features, classes, clusters, sep, seed):
    """sklearn's make_classification, L2-normalised, split into (x, y) train and test."""
    x, y = make_classification(
        n_samples=n,
        n_features=features,
        n_informative=features // 2,
        n_classes=classes,
        n_clusters_per_class=clusters,
        class_sep=sep,
        random_state=seed,
    )
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


@pytest.fixture(scope="module")
def problem():
    return classification(1600, 1200, 32, 6, clusters=2, sep=1.2, seed=0)


@pytest.mark.parametrize("c", [0.3, 10.0, 1000.0])
def test_fit_matches_sklearn(problem, c):
    xtr, ytr, xte, yte = problem
    ref = LogisticRegression(C=c, max_iter=10000, tol=1e-8).fit(xtr, ytr)
    w, b = fit_logreg(torch.tensor(xtr, dtype=torch.float32), torch.tensor(ytr), 6, c)
    ours = accuracy(torch.tensor(xte, dtype=torch.float32), torch.tensor(yte), w, b)
    assert abs(ours - ref.score(xte, yte)) <= 0.01
    # same optimum, not only the same accuracy
    np.testing.assert_allclose(w.numpy(), ref.coef_, atol=0.05 * np.abs(ref.coef_).max())


def test_linear_probe_sweep_picks_validation_best_and_matches_sklearn(problem):
    xtr, ytr, xte, yte = problem
    grid = (0.01, 1.0, 100.0)
    val = np.zeros(len(ytr), dtype=bool)
    val[:200] = True
    res = linear_probe(
        torch.tensor(xtr, dtype=torch.float32),
        torch.tensor(ytr),
        torch.tensor(val),
        torch.tensor(xte, dtype=torch.float32),
        torch.tensor(yte),
        6,
        grid,
    )
    # independent reference: sklearn sweep on the same split, refit on all of train
    scores = {
        c: LogisticRegression(C=c, max_iter=10000)
        .fit(xtr[~val], ytr[~val])
        .score(xtr[val], ytr[val])
        for c in grid
    }
    best = max(grid, key=lambda c: (scores[c], -c))
    assert res.best_c == best
    ref = LogisticRegression(C=best, max_iter=10000).fit(xtr, ytr)
    assert abs(res.accuracy - ref.score(xte, yte)) <= 0.01
    assert res.weight.shape == (6, 32) and res.bias.shape == (6,)
    assert res.c_at_edge == (best in (min(grid), max(grid))) and res.converged


def test_probe_normalises_features():
    # Scaling every feature vector must not change the probe: it sees L2-normalised embeddings.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 8, generator=g)
    y = (x[:, 0] > 0).long()
    val = torch.zeros(300, dtype=torch.bool)
    val[:50] = True
    a = linear_probe(x, y, val, x[:100], y[:100], 2, (1.0,))
    b = linear_probe(x * 37.0, y, val, x[:100] * 0.01, y[:100], 2, (1.0,))
    assert a.accuracy == b.accuracy


def test_subsample():
    assert list(subsample(5, None)) == [0, 1, 2, 3, 4]
    s = subsample(1000, 100)
    assert len(s) == 100 and len(set(s)) == 100 and list(s) == sorted(s)
    np.testing.assert_array_equal(s, subsample(1000, 100))


# --- convergence to sklearn's optimum ----------------------------------------------------------
# A problem where weak regularisation matters: at C >= 1e3 the probe separates 99 % of the train
# split, the weights are large and a fixed iteration count used to stop far from the optimum. At
# C <= 1e-4 the opposite: the weights are tiny, the objective is about the labels' entropy and only
# its weight-dependent part (about 1e-4 of it at C = 1e-6) says where the weights point.

GAP = 1e-4  # every fit's objective gap to sklearn's optimum, relative to its weight-dependent part


def objective(x, y, w, b, c):
    """sklearn's LogisticRegression(C) objective divided by C * n, in float64 numpy."""
    x, w, b = (np.asarray(a, dtype=np.float64) for a in (x, w, b))
    z = x @ w.T + b
    m = z.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    return (lse - z[np.arange(len(y)), y]).mean() + (w * w).sum() / (2 * c * len(y))


def weight_part(y, best):
    """The part of the optimal objective ``best`` that the weights decide: the smaller of the
    objective itself and what the weights take off the best weightless objective (W = 0, b = log
    class frequencies: the labels' entropy)."""
    freq = np.bincount(y) / len(y)
    entropy = -(freq[freq > 0] * np.log(freq[freq > 0])).sum()
    return min(best, entropy - best)


@pytest.fixture(scope="module")
def hard():
    return classification(3000, 2400, 64, 10, clusters=1, sep=2.0, seed=1)


_REFERENCE = {}


def sklearn_optimum(x, y, c):
    """sklearn's multinomial lbfgs run to convergence (cached: several tests share a fit)."""
    key = (x.shape, x.tobytes(), c)
    if key not in _REFERENCE:
        with threadpool_limits(1):  # sklearn's threads contend on a small machine: 20x slower
            ref = LogisticRegression(C=c, tol=1e-12, max_iter=100_000).fit(x, y)
        _REFERENCE[key] = (ref.coef_, ref.intercept_)
    return _REFERENCE[key]


def assert_at_optimum(x, y, w, b, c, others=()):
    """Our fit is sklearn's (multinomial lbfgs at tol 1e-12; its C is ours: both minimise
    C * sum CE + ||W||^2 / 2 with the intercept unpenalised): the same objective, to GAP of its
    weight-dependent part, and the same predictions on 99 % of the points, at any C."""
    rw, rb = sklearn_optimum(x, y, c)
    ours, best = objective(x, y, w, b, c), objective(x, y, rw, rb, c)
    assert (ours - best) / weight_part(y, best) <= GAP, (c, ours, best)
    for pts in (x, *others):  # the same classifier, not only the same objective
        agree = (
            (pts @ np.asarray(w, np.float64).T + np.asarray(b)).argmax(1)
            == (pts @ rw.T + rb).argmax(1)
        ).mean()
        assert agree >= 0.99, (c, agree)


@pytest.mark.parametrize("c", [1e-5, 0.1, 10.0, 1000.0, 10000.0])
def test_fit_reaches_sklearn_optimum(hard, c):
    xtr, ytr, xte, _ = hard
    w, b = fit_logreg(torch.tensor(xtr, dtype=torch.float32), torch.tensor(ytr), 10, c)
    assert_at_optimum(xtr, ytr, w.numpy(), b.numpy(), c, [xte])


def test_path_reaches_sklearn_optimum_at_every_c_of_the_default_grid(hard):
    xtr, ytr, xte, _ = hard
    grid = ProbeConfig().c_grid
    path = fit_path(torch.tensor(xtr, dtype=torch.float32), torch.tensor(ytr), 10, grid[::-1])
    assert [p.c for p in path] == sorted(grid)  # ascending, whatever the order given
    for p in path:
        assert p.converged
        assert_at_optimum(xtr, ytr, p.weight.numpy(), p.bias.numpy(), p.c, [xte])


def test_linear_probe_refit_reaches_sklearn_optimum(hard):
    xtr, ytr, xte, yte = hard
    val = np.zeros(len(ytr), dtype=bool)
    val[::5] = True
    t = torch.tensor
    grid = (1.0, 1000.0, 10000.0)
    res = linear_probe(t(xtr), t(ytr), t(val), t(xte), t(yte), 10, grid, 1000)  # positional cap
    assert res.converged
    assert_at_optimum(xtr, ytr, res.weight.numpy(), res.bias.numpy(), res.best_c, [xte])


def test_c_at_edge():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 8, generator=g)
    y = (x[:, 0] > 0).long()
    val = torch.zeros(400, dtype=torch.bool)
    val[:100] = True
    # an easy problem: the weakest penalty of a strong-penalty grid wins, at the edge
    res = linear_probe(x, y, val, x, y, 2, (1e-4, 1e-3, 1e-2))
    assert res.best_c == 1e-2 and res.c_at_edge
    assert not linear_probe(x, y, val, x, y, 2, (1.0,)).c_at_edge  # one C is no grid


def test_float32_stall_is_finished_in_float64(hard, monkeypatch):
    # tol=0 can only end in float32 by a stalled line search; the fit goes on in float64
    dtypes = []
    problem_cls = probe_solver.Problem

    class Recording(problem_cls):
        def __init__(self, x, y, k, dtype, *args):
            dtypes.append(dtype)
            super().__init__(x, y, k, dtype, *args)

    monkeypatch.setattr(probe, "Problem", Recording)  # float32, in fit_path
    monkeypatch.setattr(probe_solver, "Problem", Recording)  # the float64 finish, in solve
    xtr, ytr, _, _ = hard
    x32 = torch.tensor(xtr[:600], dtype=torch.float32)
    w, b = fit_logreg(x32, torch.tensor(ytr[:600]), 10, 100.0, max_iter=400, tol=0.0)
    assert dtypes == [torch.float32, torch.float64]
    assert w.dtype == torch.float32
    rw, rb = sklearn_optimum(xtr[:600], ytr[:600], 100.0)
    best = objective(xtr[:600], ytr[:600], rw, rb, 100.0)
    assert objective(xtr[:600], ytr[:600], w.numpy(), b.numpy(), 100.0) <= best * (1 + 1e-6)


def test_fit_logreg_warm_start_at_the_optimum_stays_there(hard):
    xtr, ytr, _, _ = hard
    x, y = torch.tensor(xtr, dtype=torch.float32), torch.tensor(ytr)
    w, b = fit_logreg(x, y, 10, 10.0)
    w2, b2 = fit_logreg(x, y, 10, 10.0, 1000, (w, b))
    assert objective(xtr, ytr, w2.numpy(), b2.numpy(), 10.0) <= objective(
        xtr, ytr, w.numpy(), b.numpy(), 10.0
    ) * (1 + 1e-6)


def test_probe_config_defaults_are_the_probe_defaults():
    # callers that pass only max_iter get the configured tolerance
    assert ProbeConfig().tol == probe.TOL and ProbeConfig().max_iter == probe.MAX_ITER


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_probe_on_gpu_matches_cpu(hard):
    xtr, ytr, xte, yte = hard
    val = torch.zeros(len(ytr), dtype=torch.bool)
    val[::5] = True
    args = [torch.tensor(xtr), torch.tensor(ytr), val, torch.tensor(xte), torch.tensor(yte)]
    cpu = linear_probe(*args, 10, (1.0, 100.0))
    gpu = linear_probe(*(a.cuda() for a in args), 10, (1.0, 100.0))
    assert gpu.best_c == cpu.best_c and abs(gpu.accuracy - cpu.accuracy) <= 0.005


def test_the_chosen_c_of_every_probe_is_recorded(tmp_path):
    # the C each stage's probe chose goes on its lp record (probe_c) and into probes.csv; the
    # records.csv columns stay as they were
    from pathlib import Path

    import pandas as pd
    from torch import nn
    from torchvision.transforms import ToTensor

    from benchmark.evaluation import EvalDataset, MatrixEvaluation
    from benchmark.probe.features import FeaturePass, Transformed, extract_features
    from benchmark.probe.splits import probe_split
    from benchmark.results import RECORD_COLUMNS, RunResults
    from tasks.synthetic import synthetic_task

    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 6))
    data = synthetic_task("control", seed=7, num_classes=3, n_train=20, n_test=10, size=8)
    data = data.build(Path("."), False)
    cpu, grid = torch.device("cpu"), (1e-4, 1.0, 100.0)
    datasets = [EvalDataset("control", "control", None, data)]
    probe_config = ProbeConfig(c_grid=grid)
    features = FeaturePass(cpu, 16)
    evaluation = MatrixEvaluation(datasets, ToTensor(), probe_config, cpu, ["t"], features)
    model = type("Model", (), {"encoder": encoder, "heads": {}})()
    records = evaluation.evaluate(model, 1)
    # the reference: the probe on the same features and split
    idx, mask = probe_split(len(data.train), None)
    with torch.no_grad():
        x = extract_features(encoder, Transformed(data.train, ToTensor()), cpu, 16)
    y = torch.tensor(np.asarray(data.train.targets))
    best_c = linear_probe(x[idx], y[idx], torch.tensor(mask), x, y, 3, grid).best_c
    (lp,) = [r for r in records if r["kind"] == "lp"]
    assert lp["probe_c"] == best_c
    assert all("probe_c" not in r for r in records if r["kind"] != "lp")
    results = RunResults(tmp_path, {"sequence": "s", "strategy": "ft", "seed": 0}, ["t"], [])
    results.append(records)
    results.write()
    assert list(pd.read_csv(tmp_path / "records.csv").columns) == RECORD_COLUMNS
    probes = pd.read_csv(tmp_path / "probes.csv")
    row = {"sequence": "s", "strategy": "ft", "seed": 0, "stage": 1, "stage_task": "t"}
    row.update({"dataset": "control", "role": "control", "c": best_c})
    assert probes.to_dict("records") == [row]
