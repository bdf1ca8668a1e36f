"""The figures of ``perf --gpu-check`` read back from what its parts wrote (a perf part's JSON, an
offline run's metrics.json), the projected ``5tasks`` wall time from them (perf's ``project``),
and the one markdown table of the check."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from benchmark.perf.plan import DatasetShape, project

STRATEGIES = ("ft", "ldifs")
NOTES = (
    "training and extraction: images over seconds across the whole sequence at the rates "
    "measured (each dataset at its stored resolution); pipeline: the slowest resolution; "
    "5tasks: projected wall time of one run (train + encode + probe, perf's projection); "
    "* = some task resolutions not measured (stopped at the cap), their rate taken from the "
    "first task's; offline: final average LP accuracy over the tasks and ΔLP over the controls "
    "(± binomial SE), seconds = the run's wall time from metrics.json"
)


def part_figures(entry: dict, probe_seconds: dict | None) -> dict:
    """The figures of one part, from the files it wrote ({} when it wrote none)."""
    if entry["kind"] == "perf":
        return perf_figures(Path(entry["json"]), probe_seconds)
    return offline_figures(entry)


def perf_figures(path: Path, probe_seconds: dict | None) -> dict:
    """Rates per resolution, the sequence-wide rates and the projection of a perf part (probe
    seconds its own, else ``probe_seconds``: those of the eager part)."""
    try:
        r = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    plan = [
        DatasetShape(**{f.name: d[f.name] for f in fields(DatasetShape)})
        for d in r["datasets"].values()
    ]
    rate = {k: {res: v["images_per_s"] for res, v in r[k].items()} for k in ("eval", "pipeline")}
    train = {s: {res: v["images_per_s"] for res, v in r["train"][s].items()} for s in STRATEGIES}
    probes = {n: p["seconds"] for n, p in r["probe"]["datasets"].items()} if "probe" in r else None
    probes = probes or probe_seconds
    tasks = [d for d in plan if d.role == "task"]
    return {
        "complete": r["complete"],
        "model": r["model"],
        "device": r["device"]["name"],
        "precision": r["precision"],
        "compile": r["compile"],
        "steps": r["steps"],
        "batch_size": r["batch_size"],
        "eval_batch_size": r["eval_batch_size"],
        "train": train,
        "eval": rate["eval"],
        "pipeline": rate["pipeline"],
        "job_seconds": r["job_seconds"],
        "probe_seconds": probes,
        "train_images_per_s": {s: sequence_rate(tasks, train[s], True) for s in STRATEGIES},
        "eval_images_per_s": sequence_rate(plan, rate["eval"], False),
        "pipeline_images_per_s_min": min(rate["pipeline"].values(), default=None),
        "projection": projection(plan, train, rate["eval"], probes),
    }


def sequence_rate(datasets: list[DatasetShape], rates: dict, training: bool) -> float | None:
    """Images over seconds across ``datasets`` measured at their resolution: fine-tuned images
    (epochs x fine_tune) when ``training``, else the encoded ones (train + test)."""
    images = seconds = 0.0
    for d in datasets:
        if d.resolution in rates:
            n = d.epochs * d.fine_tune if training else d.train + d.test
            images, seconds = images + n, seconds + n / rates[d.resolution]
    return images / seconds if seconds else None


def projection(plan: list[DatasetShape], train: dict, eval_rates: dict, probes) -> dict | None:
    """perf's projected wall time per strategy; a task resolution not measured (the part was
    stopped at its cap) takes the first task's rate, listed under ``filled``."""
    if not probes or not eval_rates or any(d.name not in probes for d in plan):
        return None
    first = next(d.resolution for d in plan if d.role == "task")
    filled, rates = [], {}
    for s, measured in train.items():
        if first not in measured:
            continue
        rates[s] = dict(measured)
        for d in plan:
            if d.role == "task" and d.resolution not in measured:
                rates[s][d.resolution] = measured[first]
                filled.append(f"{s} {d.resolution}")
    fallback = eval_rates.get(first, next(iter(eval_rates.values())))
    encode = {d.resolution: eval_rates.get(d.resolution, fallback) for d in plan}
    filled += [f"eval {res}" for res in encode if res not in eval_rates]
    if not rates:
        return None
    p = project(plan, rates, encode, probes)
    return {
        s: {
            "total_seconds": v["total_seconds"],
            "total_hours": v["total_hours"],
            "train_seconds": v["train"]["seconds"],
            "encode_seconds": v["encode"]["seconds"],
            "probe_seconds": v["probe"]["seconds"],
            "filled": sorted(set(filled)),
        }
        for s, v in p.items()
    }


