"""run_benchmark.py perf --gpu-check on CPU (--gpu-check-device cpu, tiny sizes): the parts and
their caps, the one JSON and the one table it writes, the offline runs skipped without their data
and run from ../shared when it is there, and the one-line refusal on a machine without a GPU."""

import contextlib
import io
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from benchmark.perf import gpu_check as G
from benchmark.perf.gpu_check_report import perf_figures, sequence_rate
from benchmark.perf.plan import DatasetShape, project
from run_benchmark import main
from tests.conftest import SHARED

OFFLINE_NPZ = ("mnist", "gtsrb", "dtd10", "cifar10", "caltech101")
WEIGHTS = "resnet20-12fca82f.th"


def fake_offline_data(root):
    """Empty files where the offline sequence's archives and checkpoint go (plan() only looks
    for them)."""
    (root / "data").mkdir()
    (root / "weights").mkdir()
    for name in OFFLINE_NPZ:
        (root / "data" / f"{name}.npz").touch()
    (root / "weights" / WEIGHTS).touch()
    return root / "data"


def test_the_gpu_plan_runs_every_part_and_its_caps_fit_in_8_minutes(tmp_path, monkeypatch):
    monkeypatch.delenv("CFBENCH_WEIGHTS", raising=False)
    parts, skipped = G.plan(G.Check("cuda", tmp_path / "out", fake_offline_data(tmp_path)))
    assert skipped is None
    names = [p.name for p in parts]
    assert names == [
        "perf-bf16-eager",
        "offline-ft-bf16",
        "offline-ldifs-bf16",
        "offline-ft-fp32",
        "offline-ldifs-fp32",
        "perf-bf16-compile",
    ]
    assert sum(p.cap_s for p in parts) + G.RESERVE_S <= G.BUDGET_S == 580
    eager, compiled = parts[0], parts[-1]
    for part, compiles in ((eager, False), (compiled, True)):
        cfg = json.loads(part.argv[part.argv.index("--config") + 1])
        assert (cfg["sequence"], cfg["size"], cfg["model"]) == ("5tasks", "real", "ViT-B-32")
        assert (cfg["precision"], cfg["device"], cfg["compile"]) == ("bf16", "cuda", compiles)
        assert ("--probes" in part.argv) is not compiles  # the probe is timed once
    assert compiled.max_s == G.BUDGET_S  # the last part takes whatever time is left
    for part in parts[1:-1]:
        argv = part.argv
        strategy, precision = part.name.split("-")[1:]
        assert argv[argv.index("--strategy") + 1] == strategy
        assert argv[argv.index("--precision") + 1] == precision
        assert argv[argv.index("--seed") + 1] == "0" and argv[argv.index("--device") + 1] == "cuda"
        assert argv[argv.index("--out") + 1] == str(tmp_path / "out" / "offline-runs")
        assert argv[argv.index("--cache-dir") + 1] == "none" and "--fresh" in argv
        assert "--epochs" not in argv  # the sequence's own settings on a GPU
        assert part.cap_s == G.CAPS["cuda"][1] and part.max_s == 2 * part.cap_s


def test_every_part_keeps_its_cap_and_the_whole_stays_in_the_budget(tmp_path):
    parts, _ = G.plan(G.Check("cuda", tmp_path, fake_offline_data(tmp_path)))
    deadline = G.BUDGET_S - G.RESERVE_S
    now = 0.0
    for k, part in enumerate(parts):  # every part runs to its timeout: the worst case
        timeout = G.timeout_for(part, parts[k + 1 :], deadline, now)
        assert timeout >= part.cap_s
        now += timeout
    assert now == pytest.approx(deadline)
    # an early part running short leaves its time to later ones, up to their max_s
    first, second = parts[0], parts[1]
    left = G.timeout_for(second, parts[2:], deadline, now=10.0)
    assert left == min(second.max_s, deadline - 10 - sum(p.cap_s for p in parts[2:]))
    assert left > second.cap_s
    assert G.timeout_for(first, parts[1:], deadline, now=0.0) == first.cap_s  # caps fill the budget


def test_without_offline_data_the_plan_says_what_to_put_where(tmp_path, monkeypatch):
    monkeypatch.delenv("CFBENCH_WEIGHTS", raising=False)
    parts, skipped = G.plan(G.Check("cuda", tmp_path, tmp_path / "data"))
    assert [p.name for p in parts] == ["perf-bf16-eager", "perf-bf16-compile"]
    for name in OFFLINE_NPZ:
        assert f"{name}.npz" in skipped
    assert WEIGHTS in skipped and str(tmp_path / "weights") in skipped
    assert "\n" not in skipped


