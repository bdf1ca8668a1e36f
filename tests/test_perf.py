"""run_benchmark.py perf on CPU at the small size: the JSON holds every figure with its inputs, the
projected wall time adds up from its parts, and a bad option is one line on stderr, exit 2."""

import contextlib
import io
import json
import math

import pytest
import torch

from benchmark.perf.plan import SMALL_DIVISOR, SMALL_MAX_SIDE, SMALL_PER_CLASS
from benchmark.probe.splits import validation_split
from run_benchmark import main
from tasks import get_sequence, get_task

STEPS = 2


@pytest.fixture(scope="module")
def perf(tmp_path_factory):
    out = tmp_path_factory.mktemp("perf") / "sub" / "perf.json"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(
            ["perf", "--size", "small", "--steps", str(STEPS), "--device", "cpu", "--out", str(out)]
        )
    assert code == 0, stderr.getvalue()
    return json.loads(out.read_text()), stdout.getvalue(), stderr.getvalue()


def test_the_table_is_printed_and_nothing_goes_to_stderr(perf):
    _, stdout, stderr = perf
    assert stderr == ""
    for text in (
        "perf: 5tasks",
        "trainer FT / bare loop",
        "FLOPs per image",
        "probe seconds",
        "sklearn on svhn",
        "projected wall time",
        "perf.json",
    ):
        assert text in stdout, text


def test_the_json_records_what_was_measured_and_how(perf):
    r, _, _ = perf
    assert r["size"] == "small" and r["model"] == "cfbench-tiny-vit"
    assert r["device"]["type"] == "cpu" and r["torch"] == torch.__version__
    assert r["precision"] == "fp32" and r["batch_size"] == 128 and r["steps"] == STEPS
    sequence = get_sequence("5tasks")
    assert r["sequence"]["tasks"] == list(sequence.tasks)
    assert r["sequence"]["controls"] == list(sequence.controls)
    assert r["sequence"]["stages"] == len(sequence.tasks) + 1
    assert list(r["datasets"]) == [*sequence.tasks, *sequence.controls]


def test_small_size_divides_the_registered_splits(perf):
    r, _, _ = perf
    for name, d in r["datasets"].items():
        spec = get_task(name)
        k = spec.num_classes
        real = spec.splits
        assert d["num_classes"] == k
        assert d["train"] == min(
            real.train, max(math.ceil(real.train / SMALL_DIVISOR), SMALL_PER_CLASS[0] * k)
        )
        assert d["test"] == min(
            real.test, max(math.ceil(real.test / SMALL_DIVISOR), SMALL_PER_CLASS[1] * k)
        )
        assert (
            0 < d["height"] <= SMALL_MAX_SIDE and d["resolution"] == f"{d['height']}x{d['width']}"
        )
    assert r["datasets"]["mnist"]["height"] == 28 and r["datasets"]["resisc45"]["height"] == 64


def test_every_rate_is_positive_and_counts_the_timed_steps(perf):
    r, _, _ = perf
    resolutions = {d["resolution"] for d in r["datasets"].values()}
    task_resolutions = {r["datasets"][t]["resolution"] for t in r["sequence"]["tasks"]}
    assert set(r["pipeline"]) == set(r["eval"]) == resolutions
    for part in ("ft", "ldifs"):
        assert set(r["train"][part]) == task_resolutions
    timed = STEPS * r["batch_size"]
    for m in [
        *r["pipeline"].values(),
        *r["train"]["ft"].values(),
        *r["train"]["ldifs"].values(),
        r["bare"],
        r["model_step"],
    ]:
        assert m["images"] == timed and m["seconds"] > 0
        assert m["images_per_s"] == pytest.approx(m["images"] / m["seconds"])
    for m in r["eval"].values():
        assert m["images"] == STEPS * r["eval_batch_size"] and m["images_per_s"] > 0


def test_ratios_are_those_of_the_rates(perf):
    r, _, _ = perf
    q = r["ratios"]
    res = r["datasets"][r["sequence"]["tasks"][0]]["resolution"]
    assert q["resolution"] == res
    ft = r["train"]["ft"][res]["images_per_s"]
    assert q["ft_over_bare"] == pytest.approx(r["bare"]["images_per_s"] / ft)
    assert q["ldifs_over_ft"] == pytest.approx(ft / r["train"]["ldifs"][res]["images_per_s"])
    assert q["ft_over_bare_target"] == 1.15 and q["ldifs_over_ft_target"] == 1.4


