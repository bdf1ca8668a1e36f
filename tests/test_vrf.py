"""VRF and OSE (benchmark/vrf/functions.py): the pure functions against independent numpy /
sklearn computations and the official rule re-implemented (the measure inside MatrixEvaluation
and the command line are tests/test_vrf_measure.py)."""

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from benchmark.errors import CFBenchError
from benchmark.vrf.functions import (
    VRFSettings,
    calibrate_temperature,
    ensemble_predict,
    ensemble_probs,
    knn_kth_distance,
    mean_confidence,
    missing_neighbour,
    vrf_weight,
    zsf_k,
    zsf_mask,
)
from strategies import resolve
from tests.helpers.vrf_official import official_k, official_weights, softmax, unit

CPU = torch.device("cpu")


# -- pure functions -------------------------------------------------------------------------------
def test_zsf_mask_is_fine_tuned_right_and_zero_shot_wrong_within_the_train_part():
    g = np.random.default_rng(0)
    ft, zs = g.normal(size=(200, 5)), g.normal(size=(200, 5))
    y = g.integers(0, 5, size=200)
    train = g.random(200) < 0.8
    expected = (ft.argmax(1) == y) & (zs.argmax(1) != y) & train
    got = zsf_mask(torch.tensor(ft), torch.tensor(zs), torch.tensor(y), torch.tensor(train))
    np.testing.assert_array_equal(got.numpy(), expected)
    assert 0 < expected.sum() < train.sum()
    no_mask = zsf_mask(torch.tensor(ft), torch.tensor(zs), torch.tensor(y)).numpy()
    np.testing.assert_array_equal(no_mask, (ft.argmax(1) == y) & (zs.argmax(1) != y))


# -- K and the weight, against the official rule (BeierZhu/VRF; tests/helpers/vrf_official.py) --
@pytest.mark.parametrize(
    "n_zsf, n_train, k",
    [
        (30, 1000, 30),
        (60, 20000, 3),
        (25, 10000, 2),
        (35, 10000, 4),  # halves to even: 2.5, 3.5
        (3, 100000, 0),
        (1, 2000, 0),
        (3, 2000, 2),
        (0, 100, 0),  # 0.03, 0.5 -> 0; 1.5 -> 2
        (50, 100, 500),
        (1, 1, 1000),  # not clipped to |ZSF|
        (
            203,
            400,
            507,
        ),  # 203 / 400 * 1000 = 507.49999999999994 as floats; 1000 * 203 / 400 = 507.5
        (1, 3384, 0),
        (2, 3384, 1),
        (1000, 3384, 296),
    ],  # DTD's training part: 0.295, 0.591, 295.5
)
def test_k_is_the_official_round_of_the_zsf_fraction_times_1000_unclipped(n_zsf, n_train, k):
    assert zsf_k(n_zsf, n_train) == official_k(n_zsf, n_train) == k


def test_k_follows_the_official_rule_on_every_small_set():
    got = [(n, t, zsf_k(n, t)) for t in range(1, 401) for n in range(t + 1)]
    assert got == [(n, t, official_k(n, t)) for n, t, _ in got]
    for n_zsf, n_train in ((1, 0), (-1, 10), (11, 10)):
        with pytest.raises(ValueError):
            zsf_k(n_zsf, n_train)


# three ZSF images e1, e2, e3 and three queries; squared distances by hand, 2 - 2 cos:
BANK = np.eye(3)
QUERIES = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 1]]) / np.sqrt([[1], [2], [3]])
R2, R3 = 2 - np.sqrt(2), 2 - 2 / np.sqrt(3)  # 0.586, 0.845
KTH = {1: [0, R2, R3], 2: [2, R2, R3], 3: [2, 2, R3]}  # K-th smallest of [0,2,2], [R2,R2,2], [R3]*3


