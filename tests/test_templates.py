"""Zero-shot prompt templates: the published sets clip_benchmark ships, our own for generated
data, and what config.json records of them (tasks/templates.py)."""

import importlib.metadata
import json

import pytest

from benchmark.errors import CFBenchError
from tasks import TASKS
from tasks import templates as tpl
from tasks.base import TargetsDataset
from tasks.data import from_raw
from tasks.sources import Raw
from tasks.vision import VISION_TASKS

# Our datasets, the clip_benchmark key each one's prompts come from, and how many there are.
EXPECTED = {
    "cifar10": ("cifar10", 18),
    "cifar100": ("cifar100", 18),
    "imagenet": ("imagenet1k", 80),
    "cars": ("cars", 8),
    "dtd": ("dtd", 8),
    "eurosat": ("eurosat", 3),
    "gtsrb": ("gtsrb", 3),
    "mnist": ("mnist", 1),
    "svhn": ("mnist", 1),
    "resisc45": ("resisc45", 4),
}


def _json_file() -> dict:
    """The templates file, found through the distribution's RECORD and read with json."""
    dist = importlib.metadata.distribution("clip_benchmark")
    (entry,) = [f for f in dist.files if str(f) == tpl.TEMPLATES_FILE]
    return json.loads(entry.read_text(encoding="utf-8"))


@pytest.fixture
def fresh_cache():
    tpl._published_file.cache_clear()
    yield
    tpl._published_file.cache_clear()


def test_cifar10_is_the_published_set_of_18():
    expected = [t.replace("{c}", "{}") for t in _json_file()["cifar10"]]
    got = VISION_TASKS["cifar10"].templates
    assert len(got) == 18 and list(got) == expected
    assert got[0] == "a photo of a {}." and "a photo of the big {}." in got


def test_imagenet_is_openais_set_as_open_clip_ships_it():
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    openai = [t("{}") if callable(t) else t for t in OPENAI_IMAGENET_TEMPLATES]
    assert list(VISION_TASKS["imagenet"].templates) == openai and len(openai) == 80


def test_every_dataset_has_templates_with_one_placeholder():
    for name, spec in TASKS.items():
        assert len(spec.templates) > 0, name
        for template in spec.templates:
            assert template.count("{}") == 1, (name, template)
            assert "dog" in template.format("dog"), (name, template)


def test_seed_datasets_use_the_published_sets():
    assert set(VISION_TASKS) == set(EXPECTED)
    sets = _json_file()
    for name, (key, count) in EXPECTED.items():
        record = tpl.template_record(VISION_TASKS[name].templates)
        assert record == {
            "source": "clip_benchmark",
            "version": importlib.metadata.version("clip_benchmark"),
            "file": tpl.TEMPLATES_FILE,
            "key": key,
            "count": count,
            "sha256": record["sha256"],
        }, name
        assert len(sets[key]) == count, name


def test_templates_reach_the_task_data():
    spec = VISION_TASKS["dtd"]
    split = TargetsDataset(list(range(47)), list(range(47)))
    data = from_raw(spec, Raw(split, split, [f"texture {i}" for i in range(47)], "folder:dtd"))
    assert list(data.templates) == [t.replace("{c}", "{}") for t in _json_file()["dtd"]]


def test_records_say_which_source():
    class Data:  # what template_records reads of a TaskData
        def __init__(self, templates):
            self.templates = templates

    own = ("a picture of {}.", "an image of {}.")
    records = tpl.template_records({"cifar10": Data(tpl.published("cifar10")), "mine": Data(own)})
    assert records["cifar10"]["source"] == "clip_benchmark"
    assert records["cifar10"]["key"] == "cifar10" and records["cifar10"]["count"] == 18
    assert records["mine"]["source"] == "cfbench" and records["mine"]["count"] == 2
    assert records["mine"]["sha256"] != tpl.template_record(own[:1])["sha256"]
    assert json.loads(json.dumps(records)) == records  # as config.json holds it


def test_config_json_records_the_templates(tmp_path):
    """prepare (which decides config.json) on the smoke sequence: no training, no files."""
    from benchmark.config import RunConfig
    from benchmark.session import prepare
    from benchmark.strategy_api import Resolved
    from tasks import get_sequence

    cfg = RunConfig(
        model="cfbench-tiny-vit",
        pretrained="none",
        data_root=tmp_path,
        device="cpu",
        out=tmp_path / "out",
        pipeline="pil",
        cache="none",
    )
    setup = prepare(cfg, get_sequence("smoke"), Resolved(build=lambda c: [], settings={}), print)
    records = setup.config["templates"]
    assert set(records) == {"synth_a", "synth_b", "synth_c", "synth_control"}
    assert {r["source"] for r in records.values()} == {"cfbench"}
    assert all(r["count"] == 3 for r in records.values())
    assert not (tmp_path / "out").exists()


def test_missing_package_is_one_error_naming_the_install(monkeypatch, fresh_cache):
    def absent(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(tpl.importlib.metadata, "distribution", absent)
    with pytest.raises(CFBenchError, match=r"pip install 'clip_benchmark>=1\.6\.2,<1\.7'"):
        len(tpl.published("cifar10"))
    assert len(TASKS["synth_a"].templates) == 3  # generated data never needs the package


def test_unknown_key_names_the_package(fresh_cache):
    with pytest.raises(CFBenchError, match="clip_benchmark .* has no prompt set 'nope'"):
        tpl.published("nope")[0]


def test_clip_benchmark_modules_are_not_imported():
    import subprocess
    import sys

    code = (
        "import sys; from tasks import TASKS; "
        "assert len(TASKS['cifar10'].templates) == 18; "
        "print(sorted(m for m in sys.modules if m.startswith('clip_benchmark')))"
    )
    from tests.conftest import ROOT

    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