def offline_figures(entry: dict) -> dict:
    """Final accuracy, ΔLP of the controls and seconds of an offline run, from metrics.json."""
    from benchmark.results import run_dir

    folder = run_dir(Path(entry["out"]), "offline", f"{entry['strategy']}-{entry['precision']}", 0)
    try:
        m = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return {"run_dir": str(folder)}
    lp = m["lp"]
    try:
        used = json.loads((folder / "config.json").read_text()).get("precision_used")
    except (OSError, ValueError):
        used = None
    return {
        "run_dir": str(folder),
        "precision_used": used,  # of fine-tuning and feature extraction (LDIFS: fp32 anyway)
        "final_avg_acc": lp["final_avg_acc"],
        "delta_lp_controls": lp["delta_lp_controls"],
        "delta_lp_controls_se": lp.get("delta_lp_controls_se"),
        "delta_lp": lp["delta_lp"],
        "wall_s": m["cost"]["seconds"]["wall"],
        "cost_seconds": m["cost"]["seconds"],
        "images_trained": m["cost"]["images_trained"],
    }


COLUMNS = (
    "part",
    "status",
    "seconds",
    "FT train img/s",
    "LDIFS train img/s",
    "extraction img/s",
    "pipeline img/s",
    "5tasks FT",
    "5tasks LDIFS",
    "final acc %",
    "ΔLP controls pp",
)


def _num(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _minutes(p: dict | None, s: str) -> str:
    if not p or s not in p:
        return "-"
    return f"{p[s]['total_seconds'] / 60:.1f} min" + ("*" if p[s]["filled"] else "")


def row(entry: dict) -> list[str]:
    f = entry.get("figures") or {}
    seconds = f.get("wall_s", entry.get("seconds"))
    cells = [entry["name"], entry["status"], "-" if seconds is None else f"{seconds:.0f}"]
    if entry["kind"] == "perf":
        train = f.get("train_images_per_s") or {}
        cells += [_num(train.get("ft")), _num(train.get("ldifs")), _num(f.get("eval_images_per_s"))]
        cells += [_num(f.get("pipeline_images_per_s_min"))]
        cells += [_minutes(f.get("projection"), s) for s in STRATEGIES] + ["-", "-"]
    else:
        acc, delta = f.get("final_avg_acc"), f.get("delta_lp_controls")
        se = f.get("delta_lp_controls_se")
        cells += ["-"] * 6 + ["-" if acc is None else f"{acc:.2f}"]
        cells.append("-" if delta is None else f"{delta:+.2f}" + (f" ± {se:.2f}" if se else ""))
    return cells


def render_table(record: dict) -> str:
    """The check's one table, a title line above it and what its columns mean below."""
    dev = record["device"]
    lines = [
        f"GPU check: {dev['name']} ({dev['type']}), torch {record['torch']}, "
        f"{record['seconds']:.0f} s in all (budget {record['settings']['budget_s']:.0f} s)",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(row(e)) + " |" for e in record["parts"]]
    skipped = record["settings"]["offline"]["skipped"]
    if skipped:
        lines += ["", f"offline runs skipped: {skipped}"]
    return "\n".join([*lines, "", NOTES])