@pytest.mark.parametrize(
    "n_train, k",
    [
        (3000, 1),
        (2000, 2),
        (1000, 3),  # defined: 1 <= K <= |ZSF|
        (750, 4),
        (100, 30),  # K > |ZSF|: the official w is 0
        (6000, 0),
        (10000, 0),
    ],  # K = 0 (round(0.5), round(0.3)): the official code fails
)
def test_weight_against_the_official_rule_and_distances_by_hand(n_train, k):
    assert zsf_k(len(BANK), n_train) == k
    assert (missing_neighbour(k, len(BANK)) is None) == (k in KTH)  # the stdout note's reason
    q, bank = torch.tensor(QUERIES), torch.tensor(BANK)
    got = vrf_weight(knn_kth_distance(q, bank, zsf_k(len(BANK), n_train))).numpy()
    if k in KTH:
        by_hand = 1 / (1 + np.exp((np.array(KTH[k]) - 1.5) / 0.6))
        np.testing.assert_allclose(got, by_hand, rtol=1e-12)
        np.testing.assert_allclose(got, official_weights(QUERIES, BANK, n_train), rtol=1e-6)
        assert got.min() > 0.05
        return
    assert (got == 0).all()  # no K-th neighbour: the zero-shot prediction, exactly
    if k > len(BANK):
        assert (official_weights(QUERIES, BANK, n_train) == 0).all()
    else:
        with pytest.raises(AssertionError, match="k > 0"):
            official_weights(QUERIES, BANK, n_train)
    ft, zs = torch.tensor([[5.0, 0.0], [0.0, 5.0], [5.0, 0.0]]), torch.tensor([[0.0, 1.0]] * 3)
    pred = ensemble_predict(ft, zs, torch.tensor(got), 1.0, 1.0)
    assert pred.tolist() == [1, 1, 1]  # zero-shot argmax, whatever the fine-tuned side says


def test_weights_on_random_sets_equal_the_official_rule_wherever_it_is_defined():
    g = np.random.default_rng(5)
    queries, bank = unit(g.normal(size=(40, 8))), unit(g.normal(size=(37, 8)))
    seen = set()
    for n_train in (40, 500, 1000, 1200, 2500, 9000, 30000, 74000, 80000):
        k = official_k(len(bank), n_train)
        got = vrf_weight(knn_kth_distance(torch.tensor(queries), torch.tensor(bank), k)).numpy()
        if k == 0:
            seen.add("K = 0")
            with pytest.raises(AssertionError):
                official_weights(queries, bank, n_train)
            assert (got == 0).all()
            continue
        seen.add("defined" if k <= len(bank) else "K > |ZSF|")
        np.testing.assert_allclose(got, official_weights(queries, bank, n_train), atol=1e-6)
    assert seen == {"defined", "K > |ZSF|", "K = 0"}


@pytest.mark.parametrize("k", [1, 4, 37])
def test_knn_kth_distance_is_the_squared_distance_to_the_kth_neighbour(k):
    g = np.random.default_rng(k)
    bank, queries = unit(g.normal(size=(37, 8))), unit(g.normal(size=(53, 8)))
    dist, _ = NearestNeighbors(n_neighbors=k).fit(bank).kneighbors(queries)
    expected = dist[:, -1] ** 2
    for max_elements in (1 << 24, 37 * 5, 1):  # one chunk, chunks of 5 queries, of one query
        got = knn_kth_distance(torch.tensor(queries), torch.tensor(bank), k, max_elements)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-10)
    q, b = torch.tensor(queries), torch.tensor(bank)
    empty = torch.zeros(0, 8, dtype=torch.float64)
    for missing in (knn_kth_distance(q, empty, 1), knn_kth_distance(q, b, 38)):
        assert torch.isinf(missing).all() and len(missing) == 53
    assert torch.isinf(knn_kth_distance(q, b, 0)).all()  # cfbench's K = 0
    with pytest.raises(ValueError):
        knn_kth_distance(q, b, -1)


def test_vrf_weight_is_the_official_sigmoid():
    d = np.array([0.0, 0.5, 1.5, 2.0, 3.9, np.inf])
    for a, b in ((1.5, 0.6), (0.2, 0.05)):
        expected = 1 / (1 + np.exp((d - a) / b))
        np.testing.assert_allclose(vrf_weight(torch.tensor(d), a, b).numpy(), expected)
    assert vrf_weight(torch.tensor(1.5)).item() == 0.5  # w(a) = 1/2
    assert vrf_weight(torch.tensor(np.inf)).item() == 0.0  # no ZSF image: the zero-shot model