def test_flops_are_counted_and_mfu_is_null_without_a_known_peak(perf):
    r, _, _ = perf
    f = r["flops"]
    assert f["forward_per_image"] > 0
    assert f["train_per_image"] > 2 * f["forward_per_image"]  # backward costs about 2 forwards
    assert f["ldifs_train_per_image"] > f["train_per_image"]
    assert r["device"]["peak_flops"] is None and "CPU" in r["device"]["peak_note"]
    t = r["throughput"]
    assert t["train_ft"]["flops_per_s"] == pytest.approx(
        f["train_per_image"] * r["train"]["ft"][r["ratios"]["resolution"]]["images_per_s"]
    )
    assert all(v["flops_per_s"] > 0 and v["mfu"] is None for v in t.values())


def test_probe_seconds_per_dataset_and_the_sklearn_comparison(perf):
    r, _, _ = perf
    probes = r["probe"]["datasets"]
    assert list(probes) == list(r["datasets"])
    for name, p in probes.items():
        d = r["datasets"][name]
        assert (p["train"], p["test"], p["classes"]) == (d["train"], d["test"], d["num_classes"])
        assert p["dim"] == r["embed_dim"] and p["seconds"] > 0 and 0 <= p["accuracy"] <= 1
    sk = r["sklearn"]
    assert sk["dataset"] == "svhn" and sk["seconds_ours"] > 0 and sk["seconds_sklearn"] > 0
    assert sk["speedup"] == pytest.approx(sk["seconds_sklearn"] / sk["seconds_ours"])
    assert abs(sk["accuracy_ours"] - sk["accuracy_sklearn"]) <= 0.02  # the same probe


def test_the_projected_wall_time_is_the_sum_of_its_parts(perf):
    r, _, _ = perf
    sequence = get_sequence("5tasks")
    datasets, stages = r["datasets"], r["sequence"]["stages"]
    by_hand = sum(
        sequence.task_epochs(t)
        * (datasets[t]["train"] - len(validation_split(datasets[t]["train"])[1]))
        for t in sequence.tasks
    )
    encoded = stages * sum(d["train"] + d["test"] for d in datasets.values())
    probe_s = stages * sum(p["seconds"] for p in r["probe"]["datasets"].values())
    assert set(r["projection"]) == {"ft", "ldifs"}
    for strategy, p in r["projection"].items():
        assert p["train"]["images"] == by_hand and p["encode"]["images"] == encoded
        train_s = sum(
            sequence.task_epochs(t)
            * datasets[t]["fine_tune"]
            / r["train"][strategy][datasets[t]["resolution"]]["images_per_s"]
            for t in sequence.tasks
        )
        encode_s = sum(
            stages * (d["train"] + d["test"]) / r["eval"][d["resolution"]]["images_per_s"]
            for d in datasets.values()
        )
        assert p["train"]["seconds"] == pytest.approx(train_s)
        assert p["encode"]["seconds"] == pytest.approx(encode_s)
        assert p["probe"]["seconds"] == pytest.approx(probe_s)
        assert p["total_seconds"] == pytest.approx(train_s + encode_s + probe_s)
        assert p["total_seconds"] > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--steps", "0"], "--steps must be an integer >= 1"),
        (["--batch-size", "-3"], "--batch-size must be an integer >= 1"),
        (["--sequence", "no-such-sequence"], "unknown sequence 'no-such-sequence'"),
        (["--device", "tpu"], "--device must be auto, cpu, cuda or cuda:N"),
    ],
)
def test_a_bad_option_is_one_line_on_stderr_and_exit_2(args, message, tmp_path, capsys):
    out = tmp_path / "perf.json"
    assert main(["perf", "--size", "small", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_a_user_error(tmp_path, capsys):
    assert main(["perf", "--device", "cuda", "--out", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--device cpu" in err


def test_an_out_path_that_is_a_folder_is_refused_before_measuring(tmp_path, capsys):
    assert main(["perf", "--size", "small", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a folder" in err
