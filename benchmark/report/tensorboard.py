"""Optional TensorBoard logging of a saved run: scalars per stage and the heatmap figures.

Everything is read back from the run folder (like the report), so it can be called after a run
(``--tensorboard``) or later on a copied results folder. Avalanche's TensorboardLogger is not
used: it logs Avalanche's sample-weighted stream metrics, not our matrices. TensorBoard comes with
avalanche-lib; it is imported only when this module is used.

Tags: ``<kind>/<dataset>`` (accuracy, step = stage), ``delta_lp/<dataset>`` (R[t, j] - R[0, j]),
``summary/<metric>`` (every comparison-table metric, at step T) and ``heatmaps/<kind>`` and
``heatmaps/delta_lp`` (figures, at the last stage).
"""

from __future__ import annotations

import math
from pathlib import Path

from benchmark.errors import CFBenchError
from benchmark.kinds import LP, MATRIX_KINDS
from benchmark.kinds import label as kind_label
from benchmark.report import plots
from benchmark.report.runs import load_run

TB_DIR = "tensorboard"


def log_run(folder: Path, log_dir: Path | None = None) -> Path:
    """Write a run folder's results as TensorBoard events; returns the log folder.

    The default log folder is ``<run folder>/tensorboard``, so ``tensorboard --logdir OUT`` shows
    every run, one line per run.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:  # tensorboard is a dependency of avalanche-lib
        raise CFBenchError(
            f"--tensorboard needs the tensorboard package ({error}); pip install tensorboard"
        ) from None
    run = load_run(Path(folder))
    log_dir = Path(log_dir) if log_dir is not None else run.folder / TB_DIR
    label = f"{run.sequence} · {run.strategy} · seed {run.seed}"
    with SummaryWriter(log_dir=str(log_dir)) as writer:
        for kind in MATRIX_KINDS:
            m = run.matrix(kind)
            for stage, row in m.iterrows():
                for dataset, value in row.items():
                    if math.isfinite(value):
                        writer.add_scalar(f"{kind}/{dataset}", value, int(stage))
            if m.empty:
                continue
            fig = plots.accuracy_heatmap(
                m, run.tasks, kind=kind, title=f"{label}: {kind_label(kind)}"
            )
            writer.add_figure(f"heatmaps/{kind}", fig, global_step=int(m.index.max()))
        lp = run.matrix(LP.name)
        if 0 in lp.index and len(lp) > 1:
            delta = plots.delta_matrix(lp)
            for stage, row in delta.iterrows():
                for dataset, value in row.items():
                    if math.isfinite(value):
                        writer.add_scalar(f"delta_lp/{dataset}", value, int(stage))
            fig = plots.delta_heatmap(lp, run.tasks, title=f"{label}: ΔLP")
            writer.add_figure("heatmaps/delta_lp", fig, global_step=int(lp.index.max()))
        if run.complete:
            values = run.metrics()
            for key, value in values.items():
                if math.isfinite(value):
                    writer.add_scalar(f"summary/{key}", value, len(run.tasks))
    return log_dir
