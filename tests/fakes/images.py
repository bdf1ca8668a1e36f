"""Recognisable fake images: a solid colour that encodes (split, label, k), so a test can tell
which image a loader returned and which label it was written under, even after JPEG coding and
the prepared store's resize and crop.

RGB: red = 4 + 8 (label mod 32), green = 4 + 8 (label div 32), blue = 4 + 8 (8 split + k), with
split 0 = train, 1 = test (or validation), 2 = a third split, and k < 8 the image's number in
its class. Steps of 8 survive JPEG's error of a few levels. Grayscale (MNIST): 4 + 24 label + 8
split (k is not encoded)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

SPLIT_CODES = {"train": 0, "test": 1, "validation": 1, "val": 1, "extra": 2}


def colour(split: int, label: int, k: int = 0) -> tuple[int, int, int]:
    if not (0 <= label < 1024 and 0 <= split < 3 and 0 <= k < 8):
        raise ValueError(f"cannot encode split {split}, label {label}, k {k}")
    return (4 + 8 * (label % 32), 4 + 8 * (label // 32), 4 + 8 * (8 * split + k))


def grey(split: int, label: int) -> int:
    if not (0 <= label < 10 and 0 <= split < 3):
        raise ValueError(f"cannot encode split {split}, label {label} in grey")
    return 4 + 24 * label + 8 * split


def picture(split: int, label: int, k: int = 0, size=(32, 32), mode: str = "RGB") -> Image.Image:
    """A solid image of ``size`` (width, height) in ``mode`` ("RGB" or "L")."""
    if mode == "L":
        return Image.new("L", size, grey(split, label))
    return Image.new("RGB", size, colour(split, label, k))


def encoded(img: Image.Image, fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return out.getvalue()


def decode(img: Image.Image, grayscale: bool = False) -> tuple[int, int, int]:
    """(split, label, k) of a loaded fake image, read at its centre pixel (so a crop or resize
    does not matter); ``grayscale``: an MNIST image (k is then 0), also after RGB conversion."""
    array = np.asarray(img.convert("RGB"), dtype=int)
    r, g, b = array[array.shape[0] // 2, array.shape[1] // 2]
    if grayscale:
        label = r // 24
        return round((r - 4 - 24 * label) / 8), label, 0
    r, g, b = (round((v - 4) / 8) for v in (r, g, b))
    split, k = divmod(b, 8)
    return split, r + 32 * g, k