@pytest.fixture(scope="module")
def cpu_check(tmp_path_factory):
    """The whole check on CPU, the offline runs skipped (an empty data root)."""
    root = tmp_path_factory.mktemp("gpu_check")
    out, empty = root / "out", root / "empty"
    empty.mkdir()
    stdout, stderr = io.StringIO(), io.StringIO()
    args = ["perf", "--gpu-check", "--gpu-check-device", "cpu", "--out", str(out)]
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([*args, "--data-root", str(empty)])
    assert code == 0, stderr.getvalue()
    return out, json.loads((out / "gpu-check.json").read_text()), stdout.getvalue()


def test_the_json_holds_device_torch_settings_and_every_part(cpu_check):
    out, r, _ = cpu_check
    assert r["version"] == 1 and r["torch"] == torch.__version__
    assert r["device"]["type"] == "cpu" and r["device"]["count"] == 0
    s = r["settings"]
    assert s["budget_s"] == G.BUDGET_S and s["reserve_s"] == G.RESERVE_S
    assert s["caps_s"] == {
        "perf-bf16-eager": G.CAPS["cpu"][0],
        "perf-bf16-compile": G.CAPS["cpu"][2],
    }
    assert s["perf"]["eager"]["compile"] is False and s["perf"]["compile"]["compile"] is True
    assert s["perf"]["eager"]["model"] == "cfbench-tiny-vit"
    assert "mnist.npz" in s["offline"]["skipped"] and s["offline"]["seed"] == 0
    assert [p["name"] for p in r["parts"]] == ["perf-bf16-eager", "perf-bf16-compile"]
    assert 0 < r["seconds"] < 120
    assert not (out / "parts").exists() or not list((out / "parts").iterdir())  # all moved in


def test_the_eager_part_measures_every_rate_and_projects_5tasks(cpu_check):
    _, r, _ = cpu_check
    eager = r["parts"][0]
    assert eager["status"] == "done" and eager["timeout_s"] <= G.CAPS["cpu"][0]
    f, record = eager["figures"], eager["record"]
    assert f["complete"] and record["complete"] and f["precision"] == "bf16"
    plan_ = [
        DatasetShape(**{k: d[k] for k in DatasetShape.__dataclass_fields__})
        for d in record["datasets"].values()
    ]
    tasks = [d for d in plan_ if d.role == "task"]
    resolutions = {d.resolution for d in plan_}
    assert set(f["eval"]) == set(f["pipeline"]) == resolutions
    for s in ("ft", "ldifs"):
        assert set(f["train"][s]) == {d.resolution for d in tasks}
        assert all(v > 0 for v in f["train"][s].values())
        assert f["train_images_per_s"][s] == pytest.approx(
            sequence_rate(tasks, f["train"][s], True)
        )
    assert f["pipeline_images_per_s_min"] == min(f["pipeline"].values())
    assert f["eval_images_per_s"] == pytest.approx(sequence_rate(plan_, f["eval"], False))
    assert set(f["probe_seconds"]) == {d.name for d in plan_}
    expected = project(plan_, f["train"], f["eval"], f["probe_seconds"])
    for s, p in f["projection"].items():
        assert p["total_seconds"] == pytest.approx(expected[s]["total_seconds"]) and not p["filled"]
    # rates by hand: a sequence-wide rate lies between its slowest and fastest resolution
    assert min(f["train"]["ft"].values()) <= f["train_images_per_s"]["ft"]
    assert f["train_images_per_s"]["ft"] <= max(f["train"]["ft"].values())


def test_a_part_over_its_cap_is_stopped_and_said_so(cpu_check):
    _, r, stdout = cpu_check
    compiled = r["parts"][1]
    assert compiled["status"] == "over cap" and compiled["timeout_s"] == G.CAPS["cpu"][2]
    assert compiled["seconds"] < G.CAPS["cpu"][2] + 5
    assert "stopped at its cap" in compiled["note"]
    assert "[2/2] perf-bf16-compile: over cap" in stdout


def test_one_table_printed_and_written_beside_the_json(cpu_check):
    out, r, stdout = cpu_check
    table = (out / "gpu-check.md").read_text()
    assert table.strip() in stdout
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(r["parts"])  # the header and one row per part
    eager = rows[1].split(" | ")
    ft = r["parts"][0]["figures"]["train_images_per_s"]["ft"]
    assert eager[0] == "| perf-bf16-eager" and eager[1] == "done" and eager[3] == f"{ft:,.0f}"
    minutes = r["parts"][0]["figures"]["projection"]["ft"]["total_seconds"] / 60
    assert eager[7] == f"{minutes:.1f} min"
    assert rows[2].startswith("| perf-bf16-compile | over cap |")
    assert "offline runs skipped: put mnist.npz" in table


