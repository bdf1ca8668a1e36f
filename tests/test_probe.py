import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from benchmark.probe import accuracy, fit_logreg, linear_probe, subsample


@pytest.fixture(scope="module")
def problem():
    x, y = make_classification(
        n_samples=1600,
        n_features=32,
        n_informative=16,
        n_classes=6,
        n_clusters_per_class=2,
        class_sep=1.2,
        random_state=0,
    )
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return x[:1200], y[:1200], x[1200:], y[1200:]


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
