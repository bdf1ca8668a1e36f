"""Two checks on the real data of a sequence (the offline one: real images, a real encoder):

- ``pipeline``: pretrained-row LP accuracy per dataset from the PIL pipeline and the device
  pipeline, side by side: they must agree (within about 1 pp) for the device pipeline to stand in
  for PIL;
- ``probe``: our probe against sklearn's on the pretrained features of every dataset (all train
  and test images), with times, accuracies and objective gaps (benchmark/probe_bench.py).

    python -m benchmark.offline_checks pipeline --data-root ../shared/data
    python -m benchmark.offline_checks probe --data-root ../shared/data

Uses the sequence's own model, weights and probe settings (its defaults), on the CPU unless
``--device`` says otherwise; prints a table and, with ``--out``, writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from benchmark.config import build_run_config
from benchmark.model.encoder import build_encoder
from benchmark.pipeline import TensorPipeline
from benchmark.probe.bench import SKLEARN_TOL, probe_vs_sklearn
from benchmark.probe.features import FeaturePass, Transformed, extract_features
from benchmark.probe.fit import linear_probe
from benchmark.probe.splits import probe_split, subsample
from tasks import get_sequence, load_task
from tasks.base import targets_of


def row0_lp(encoder, data, probe, features: FeaturePass) -> float:
    """The evaluation's LP accuracy (%) of ``encoder`` on one dataset, as evaluation.py fits it."""
    idx, val_mask = probe_split(len(data.train), probe.max_train_samples)
    test_idx = subsample(len(data.test), probe.max_test_samples)
    parts = [
        Transformed(data.train, encoder.eval_transform, idx),
        Transformed(data.test, encoder.eval_transform, test_idx),
    ]
    x = extract_features(encoder.module, parts, desc=f"features {data.name}", **features.kwargs())
    y_train = torch.as_tensor(np.asarray(targets_of(data.train))[idx])
    y_test = torch.as_tensor(np.asarray(targets_of(data.test))[test_idx])
    result = linear_probe(
        x[: len(idx)].cpu(),
        y_train,
        torch.as_tensor(val_mask),
        x[len(idx) :].cpu(),
        y_test,
        data.num_classes,
        probe.c_grid,
        probe.max_iter,
        tol=probe.tol,
    )
    return 100.0 * result.accuracy


def setup(sequence: str, data_root: Path, device: torch.device):
    seq = get_sequence(sequence)
    cfg = build_run_config(seq.defaults, {"data_root": data_root})
    encoder = build_encoder(cfg.model, cfg.pretrained, cfg.data_root)
    encoder.module.to(device)
    tensor = TensorPipeline.from_transforms(encoder.train_transform, encoder.eval_transform)
    if tensor is None:
        raise SystemExit(f"{cfg.model}'s transforms have no tensor version")
    datasets = []
    for name in [*seq.tasks, *seq.controls]:
        data = load_task(name, cfg.data_root, download=False)
        if not hasattr(data.train, "images"):
            raise SystemExit(f"{name} is not held as arrays: run 'run_benchmark.py data prepare'")
        datasets.append(data)
    return cfg, encoder, tensor, datasets


def pipeline_rows(sequence: str, data_root: Path, device: torch.device) -> list[dict]:
    cfg, encoder, tensor, datasets = setup(sequence, data_root, device)
    batch = cfg.probe.batch_size or FeaturePass.default_batch(device)
    rows = []
    for data in datasets:
        pil = row0_lp(encoder, data, cfg.probe, FeaturePass(device, batch))
        dev = row0_lp(encoder, data, cfg.probe, FeaturePass(device, batch, pipeline=tensor))
        rows.append(
            {
                "dataset": data.name,
                "pil": round(pil, 2),
                "device": round(dev, 2),
                "difference": round(dev - pil, 2),
            }
        )
    return rows


def probe_rows(
    sequence: str, data_root: Path, device: torch.device, sklearn_tol: float = SKLEARN_TOL
) -> list[dict]:
    cfg, encoder, tensor, datasets = setup(sequence, data_root, device)
    features = FeaturePass(device, FeaturePass.default_batch(device), pipeline=tensor)
    rows = []
    for data in datasets:
        parts = [
            Transformed(data.train, encoder.eval_transform),
            Transformed(data.test, encoder.eval_transform),
        ]
        x = extract_features(encoder.module, parts, desc=data.name, **features.kwargs()).cpu()
        n = len(data.train)
        _, val_mask = probe_split(n, None)
        r = probe_vs_sklearn(
            x[:n].numpy(),
            np.asarray(targets_of(data.train)),
            x[n:].numpy(),
            np.asarray(targets_of(data.test)),
            val_mask,
            cfg.probe.c_grid,
            sklearn_tol=sklearn_tol,
            device=str(device),
        )
        rows.append(
            {
                "dataset": data.name,
                "train": n,
                "test": len(data.test),
                "dim": int(x.shape[1]),
                "classes": data.num_classes,
                "seconds_ours": round(r["seconds_ours"], 3),
                "seconds_sklearn": round(r["seconds_sklearn"], 3),
                "speedup": round(r["speedup"], 2),
                "accuracy_ours": round(100 * r["accuracy_ours"], 2),
                "accuracy_sklearn": round(100 * r["accuracy_sklearn"], 2),
                "best_c": [r["best_c_ours"], r["best_c_sklearn"]],
                "max_objective_gap": r["max_gap"],
                "sklearn_tol": sklearn_tol,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("check", choices=["pipeline", "probe"], help="which check to run")
    parser.add_argument("--sequence", default="offline", help="sequence (default: offline)")
    parser.add_argument("--data-root", type=Path, required=True, help="folder of its datasets")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON to this file")
    parser.add_argument(
        "--sklearn-tol",
        type=float,
        default=SKLEARN_TOL,
        help=f"sklearn's tol in the probe check (default: {SKLEARN_TOL}, which "
        "reaches its optimum within 1e-4; sklearn's own default: 1e-4)",
    )
    args = parser.parse_args(argv)
    root, device = args.data_root.expanduser(), torch.device(args.device)
    if args.check == "pipeline":
        rows = pipeline_rows(args.sequence, root, device)
    else:
        rows = probe_rows(args.sequence, root, device, args.sklearn_tol)
    keys = list(rows[0])
    print("  ".join(f"{k:>14}" for k in keys))
    for r in rows:
        print("  ".join(f"{str(r[k]):>14}" for k in keys))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
