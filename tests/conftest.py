import os
import sys
from pathlib import Path

# Under pytest-xdist (the README's test command runs two workers), each worker and the runs it
# starts compute on one thread: two workers of two threads each on two cores would spin against
# each other. Set before anything imports torch.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def tiny_encoder():
    """The offline tiny open_clip ViT (random weights); built once per test session."""
    from benchmark.model.encoder import build_encoder

    return build_encoder("cfbench-tiny-vit", "none")


@pytest.fixture(scope="session", autouse=True)
def own_data_root(tmp_path_factory):
    """Runs that name no --data-root use one of the test session's own, so the pretrained-row
    cache (DATA_ROOT/cache/row0) is never written to the user's home."""
    old = os.environ.get("CFBENCH_DATA")
    os.environ["CFBENCH_DATA"] = str(tmp_path_factory.mktemp("data_root"))
    yield
    if old is None:
        del os.environ["CFBENCH_DATA"]
    else:
        os.environ["CFBENCH_DATA"] = old


# The mini sequence (two synthetic tasks, one control, the tiny ViT) that the bad-input and
# failure tests run (tests/test_bad_input.py, tests/test_run_failures.py).
MINI = """name: mini
tasks: [{name: synth_a, epochs: 1}, {name: synth_b, epochs: 1}]
controls: [synth_control]
defaults: {model: cfbench-tiny-vit, pretrained: none, lr: 1.0e-3, batch_size: 32,
           warmup_steps: 2, weight_decay: 0.0, probe_max_train_samples: 60}
"""


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("seq") / "mini.yaml"
    path.write_text(MINI)
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory, mini) -> Path:
    """--out holding a finished ft run of the mini sequence."""
    from run_benchmark import main

    out = tmp_path_factory.mktemp("finished")
    assert main(["--sequence", str(mini), "--out", str(out)]) == 0
    return out


# The slowest modules first (measured: `pytest --durations`; test_5tasks.py alone is about 10
# minutes on one thread). pytest-xdist hands whole modules (--dist loadfile) to its workers in
# collection order, so the longest start first and the short ones fill in beside them, instead of
# one worker running a long module alone at the end. Modules not named keep their order, after.
SLOW_FIRST = (
    "test_5tasks.py",
    "test_grid.py",
    "test_resume.py",
    "test_vrf_measure.py",
    "test_offline.py",
    "test_select.py",
    "test_merge.py",
    "test_strategy_checkpoints.py",
    "test_strategy_registry.py",
    "test_run_failures.py",
    "test_soup.py",
    "test_peft.py",
    "test_zscl.py",
    "test_gpu_check.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))