def test_ensemble_predictions_equal_a_numpy_computation():
    g = np.random.default_rng(1)
    ft, zs = g.normal(size=(300, 6)) * 4, g.normal(size=(300, 6)) * 4
    w = g.random(300)
    t_ft, t_zs = 0.7, 2.3
    p = w[:, None] * softmax(ft / t_ft) + (1 - w[:, None]) * softmax(zs / t_zs)
    got = ensemble_probs(torch.tensor(ft), torch.tensor(zs), torch.tensor(w), t_ft, t_zs)
    np.testing.assert_allclose(got.numpy(), p, rtol=1e-12)
    pred = ensemble_predict(torch.tensor(ft), torch.tensor(zs), torch.tensor(w), t_ft, t_zs)
    np.testing.assert_array_equal(pred.numpy(), p.argmax(1))
    # both sides disagree often enough that the weights matter
    assert (ft.argmax(1) != zs.argmax(1)).mean() > 0.5
    assert 0.1 < (pred.numpy() == ft.argmax(1)).mean() < 0.9
    fixed = ensemble_probs(torch.tensor(ft), torch.tensor(zs), 0.25, t_ft, t_zs).numpy()
    np.testing.assert_allclose(fixed, 0.25 * softmax(ft / t_ft) + 0.75 * softmax(zs / t_zs))


def test_weight_one_gives_the_fine_tuned_accuracy_and_zero_the_zero_shot_one():
    g = np.random.default_rng(2)
    y = g.integers(0, 5, size=400)
    ft = g.normal(size=(400, 5)) + 2.0 * np.eye(5)[y]  # right more often than the other
    zs = g.normal(size=(400, 5)) + 0.7 * np.eye(5)[y]
    ft_acc, zs_acc = (ft.argmax(1) == y).mean(), (zs.argmax(1) == y).mean()
    assert ft_acc - zs_acc > 0.2
    d = torch.tensor(g.random(400) * 4)
    for a, expected in ((1e9, ft_acc), (-1e9, zs_acc)):  # w = 1 everywhere, w = 0 everywhere
        w = vrf_weight(d, a, 0.6)
        assert torch.all(w == (1.0 if a > 0 else 0.0))
        pred = ensemble_predict(torch.tensor(ft), torch.tensor(zs), w, 0.3, 5.0)
        assert (pred.numpy() == y).mean() == expected


@pytest.mark.parametrize(
    "scale, classes, accuracy", [(3.0, 10, 0.7), (5.0, 4, 0.55), (50.0, 3, 0.6), (0.05, 10, 0.9)]
)
def test_calibrated_temperature_makes_mean_confidence_match_accuracy(scale, classes, accuracy):
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(500, classes, generator=g, dtype=torch.float64) * scale
    t = calibrate_temperature(logits, accuracy)
    confidence = torch.softmax(logits / t, dim=1).max(dim=1).values.mean().item()  # independent
    assert abs(confidence - accuracy) <= 1e-3, (t, confidence)
    if scale == 50.0:  # so confident that T must leave the official starting bracket [0.1, 10]
        assert t > 10
    if scale == 0.05:  # so flat that T must go below 0.1
        assert t < 0.1


def test_calibration_of_an_unreachable_accuracy_gives_the_nearest_limit():
    logits = torch.randn(100, 4, generator=torch.Generator().manual_seed(4))
    assert calibrate_temperature(logits, 0.2) == 1e3  # below chance (1/4): as flat as allowed
    assert mean_confidence(logits, 1e3) > 0.2
    assert calibrate_temperature(torch.zeros(10, 4), 1.0) == 1e-3  # ties: never confident


def test_settings_are_checked():
    with pytest.raises(ValueError, match="b must be"):
        VRFSettings(b=0)
    with pytest.raises(ValueError, match="ose_weight"):
        VRFSettings(ose_weight=1.5)
    with pytest.raises(CFBenchError, match="valid fields: a: float = 1.5, b: float = 0.6"):
        resolve("vrf", {"b": -1})
    assert resolve("vrf", {"a": 2}).settings == {"a": 2.0, "b": 0.6, "ose_weight": 0.5}
