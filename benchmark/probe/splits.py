"""Every split the protocol makes, in one place (docs/design.md section 3).

- ``validation_split``: the fixed validation part of a train split (10 %, at most 20,000 images,
  seed 0): fine-tuning never sees it; the probe picks its C on it.
- ``training_indices``: what fine-tuning sees: the train split minus the validation part,
  optionally a fixed random subset of it (``--max-train-images``).
- ``subsample``: a fixed random subset (``--probe-max-train``, ``--probe-max-test``).
- ``probe_split``: the probe's train indices and the mask of its validation part.

Every draw has a fixed seed, so every run and every strategy sees the same splits.
"""

from __future__ import annotations

import numpy as np

VAL_FRACTION = 0.1
VAL_MAX = 20_000
VAL_SEED = 0


def validation_split(
    n: int, fraction: float = VAL_FRACTION, max_size: int = VAL_MAX, seed: int = VAL_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` into (train, val) index arrays: val is ``fraction`` of n, capped at
    ``max_size``, drawn with a fixed seed so every run and every strategy sees the same split."""
    if n < 2:
        raise ValueError(f"cannot carve a validation split out of {n} training images")
    n_val = min(max_size, max(1, int(round(n * fraction))))
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def subsample(n: int, max_n: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_n`` of ``range(n)`` (all of them when max_n is None)."""
    if max_n is None or n <= max_n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_n, replace=False))


def training_indices(n: int, max_images: int | None = None) -> np.ndarray:
    """Indices into a train split of ``n`` images that fine-tuning sees: the split minus its
    validation part, then at most ``max_images`` of them (the same subset in every run)."""
    train_idx, _ = validation_split(n)
    return train_idx[subsample(len(train_idx), max_images)]


def probe_split(n: int, max_n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the probe's train split (maybe subsampled) and a mask of its validation part."""
    _, val_idx = validation_split(n)
    idx = subsample(n, max_n)
    mask = np.isin(idx, val_idx)
    if not mask.any() or mask.all():  # a small subsample can miss the fixed split entirely
        _, val_pos = validation_split(len(idx))
        mask = np.isin(np.arange(len(idx)), val_pos)
    return idx, mask


def validation_rest(n: int, idx: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The fixed validation images of a train split of ``n`` that the probe's subset ``idx``
    left out: with them, the probe's validation part (``mask``) becomes the whole validation split
    (a less noisy validation score). Empty when the mask is ``probe_split``'s fallback, whose
    validation part is not the fixed split (the rest could be in the probe's fit part)."""
    _, val_idx = validation_split(n)
    if not np.array_equal(mask, np.isin(idx, val_idx)):
        return np.array([], dtype=np.int64)
    return np.setdiff1d(val_idx, idx)
