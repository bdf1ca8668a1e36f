"""The math of the strategies, as pure functions of tensors (plugins only decide when to call them).

- ``l2sp_penalty``: sum_i ||theta_i - theta0_i||^2 (L2-SP, Li et al. 2018, arXiv:1802.01483).
- ``ldifs_distance``: the LDIFS feature-space distance (Mukhoti et al. 2023, arXiv:2308.13320).
- ``interpolate``: (1 - a) theta_0 + a theta_ft (WiSE-FT, Wortsman et al. 2022, arXiv:2109.01903).
- ``distillation_kl``, ``zscl_distillation``, ``feature_mse``, ``weight_average``: ZSCL's
  reference-data distillation and weight ensemble (Zheng et al. 2023, arXiv:2303.06628).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F

AXES = ("token", "channel")
REDUCTIONS = ("mean", "unit")


def l2sp_penalty(params: Iterable[torch.Tensor], anchor: Iterable[torch.Tensor]) -> torch.Tensor:
    """sum over tensors of ||p - a||^2, in float32; differentiable in ``params``."""
    terms = [(p.float() - a.float()).pow(2).sum() for p, a in zip(params, anchor, strict=True)]
    if not terms:
        raise ValueError("l2sp_penalty needs at least one parameter tensor")
    return torch.stack(terms).sum()


def as_tokens(x: torch.Tensor) -> torch.Tensor:
    """A tap output as [B, N, C] (batch, positions, channels).

    Transformer blocks give [B, T, D] already (open_clip >= 2.26 is batch-first); a CNN feature map
    [B, C, H, W] becomes [B, H*W, C], so its positions play the role of tokens; a pooled [B, D]
    vector is one position. Tuples (blocks that also return attention) give their first element.
    """
    if isinstance(x, (tuple, list)):
        x = x[0]
    if x.ndim == 4:
        return x.flatten(2).transpose(1, 2)
    if x.ndim == 2:
        return x.unsqueeze(1)
    if x.ndim != 3:
        raise ValueError(f"cannot read a tap output of shape {tuple(x.shape)} as [B, N, C]")
    return x


def ldifs_distance(
    features: Sequence[torch.Tensor],
    reference: Sequence[torch.Tensor],
    axis: str = "token",
    reduction: str = "mean",
) -> torch.Tensor:
    """LDIFS distance between two lists of tap outputs (each [B, N, C] after ``as_tokens``).

    Every tap is L2-normalised along ``axis`` ("token": over the N positions of each channel, dim 1,
    as the official LDIFS code does; "channel": over the C channels of each position), then

        d = mean over taps of mean over (B, N, C) of (normalised f - normalised f_ref)^2.

    ``reduction="unit"`` sums over the normalised axis instead of averaging (the squared distance
    between unit vectors, in [0, 4]), which makes the scale independent of the number of positions
    (or channels); it equals the "mean" value times the length of that axis.
    """
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}, got {axis!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if len(features) != len(reference) or not features:
        raise ValueError(
            f"need matching non-empty tap lists, got {len(features)} and {len(reference)}"
        )
    dim = 1 if axis == "token" else 2
    per_tap = []
    for f, r in zip(features, reference, strict=True):
        f, r = as_tokens(f).float(), as_tokens(r).float()
        if f.shape != r.shape:
            raise ValueError(f"tap shapes differ: {tuple(f.shape)} vs {tuple(r.shape)}")
        sq = (F.normalize(f, dim=dim) - F.normalize(r, dim=dim)).pow(2)
        per_tap.append(sq.mean() * (f.shape[dim] if reduction == "unit" else 1))
    return torch.stack(per_tap).mean()


@torch.no_grad()
def interpolate(
    theta0: Mapping[str, torch.Tensor], theta_ft: Mapping[str, torch.Tensor], a: float
) -> dict[str, torch.Tensor]:
    """(1 - a) * theta0 + a * theta_ft for floating-point entries; other entries from theta_ft.

    Written as two products (not ``lerp``) so that a = 1 gives theta_ft and a = 0 gives theta0
    exactly.
    """
    if theta0.keys() != theta_ft.keys():
        raise ValueError("the two state dicts have different keys")
    out = {}
    for key, ft in theta_ft.items():
        if ft.is_floating_point():
            out[key] = (1.0 - a) * theta0[key].to(ft) + a * ft
        else:
            out[key] = ft.clone()
    return out


def distillation_kl(
    teacher: torch.Tensor, student: torch.Tensor, temperature: float
) -> torch.Tensor:
    """T^2 * mean over rows of KL(softmax(teacher / T) || softmax(student / T)), in float32.

    The official ZSCL code takes the cross-entropy of the same distributions, which is this plus
    the teacher's entropy (a constant): the same gradients, but 0 when the student matches."""
    t = F.log_softmax(teacher.float() / temperature, dim=1)
    s = F.log_softmax(student.float() / temperature, dim=1)
    return (t.exp() * (t - s)).sum(dim=1).mean() * temperature**2


def zscl_distillation(
    student: torch.Tensor,
    teacher: torch.Tensor,
    texts: torch.Tensor,
    scale: float,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ZSCL's two distillation terms on a reference batch: ``student`` and ``teacher`` image
    features [B, D] and the reference texts' embeddings [K, D]; every row is L2-normalised and
    logits = scale * image . text ([B, K]). Returns (image term: each image's softmax over the
    K texts; text term: each text's softmax over the B images), both ``distillation_kl``."""
    texts = F.normalize(texts.float(), dim=-1)
    z_s = scale * F.normalize(student.float(), dim=-1) @ texts.T
    z_t = scale * F.normalize(teacher.float(), dim=-1) @ texts.T
    return distillation_kl(z_t, z_s, temperature), distillation_kl(z_t.T, z_s.T, temperature)


def feature_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over (B, D) of (normalize(student) - normalize(teacher))^2 (rows L2-normalised): the
    image-feature term of the official ZSCL code (its ``--feature_mse``, ``nn.MSELoss``)."""
    s, t = F.normalize(student.float(), dim=-1), F.normalize(teacher.float(), dim=-1)
    return (s - t).pow(2).mean()


@torch.no_grad()
def weight_average(
    average: Mapping[str, torch.Tensor], current: Mapping[str, torch.Tensor], count: int
) -> dict[str, torch.Tensor]:
    """The running mean of ``count`` models in ``average`` with one more: (average * count +
    current) / (count + 1) for floating-point entries (other entries from ``current``). An
    element equal in both stays bit for bit, so weights that do not train never drift."""
    if average.keys() != current.keys():
        raise ValueError("the two state dicts have different keys")
    if count < 1:
        raise ValueError(f"count must be >= 1 (models in the average), got {count}")
    out = {}
    for key, now in current.items():
        if not now.is_floating_point():
            out[key] = now.clone()
            continue
        old = average[key].to(now)
        out[key] = torch.where(old == now, old, (old * count + now) / (count + 1))
    return out
