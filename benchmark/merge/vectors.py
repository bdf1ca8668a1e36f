"""Task vectors and the merging rules (pure functions on state dicts of tensors).

A task vector is tau = theta - theta_0 (Ilharco et al., "Editing models with task arithmetic",
ICLR 2023, arXiv 2212.04089), over the floating-point tensors theta and theta_0 share. Rules,
each returning the merged task vector m (the model is theta_0 + scale * m, ``apply_vector``):

- task arithmetic: m = sum_i tau_i (the scale is the paper's lambda);
- TIES (Yadav et al., "TIES-Merging", NeurIPS 2023, arXiv 2306.01708): trim every tau_i to its
  top-k % magnitudes over the whole vector (all tensors flattened together, as the official
  code does; k = 20), elect per entry the sign of the sum of the trimmed values ("mass"; an
  entry whose sum is 0 takes the sign of the sum of all elected signs, the official
  ``resolve_zero_signs``), and take the disjoint mean: the mean of the trimmed values whose
  sign is the elected one (zeros never count; no such value: 0);
- MagMax (Marczak et al., "MagMax", ECCV 2024, arXiv 2407.06322): per entry, the tau_i of the
  largest magnitude; on equal magnitudes the later one (the official ``merge_max_abs`` keeps
  the current value when ``|new| >= |kept|``).

Everything is computed in float32 on the CPU, as the official code does on its float32
checkpoints, and ``apply_vector`` casts the model back to theta_0's dtypes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

Vector = dict[str, torch.Tensor]


def task_vector(
    theta: Mapping[str, torch.Tensor], theta0: Mapping[str, torch.Tensor], keys: Sequence[str]
) -> Vector:
    """tau = theta - theta_0 over ``keys`` (float32, CPU)."""
    return {k: theta[k].detach().cpu().float() - theta0[k].detach().cpu().float() for k in keys}


def task_arithmetic(taus: Sequence[Mapping[str, torch.Tensor]]) -> Vector:
    """m = sum_i tau_i."""
    _check(taus)
    return {k: torch.stack([t[k] for t in taus]).sum(0) for k in taus[0]}


def magmax(taus: Sequence[Mapping[str, torch.Tensor]]) -> Vector:
    """m[j] = tau_i[j] for the i of the largest |tau_i[j]|; the later i on equal magnitudes."""
    _check(taus)
    out = {}
    for key in taus[0]:
        kept = taus[0][key].clone()
        for tau in taus[1:]:
            kept = torch.where(tau[key].abs() >= kept.abs(), tau[key], kept)
        out[key] = kept
    return out


def flatten(vector: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The tensors of a vector as one flat float32 tensor, in sorted key order."""
    return torch.cat([vector[k].reshape(-1).float() for k in sorted(vector)])


def unflatten(flat: torch.Tensor, like: Mapping[str, torch.Tensor]) -> Vector:
    """The inverse of ``flatten`` for tensors shaped like ``like``."""
    out, start = {}, 0
    for key in sorted(like):
        n = like[key].numel()
        out[key] = flat[start : start + n].reshape(like[key].shape)
        start += n
    return out


def ties_trim(flat: torch.Tensor, k: float) -> torch.Tensor:
    """Keep the top ``k`` % of the entries by magnitude (n = floor(d k / 100), at least 1; every
    entry as large as the n-th largest magnitude is kept), zero the rest."""
    if not 0 < k <= 100:
        raise ValueError(f"k must be in (0, 100], got {k}")
    d = flat.numel()
    n = min(d, max(1, int(d * k / 100)))
    threshold = flat.abs().topk(n).values[-1]
    return torch.where(flat.abs() >= threshold, flat, torch.zeros_like(flat))


def ties_elect(trimmed: torch.Tensor) -> torch.Tensor:
    """The elected sign per entry of stacked trimmed vectors [n, d]: sign of the column sum;
    a zero sum takes the sign of the sum of all elected signs (the majority)."""
    signs = torch.sign(trimmed.sum(0))
    signs[signs == 0] = torch.sign(signs.sum())
    return signs


def ties_disjoint_mean(trimmed: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """Per entry, the mean of the values of [n, d] whose sign is the elected one (0 if none)."""
    agree = torch.where(signs > 0, trimmed > 0, trimmed < 0)
    chosen = trimmed * agree
    return chosen.sum(0) / agree.sum(0).clamp(min=1)


def ties(taus: Sequence[Mapping[str, torch.Tensor]], k: float = 20.0) -> Vector:
    """TIES-Merging's merged vector: trim (top-k % of each flattened tau), elect, disjoint mean."""
    _check(taus)
    trimmed = torch.stack([ties_trim(flatten(t), k) for t in taus])
    return unflatten(ties_disjoint_mean(trimmed, ties_elect(trimmed)), taus[0])


def l1(vector: Mapping[str, torch.Tensor]) -> float:
    return float(sum(v.abs().sum() for v in vector.values()))


def apply_vector(
    theta0: Mapping[str, torch.Tensor],
    vector: Mapping[str, torch.Tensor],
    scale: Callable[[str], float],
) -> Vector:
    """theta_0 + scale(key) * m for the vector's keys, in each theta_0 tensor's dtype."""
    return {
        k: (theta0[k].detach().cpu().float() + scale(k) * v).to(theta0[k].dtype)
        for k, v in vector.items()
    }


METHODS: dict[str, Callable[..., Vector]] = {
    "task_arithmetic": task_arithmetic,
    "ties": ties,
    "magmax": magmax,
}


def _check(taus: Sequence[Mapping[str, torch.Tensor]]) -> None:
    if not taus:
        raise ValueError("no task vector to merge")
    keys = set(taus[0])
    for i, tau in enumerate(taus[1:], 1):
        if set(tau) != keys:
            raise ValueError(f"task vector {i} has other tensors than task vector 0")
