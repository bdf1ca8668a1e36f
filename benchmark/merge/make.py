"""``make_merge``: a merged run's folder, from the runs' per-stage checkpoints to its records.

Stage t: the task vectors tau = theta(s) - theta_0 of stages s = 1..t of every run (stage-major,
runs in the order given), merged by the method (vectors.py, lines.py), applied to theta_0 (the
pretrained encoder the session builds, checked against the runs' initial_weights); the task heads
and anything outside the encoder are the runs' stage-t ones (their uniform mean, as a soup's).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmark.errors import CFBenchError
from benchmark.merge import METHOD_NAMES
from benchmark.merge.lines import lines_scales, multi_task_alpha
from benchmark.merge.vectors import METHODS, Vector, apply_vector, task_vector, ties
from benchmark.results import print_summary
from benchmark.soup.evaluate import average_of, build_soup_session
from benchmark.soup.ingredients import Ingredient, every_stage_kept, read_ingredients
from benchmark.soup.output import (
    Target,
    evaluate_stages,
    evaluation_settings,
    open_results,
    out_of_memory_hint,
    target,
)

ENCODER = "encoder."
DEFAULT_LAM = {"ties": 0.55, "magmax": 0.5}  # task_arithmetic: 1/n
DEFAULT_K = 20.0
LINES_ALPHA = 0.5  # --method lines; beta = 1 - alpha
LINES_BETA = 0.5  # --lines on a merged vector
PAPERS = {
    "task_arithmetic": "Ilharco et al., Editing models with task arithmetic, ICLR 2023, "
    "arXiv 2212.04089",
    "ties": "Yadav et al., TIES-Merging, NeurIPS 2023, arXiv 2306.01708",
    "magmax": "Marczak et al., MagMax, ECCV 2024, arXiv 2407.06322",
    "lines": "Wang et al., LiNeS, ICLR 2025, arXiv 2410.17146",
}


@dataclass(frozen=True)
class MergeOptions:
    folders: tuple[Path, ...]
    method: str  # one of METHOD_NAMES
    lam: float | None = None  # None: the method's default
    k: float | None = None  # TIES' trim percentage; None: 20
    alpha: float | None = None  # LiNeS
    beta: float | None = None  # LiNeS
    lines: bool = False  # LiNeS' per-block scales on the merged vector instead of lam
    name: str | None = None  # None: method, or method-lines
    out: Path | None = None  # None: the results folder holding the first run
    seed: int | None = None  # None: the smallest run seed
    device: str | None = None
    data_root: Path | None = None
    eval_batch_size: int | None = None
    force: bool = False


def check_options(opts: MergeOptions) -> None:
    """CFBenchError (one line) for an unknown method or an option the method does not use."""
    lines = opts.lines or opts.method == "lines"
    if opts.method not in METHOD_NAMES:
        raise CFBenchError(
            f"--method must be one of {', '.join(METHOD_NAMES)}, got {opts.method!r}"
        )
    if opts.lines and opts.method == "lines":
        raise CFBenchError(
            "--lines scales task_arithmetic, ties or magmax; --method lines is LiNeS"
        )
    if opts.k is not None and opts.method != "ties":
        raise CFBenchError("--k is TIES' trim percentage; give it with --method ties only")
    if opts.k is not None and not 0 < opts.k <= 100:
        raise CFBenchError(f"--k must be a percentage in (0, 100], got {opts.k}")
    if opts.lam is not None and lines:
        raise CFBenchError(
            "--lam is one scale for every tensor; LiNeS scales by block: give "
            "--alpha and --beta instead"
        )
    if (opts.alpha is not None or opts.beta is not None) and not lines:
        raise CFBenchError(
            "--alpha and --beta are LiNeS' scales; give them with --method lines or --lines"
        )


def merge_stage(
    theta0: Mapping[str, torch.Tensor],
    pooled: Sequence[Vector],
    current: Sequence[Vector],
    opts: MergeOptions,
) -> tuple[Vector, dict[str, Any]]:
    """The merged encoder tensors at one stage and the scales used. ``pooled``: every task
    vector so far; ``current``: this stage's (one per run), which ``lines`` scales post hoc."""
    info: dict[str, Any] = {"task_vectors": len(pooled)}
    if opts.method == "lines":
        vector = {k: torch.stack([t[k] for t in current]).mean(0) for k in current[0]}
        alpha = LINES_ALPHA if opts.alpha is None else opts.alpha
        beta = 1.0 - alpha if opts.beta is None else opts.beta
        info = {"task_vectors": len(current), "alpha": alpha, "beta": beta}
        return apply_vector(theta0, vector, lines_scales(vector, alpha, beta).__getitem__), info
    k = DEFAULT_K if opts.k is None else opts.k
    merged = ties(pooled, k) if opts.method == "ties" else METHODS[opts.method](pooled)
    if opts.method == "ties":
        info["k"] = k
    if opts.lines:
        alpha = multi_task_alpha(pooled, merged) if opts.alpha is None else opts.alpha
        beta = LINES_BETA if opts.beta is None else opts.beta
        info.update(alpha=alpha, beta=beta)
        return apply_vector(theta0, merged, lines_scales(merged, alpha, beta).__getitem__), info
    lam = opts.lam
    if lam is None:
        lam = 1.0 / len(pooled) if opts.method == "task_arithmetic" else DEFAULT_LAM[opts.method]
    info["lambda"] = lam
    return apply_vector(theta0, merged, lambda key: lam), info


