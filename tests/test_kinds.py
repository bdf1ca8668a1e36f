"""The record kinds' registry (benchmark/kinds.py) and what reads it: the row-0 cache key (the
same key as before the registry, so that a cache written then is still found), the matrices, the
evaluation's order and gating (a head not fitted yet gives no head record, whatever its
weights)."""

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import torch
from torchvision.transforms import ToTensor

from benchmark.config import ProbeConfig, RunConfig
from benchmark.evaluation import ROW0_KEY_KINDS, EvalDataset, MatrixEvaluation, eval_datasets
from benchmark.kinds import BY_NAME, KINDS, MATRIX_KINDS, ROW0_KINDS, VRF_KINDS, label
from benchmark.measures import StageFeatures, applies
from benchmark.probe.features import FeaturePass
from benchmark.row0_cache import Row0Cache

CPU = torch.device("cpu")


def test_the_registry_names_every_kind_once_in_record_order():
    assert [k.name for k in KINDS] == ["lp", "lp_val", "zs", "head", "val", "vrf", "ose"]
    assert len(BY_NAME) == len(KINDS)
    assert MATRIX_KINDS == ("lp", "zs", "head", "vrf", "ose")  # the <kind>_matrix.csv files
    assert VRF_KINDS == ("vrf", "ose")
    assert all(BY_NAME[k].label for k in MATRIX_KINDS) and label("lp_val") == "lp_val"
    for kind in KINDS:
        assert kind.per in ("dataset", "task")
        assert not (kind.needs_vrf and kind.row0_cache)  # VRF has no stage-0 record


def test_the_row0_key_names_the_kinds_it_did_before_the_registry():
    assert ROW0_KINDS == ("lp", "lp_val", "zs", "head", "val")
    assert ROW0_KEY_KINDS == "lp lp_val zs head val probe_c2"  # the literal of the old code


def _key_inputs():
    probe = ProbeConfig()
    context = {
        "model": "ViT-B-32",
        "weights": "abc123",
        "probe": {k: v for k, v in dataclasses.asdict(probe).items() if k != "batch_size"},
        "device": "cpu",
        "torch": "2.0.0",
    }
    provenance = {
        "source": "generated",
        "origin": "synthetic",
        "revision": None,
        "format": None,
        "train": 30,
        "test": 10,
        "labels_sha256": "ab",
        "images_sha256": "cd",
        "extra": "ignored",
    }
    return probe, context, SimpleNamespace(provenance=provenance)


def test_row0_keys_are_those_the_code_before_the_registry_computed():
    """Keys computed by the code of commit aebd15e (before the registry) on these inputs: a cache
    written then is found now."""
    probe, context, data = _key_inputs()
    cache = Row0Cache(Path("/nonexistent"), context)
    head = SimpleNamespace(
        weight=torch.arange(12.0).reshape(3, 4) / 3, bias=torch.tensor([0.5, -1.0, 2.0])
    )
    model = SimpleNamespace(heads={"0": head})
    ev = MatrixEvaluation([], ToTensor(), probe, CPU, [], FeaturePass(CPU, 16), cache)
    zs = torch.arange(12.0).reshape(3, 4) / 7
    task, control = (
        EvalDataset("t", "task", 0, data, zs),
        EvalDataset("c", "control", None, data, None),
    )
    assert ev._row0_key(model, task) == (
        "1955a30dff5739b5dabce56b1f1dc0e2038227663ca48fea2c4d3e27dd8a716a"
    )
    assert ev._row0_key(model, control) == (
        "e04069f6aff5f098feab1d3b06e2994e3de8211a8bdb1842e1d9876a1ec0a40a"
    )
    # not fitted yet (an LP-init head before its task) changes no key: row 0 is keyed by the head
    later = EvalDataset("t", "task", 0, data, zs, head_from=1)
    assert ev._row0_key(model, later) == ev._row0_key(model, task)


def test_the_run_cache_context_comes_from_the_typed_values_as_it_came_from_config_json(tmp_path):
    """Before: read back from config.json's dict (its "probe" less batch_size, its
    "initial_weights"); now from the RunConfig and the weights digest: the same context."""
    cfg = RunConfig(data_root=tmp_path, probe=ProbeConfig(max_train_samples=50, batch_size=7))
    config = {**cfg.to_dict(), "initial_weights": "digest"}
    old = {
        "model": cfg.model,
        "weights": config["initial_weights"],
        "probe": {k: v for k, v in config["probe"].items() if k != "batch_size"},
        "device": "cpu",
        "torch": torch.__version__,
    }
    cache = Row0Cache.for_run(cfg, "digest", CPU)
    assert cache.context == old
    assert cache.folder == tmp_path / "cache" / "row0"
    assert Row0Cache.for_run(dataclasses.replace(cfg, cache="none"), "d", CPU).folder is None


def test_lp_init_heads_are_fitted_from_their_task_on():
    sequence = SimpleNamespace(tasks=("a", "b"), controls=("c",))
    data = {n: SimpleNamespace(name=n) for n in "abc"}
    lp = eval_datasets(sequence, data, {}, "lp")
    assert [(d.name, d.role, d.task_label, d.head_from) for d in lp] == [
        ("a", "task", 0, 1),
        ("b", "task", 1, 2),
        ("c", "control", None, 0),
    ]
    assert [d.head_from for d in eval_datasets(sequence, data, {}, "zs")] == [0, 0, 0]


def _features(head):
    t = torch.zeros(1)
    return StageFeatures(None, t, None, t, t, t, t, t, t, head)


def test_a_kind_applies_where_the_registry_says():
    task = EvalDataset("t", "task", 0, None, torch.zeros(2, 3))
    control = EvalDataset("c", "control", None, None, None)
    head = torch.nn.Identity()
    assert applies(BY_NAME["lp"], control, _features(None))
    assert not applies(BY_NAME["zs"], control, _features(None))  # no zero-shot weights
    assert applies(BY_NAME["zs"], task, _features(None))
    assert not applies(BY_NAME["head"], task, _features(None))  # not fitted yet
    assert applies(BY_NAME["head"], task, _features(head))
    assert applies(BY_NAME["vrf"], task, _features(head))
    assert not applies(BY_NAME["vrf"], control, _features(head))  # tasks only