def test_a_partial_record_projects_with_the_first_tasks_rate(cpu_check, tmp_path):
    _, r, _ = cpu_check
    record = json.loads(json.dumps(r["parts"][0]["record"]))
    probes = {n: p["seconds"] for n, p in record.pop("probe")["datasets"].items()}
    tasks = record["sequence"]["tasks"]
    first = record["datasets"][tasks[0]]["resolution"]
    other = next(res for res in record["train"]["ldifs"] if res != first)
    del record["train"]["ldifs"][other]
    record["complete"] = False
    path = tmp_path / "part.json"
    path.write_text(json.dumps(record))
    f = perf_figures(path, probes)
    assert not f["complete"] and f["probe_seconds"] == probes
    assert f["projection"]["ldifs"]["filled"] == [f"ldifs {other}"]
    assert f["projection"]["ft"]["filled"] == [f"ldifs {other}"]  # listed for every strategy
    assert perf_figures(tmp_path / "absent.json", probes) == {}


@pytest.mark.skipif(
    not (SHARED / "weights" / WEIGHTS).is_file() or not (SHARED / "data").is_dir(),
    reason="../shared (offline data and weights) is absent",
)
def test_offline_runs_from_shared_are_real_runs_with_their_figures(tmp_path):
    rng = np.random.default_rng(0)
    data, weights = tmp_path / "data", tmp_path / "weights"
    data.mkdir()
    weights.mkdir()
    (weights / WEIGHTS).symlink_to(SHARED / "weights" / WEIGHTS)
    for name in OFFLINE_NPZ:  # a few images each, so that each tiny run takes seconds
        d = np.load(SHARED / "data" / f"{name}.npz")
        tr = rng.choice(len(d["y_train"]), 120, replace=False)
        te = rng.choice(len(d["y_test"]), 60, replace=False)
        np.savez(
            data / f"{name}.npz",
            x_train=d["x_train"][tr],
            y_train=d["y_train"][tr],
            x_test=d["x_test"][te],
            y_test=d["y_test"][te],
            classes=d["classes"],
        )
    check = G.Check("cpu", tmp_path / "out", data)
    parts, skipped = G.plan(check)
    assert skipped is None and len(parts) == 6
    (part,) = [p for p in parts if p.name == "offline-ft-bf16"]  # one run: tests stay fast
    assert set(G.CPU_OFFLINE) <= set(part.argv)
    part = replace(part, cap_s=60, max_s=60)
    assert G.run_check(replace(check, budget_s=90), [part], log=lambda *a, **k: None) == 0
    r = json.loads((check.out / "gpu-check.json").read_text())
    assert r["settings"]["offline"]["skipped"] is None
    (entry,) = r["parts"]
    assert entry["status"] == "done", entry.get("note")
    folder = check.out / "offline-runs" / "offline" / "ft-bf16" / "seed0"
    metrics = json.loads((folder / "metrics.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    assert config["strategy"] == "ft" and config["train"]["precision"] == "bf16"
    assert config["seed"] == 0 and config["cache"] == "none"
    f = entry["figures"]
    assert f["final_avg_acc"] == metrics["lp"]["final_avg_acc"] and 0 < f["final_avg_acc"] <= 100
    assert f["delta_lp_controls"] == metrics["lp"]["delta_lp_controls"]
    assert f["wall_s"] == metrics["cost"]["seconds"]["wall"] > 0
    assert f["precision_used"] == "bf16"
    table = (check.out / "gpu-check.md").read_text()
    delta = f"{f['delta_lp_controls']:+.2f} ± {f['delta_lp_controls_se']:.2f}"
    assert f"| offline-ft-bf16 | done | {f['wall_s']:.0f} |" in table
    assert f"| {f['final_avg_acc']:.2f} | {delta} |" in table


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_refuses_in_one_line(tmp_path, capsys):
    out = tmp_path / "check"
    assert main(["perf", "--gpu-check", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs a CUDA GPU" in err and not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--gpu-check", "--steps", "3"], "sets --steps itself"),
        (["--gpu-check", "--compile", "--model", "RN50"], "sets --model, --compile itself"),
        (["--gpu-check-device", "cpu"], "--gpu-check-device goes with --gpu-check"),
    ],
)
def test_options_it_sets_itself_are_refused(args, message, capsys):
    assert main(["perf", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
