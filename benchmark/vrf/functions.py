"""The math of VRF and OSE (pure functions; the package docstring gives the sources): the ZSF
set, K, the K-th neighbour distance, the weight w, temperature calibration, the ensemble."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

K_SCALE = 1000  # K = round(|ZSF| / |train| * K_SCALE), the official code's constant
T_RANGE = (0.1, 10.0)  # the official search's starting bracket for a temperature
T_LIMITS = (1e-3, 1e3)  # ours: how far that bracket may widen (the official one has no bound)


@dataclass(frozen=True)
class VRFSettings:
    """a = 1.5, b = 0.6: the official code's defaults (``src/main.py``, tuned on ImageNet with
    ViT-B/16); ose_weight = 0.5: the fine-tuned side's weight in cfbench's ``ose``, a calibrated
    fixed-weight output ensemble. That is not the paper's OSE, whose weight is tuned in 0.1..0.9 on
    the ID test split with no temperatures (``src/baselines.py``); this benchmark does not tune
    on test."""

    a: float = 1.5  # distance at which w = 0.5
    b: float = 0.6  # width of the sigmoid (> 0): smaller = a sharper switch
    ose_weight: float = 0.5  # OSE: weight of the fine-tuned side (1 = fine-tuned, 0 = zero-shot)

    def __post_init__(self):
        if not math.isfinite(self.a):
            raise ValueError(f"a must be a finite number, got {self.a}")
        if not (math.isfinite(self.b) and self.b > 0):
            raise ValueError(f"b must be a finite number > 0, got {self.b}")
        if not 0.0 <= self.ose_weight <= 1.0:
            raise ValueError(f"ose_weight must be in [0, 1], got {self.ose_weight}")


def zsf_mask(
    ft_logits: torch.Tensor,
    zs_logits: torch.Tensor,
    labels: torch.Tensor,
    train_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """[N] bool: the fine-tuned classifier is right and the zero-shot one wrong (within
    ``train_mask`` when given)."""
    mask = (ft_logits.argmax(dim=1) == labels) & (zs_logits.argmax(dim=1) != labels)
    return mask if train_mask is None else mask & train_mask


def zsf_k(n_zsf: int, n_train: int, scale: int = K_SCALE) -> int:
    """The official K (``src/knn_distance.py``: ``ratio = |ZSF| / |train|``, ``K = round(ratio *
    1000)``), computed in that order: the quotient is rounded to a float before the product, so
    203 / 400 gives 507 (507.49999999999994), not 508; Python's round takes halves to the even
    side (1 / 2000 gives 0). Not clipped: K <= |ZSF| whenever |train| >= 1000; below that,
    K > |ZSF| once |ZSF| (1000 / |train| - 1) > 1/2. K = 0 when |ZSF| <= |train| / 2000 (an empty
    ZSF set included). ``knn_kth_distance`` says what each gives."""
    if n_train < 1 or not 0 <= n_zsf <= n_train:
        raise ValueError(f"|ZSF| = {n_zsf} of {n_train} training images")
    return round(n_zsf / n_train * scale)


def knn_kth_distance(
    queries: torch.Tensor, bank: torch.Tensor, k: int, max_elements: int = 1 << 24
) -> torch.Tensor:
    """[Q] squared L2 distance of every query row to its k-th nearest row of ``bank`` (exact: all
    pairwise distances, ``torch.cdist`` in chunks of at most ``max_elements`` pairs, then top-k).

    inf where no k-th neighbour exists, so that w = 0 and VRF's prediction is the zero-shot one:
    - k > len(bank) (an empty bank included): as the official code. faiss's ``IndexFlatL2`` fills
      the missing neighbours with FLT_MAX (label -1), and the official weight of FLT_MAX is
      exactly 0 (the float32 sigmoid overflows);
    - k = 0: the official code fails there (faiss asserts k > 0); cfbench's choice."""
    if k < 0:
        raise ValueError(f"k = {k} < 0")
    if k == 0 or k > len(bank):
        return torch.full((len(queries),), math.inf, device=queries.device)
    rows = max(1, max_elements // len(bank))
    out = []
    for start in range(0, len(queries), rows):
        d = torch.cdist(queries[start : start + rows], bank).square()
        out.append(d.topk(k, dim=1, largest=False).values[:, -1])
    return torch.cat(out) if out else queries.new_zeros(0)


def missing_neighbour(k: int, n_zsf: int) -> str | None:
    """Why VRF's prediction is the zero-shot one for every image (``knn_kth_distance``: no k-th
    neighbour, w = 0), or None when the official K is within [1, |ZSF|]."""
    if k == 0:
        return "K = 0, where the official code fails (faiss asserts K > 0); cfbench takes w = 0"
    if k > n_zsf:
        return (
            f"K > |ZSF| = {n_zsf}: the official code finds no K-th neighbour (faiss gives "
            "FLT_MAX), so its w is 0"
        )
    return None


def vrf_weight(d: torch.Tensor, a: float = 1.5, b: float = 0.6) -> torch.Tensor:
    """w = sigmoid(-(d - a) / b) = 1 / (1 + exp((d - a) / b)): near 1 close to the ZSF set."""
    return torch.sigmoid(-(d - a) / b)


def mean_confidence(logits: torch.Tensor, temperature: float) -> float:
    """Mean over rows of the largest softmax probability of logits / temperature."""
    return float(F.softmax(logits.double() / temperature, dim=1).amax(dim=1).mean())


def calibrate_temperature(
    logits: torch.Tensor,
    accuracy: float,
    bracket: tuple[float, float] = T_RANGE,
    tol: float = 1e-3,
    limits: tuple[float, float] = T_LIMITS,
    max_iter: int = 200,
) -> float:
    """The temperature T at which the mean max-softmax confidence of ``logits / T`` equals
    ``accuracy`` (a fraction) within ``tol``.

    As the official search: start from ``bracket``, widen it by factors of 1.1 while the target
    lies outside (confidence falls monotonically with T), here within ``limits``; then bisect in
    log T (the official code interpolates; both stop at a gap <= tol). A target that no T within
    the limits reaches (an accuracy at or below chance, or a perfect one on logits with ties)
    gives the nearest limit."""
    low, high = bracket
    while mean_confidence(logits, high) > accuracy + tol and high < limits[1]:
        high = min(high * 1.1, limits[1])
    while mean_confidence(logits, low) < accuracy - tol and low > limits[0]:
        low = max(low / 1.1, limits[0])
    for t in (low, high):
        if abs(mean_confidence(logits, t) - accuracy) <= tol:
            return t
    if mean_confidence(logits, high) > accuracy:
        return high  # even the highest T is too confident
    if mean_confidence(logits, low) < accuracy:
        return low  # even the lowest T is not confident enough
    lo, hi = math.log(low), math.log(high)
    t = math.exp((lo + hi) / 2)
    for _ in range(max_iter):
        t = math.exp((lo + hi) / 2)
        c = mean_confidence(logits, t)
        if abs(c - accuracy) <= tol:
            break
        lo, hi = (math.log(t), hi) if c > accuracy else (lo, math.log(t))
    return t


def ensemble_probs(
    ft_logits: torch.Tensor,
    zs_logits: torch.Tensor,
    w: torch.Tensor | float,
    t_ft: float = 1.0,
    t_zs: float = 1.0,
) -> torch.Tensor:
    """w softmax(ft / t_ft) + (1 - w) softmax(zs / t_zs); ``w`` per row ([N]) or one number."""
    if isinstance(w, torch.Tensor):
        w = w.to(ft_logits.dtype).reshape(-1, 1)
    return w * F.softmax(ft_logits / t_ft, dim=1) + (1 - w) * F.softmax(zs_logits / t_zs, dim=1)


def ensemble_predict(
    ft_logits: torch.Tensor,
    zs_logits: torch.Tensor,
    w: torch.Tensor | float,
    t_ft: float = 1.0,
    t_zs: float = 1.0,
) -> torch.Tensor:
    """[N] class predictions of ``ensemble_probs``."""
    return ensemble_probs(ft_logits, zs_logits, w, t_ft, t_zs).argmax(dim=1)
