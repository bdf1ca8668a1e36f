"""The official VRF rule (BeierZhu/VRF: src/knn_distance.py, src/main.py) re-implemented in numpy,
the independent reference of tests/test_vrf.py and tests/test_vrf_measure.py."""

import numpy as np


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


FLT_MAX = np.finfo(np.float32).max  # what faiss's IndexFlatL2 gives for a missing neighbour


def official_k(n_zsf, n_train):
    """src/knn_distance.py: ratio = |ZSF| / |train|, then K = round(ratio * 1000)."""
    ratio = n_zsf / n_train
    return round(ratio * 1000)


def official_weights(queries, zsf, n_train, a=1.5, b=0.6):
    """The official pipeline in float32 numpy: K; faiss's exact search (here brute force, sorted;
    the neighbours beyond |ZSF| at FLT_MAX, label -1, as faiss fills them; k = 0 refused, as
    faiss asserts k > 0); D[:, -1]; src/main.py's weight = 1 / (1 + exp(-z)), z = -(x - a) / b."""
    k = official_k(len(zsf), n_train)
    if k < 1:
        raise AssertionError("faiss: k > 0")
    q, z = queries.astype(np.float32), zsf.astype(np.float32)
    dist = np.sort(((q[:, None, :] - z[None, :, :]) ** 2).sum(-1), axis=1)
    missing = np.full((len(q), max(0, k - len(z))), FLT_MAX, dtype=np.float32)
    x = np.concatenate([dist, missing], axis=1)[:, :k][:, -1]
    with np.errstate(over="ignore"):
        zz = -(x - np.float32(a)) / np.float32(b)
        return 1 / (1 + np.exp(-zz))
