"""The offline sequence's pretrained encoder: the CIFAR-10 ResNet-20 of
akamaster/pytorch_resnet_cifar10 (BSD-2-Clause, Y. Idelbayev), fetched from its public release
and checked by SHA-256 before it is put where a run looks for it (``find_weights`` in
benchmark/model/encoder.py: ``$CFBENCH_WEIGHTS``, else ``<data-root>/../weights``)."""

from __future__ import annotations

import os
import shutil
import urllib.request
from collections.abc import Callable
from pathlib import Path

from benchmark.errors import CFBenchError
from tasks.offline_fetch import FetchFailed, sha256_file

RESNET20 = "resnet20-12fca82f.th"
RELEASE = "akamaster/pytorch_resnet_cifar10@d5489e8995e81e91ce6b1d69dcc98ad579b0b153"
RESNET20_URL = (
    "https://raw.githubusercontent.com/akamaster/pytorch_resnet_cifar10/"
    f"{RELEASE.split('@')[1]}/pretrained_models/{RESNET20}"
)
# SHA-256 of ../shared/weights/resnet20-12fca82f.th, a byte-for-byte copy of that release's file
# (git blob f7c370bc38314d1c98166b834cd50988aec2ca50); the name's 8 hex digits are its start.
RESNET20_SHA256 = "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8"


def weights_folder(root: Path) -> Path:
    """The first place a run of the offline sequence looks for a checkpoint by name."""
    if "CFBENCH_WEIGHTS" in os.environ:
        return Path(os.environ["CFBENCH_WEIGHTS"]).expanduser()
    return Path(root).expanduser().resolve().parent / "weights"


def _download(url: str, part: Path) -> None:
    with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
        shutil.copyfileobj(response, out)


def fetch_checkpoint(
    root: Path,
    force: bool = False,
    log: Callable[[str], None] = print,
    url: str | None = None,
    sha256: str | None = None,
) -> dict:
    """Put the checkpoint at ``url`` (default: the ResNet-20's release) in
    ``weights_folder(root)`` as ``RESNET20`` (a file there with the right SHA-256 is kept) and
    return its provenance record. A file of another SHA-256 is refused: one already there
    unless ``force``, a downloaded one always (nothing is written)."""
    url, sha256 = url or RESNET20_URL, sha256 or RESNET20_SHA256
    path = weights_folder(root) / RESNET20
    record = {
        "file": str(path),
        "url": url,
        "release": RELEASE,
        "sha256": sha256,
        "license": "BSD-2-Clause (c) 2018 Yerlan Idelbayev",
    }
    if path.is_file():
        have = sha256_file(path)
        if have == sha256:
            log(f"weights: {path} present (sha256 {have[:12]}); kept")
            return record
        if not force:
            raise CFBenchError(
                f"{path} has SHA-256 {have}, not the release's {sha256} ({url}); "
                "delete it or pass --force to fetch it again"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{RESNET20}.part")
    log(f"weights: fetching {url}")
    try:
        _download(url, part)
    except (OSError, ValueError) as error:  # URLError is an OSError; ValueError: a bad URL
        part.unlink(missing_ok=True)
        raise FetchFailed(f"put {url} at {path}", f"{type(error).__name__}: {error}") from None
    got = sha256_file(part)
    if got != sha256:
        part.unlink()
        raise CFBenchError(
            f"{url} has SHA-256 {got}, not the release's {sha256} ({RELEASE}); "
            f"refused, nothing written to {path}"
        )
    os.replace(part, path)
    log(f"weights: wrote {path} (sha256 {got[:12]})")
    return record
