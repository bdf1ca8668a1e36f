import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def tiny_encoder():
    """The offline tiny open_clip ViT (random weights); built once per test session."""
    from benchmark.model import build_encoder

    return build_encoder("cfbench-tiny-vit", "none")