def make_merge(opts: MergeOptions, log=print) -> Path:
    """Check the options and runs, merge stage by stage, evaluate each stage like a run and write
    the merged run's folder; returns the folder."""
    check_options(opts)
    started = time.time()
    runs = read_ingredients(list(opts.folders), minimum=1)
    lacking = every_stage_kept(runs)
    if lacking is not None:
        raise CFBenchError(
            f"{lacking.folder} kept only its last checkpoint; merging after each "
            "task needs every stage's: rerun it with --keep-checkpoints all"
        )
    name = opts.name or (f"{opts.method}-lines" if opts.lines else opts.method)
    at = target(opts, runs, name, "another --name, --out or --seed")
    setup, session = build_soup_session(runs[0], opts, at.sequence, log)
    theta0 = {
        k: v.detach().cpu().clone()
        for k, v in session.model.state_dict().items()
        if k.startswith(ENCODER)
    }
    keys = [k for k, v in theta0.items() if v.is_floating_point()]
    if opts.lines or opts.method == "lines":
        _check_depths(keys, setup.config.get("model"))
    config = _merge_config(setup.config, opts, at, runs)
    results = open_results(at, config, setup.config.get("test_images"), runs[0])
    pooled: list[Vector] = []
    details: list[dict[str, Any]] = []

    def state_of(stage: int) -> dict[str, torch.Tensor]:
        current = [task_vector(_encoder_state(r, stage, theta0), theta0, keys) for r in runs]
        pooled.extend(current)
        encoder, info = merge_stage(theta0, pooled, current, opts)
        details.append({"stage": stage, **info})
        state = average_of(runs, stage)  # the heads: the runs' stage-t ones, as a soup's
        state.update(encoder)
        return state

    with out_of_memory_hint("the merged model", session.evaluation.batch_size):
        evaluate_stages(session, list(range(1, runs[0].n_tasks + 1)), name, results, state_of)
    config["merge"]["per_stage"] = details
    results.write_config(config)
    print_summary(results, log, time.time() - started, session.cost.summary())
    return at.folder


def _check_depths(keys: list[str], model: str | None) -> None:
    """LiNeS scales by depth: refused in one line where the tensor names do not tell it."""
    try:
        lines_scales(keys, 0.0, 1.0)
    except ValueError:
        raise CFBenchError(
            f"LiNeS cannot tell the depth of {model}'s tensors (no resblocks.<i>. or "
            "layer<s>.<i>. in their names); use another method"
        ) from None


def _encoder_state(run: Ingredient, stage: int, theta0: Mapping[str, torch.Tensor]) -> dict:
    """The run's stage-``stage`` model state, its encoder checked against theta_0's tensors."""
    state = run.model_state(stage)
    mine = {k for k in state if k.startswith(ENCODER)}
    if mine != set(theta0) or any(state[k].shape != theta0[k].shape for k in theta0):
        extra = sorted(mine - set(theta0))[:2]
        raise CFBenchError(
            f"the stage-{stage} encoder of {run.folder} has other tensors than the pretrained "
            f"encoder (e.g. {extra or 'other shapes'}: a strategy's adapters?); merging needs "
            "fully fine-tuned encoders: leave it out"
        )
    return state


def _merge_config(
    base: Mapping[str, Any],
    opts: MergeOptions,
    at: Target,
    runs: Sequence[Ingredient],
) -> dict[str, Any]:
    """config.json of the merged run: the evaluation settings, its name and seed, the merge."""
    methods = [opts.method, "lines"] if opts.lines else [opts.method]
    merge: dict[str, Any] = {
        "method": opts.method,
        "lines": opts.lines or opts.method == "lines",
        "papers": [PAPERS[m] for m in methods],
        "given": {"lam": opts.lam, "k": opts.k, "alpha": opts.alpha, "beta": opts.beta},
        "stages": list(range(0, runs[0].n_tasks + 1)),
        "task_vectors": "encoder only: tau = theta(s) - theta_0 (float tensors; theta_0 the "
        "pretrained encoder); stage t merges stages s = 1..t of every run, stage-major, runs in "
        "the order given"
        if opts.method != "lines"
        else "encoder only: stage t scales the "
        "mean over runs of theta(t) - theta_0 by block (post hoc)",
        "heads": "the runs' stage-t task heads (their mean over runs, as a uniform soup's); "
        "integer buffers are the first run's",
        "row0": "the first run's (the pretrained model, theta_0 itself)",
        "seed_note": "merging trains nothing: N is --seed, by default the smallest run seed",
        "runs": [r.describe() for r in runs],
    }
    return {
        "strategy": at.name,
        "seed": at.seed,
        "out": str(at.out),
        **evaluation_settings(base),
        "merge": merge,
    }
