"""The run command's options and their help (``run_benchmark.py --help``), in the groups its help
shows; benchmark/commands/run.py assembles the parser."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from benchmark.commands.options import data_root_option, debug_option

DESCRIPTION = "cfbench: fine-tune an image encoder on a task sequence and measure what it forgets."
EPILOG = """sequences: smoke (synthetic, offline), offline (real .npz images, ResNet-20, CPU),
3tasks, 5tasks, 10tasks, or a .yaml file.
Settings not given here come from the sequence (smoke uses a tiny random ViT) and then from the
protocol defaults (ViT-B-32/openai, AdamW lr 1e-5, wd 0.1, batch 128, 500 warm-up steps).
A run saves a checkpoint after every task (OUT/<sequence>/<strategy>/seed<N>/checkpoints/): run the
same command again after a crash, Ctrl-C or pre-emption and it resumes after the last finished task.
Exit codes: 0 done, 2 bad input, missing data or a run that cannot continue (one line on stderr),
130 interrupted (Ctrl-C), 143 terminated (SIGTERM); both of the last two can be resumed.
Other commands (each has --help): report (figures and tables from saved runs), data (list,
prepare, verify datasets), perf (speed and memory), soup (average finished runs), grid (many runs,
locally or on Ray), select (a strategy weight chosen on validation)."""


def groups(strategies: Sequence[str]) -> list[tuple[Callable, str]]:
    """The option groups of the run command's help, in order: (adds the options, title)."""
    return [
        (functools.partial(what_to_run, strategies=strategies), "what to run"),
        (io_options, "data, output and device"),
        (training_options, "fine-tuning (defaults: the sequence's, else the protocol's)"),
        (probe_options, "linear probes"),
        (resume_options, "checkpoints (a command run again resumes after its last finished task)"),
    ]


def what_to_run(a, strategies: Sequence[str]) -> None:
    a(
        "--sequence",
        default="smoke",
        help="registered sequence name or path of a sequence .yaml (default: smoke)",
    )
    a(
        "--strategy",
        default="ft",
        help=f"registered strategy ({', '.join(strategies)}), 'all' "
        "(each of them on the same sequence and seed, then one comparison table), or "
        "package.module:factory for your own (default: ft)",
    )
    a(
        "--strategy-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="strategy hyper-parameter, repeatable (e.g. --strategy-arg lam=1)",
    )
    a(
        "--model",
        help="open_clip architecture, e.g. ViT-B-32, or cfbench-tiny-vit "
        "(default: the sequence's, else ViT-B-32)",
    )
    a(
        "--pretrained",
        help="open_clip pretrained tag, checkpoint path, or 'none' for random "
        "weights (default: the sequence's, else openai)",
    )
    a(
        "--head-init",
        choices=["zs", "lp"],
        help="initialise task heads zero-shot from the text tower (zs) or from a linear probe "
        "at the start of each task (lp) (default: zs when the model has a text tower, else lp)",
    )
    run_extras(a)


def run_extras(a) -> None:
    """The rest of "what to run": VRF, seeds and the run's name."""
    a(
        "--vrf",
        action="store_true",
        default=None,
        help="also record, for every task already trained, the accuracy of VRF (Zhu et al., "
        "NeurIPS 2024: the task head ensembled with the pretrained zero-shot model, weighted by "
        "the distance to the training images only fine-tuning gets right) and of a calibrated "
        "fixed-weight output ensemble, not the paper's OSE (kinds vrf and ose, in "
        "vrf_matrix.csv / ose_matrix.csv); "
        "predictions only, the features and LP are unchanged. Needs a text tower (CLIP); "
        "part of the run's settings. The vrf strategy is FT with this on (default: off)",
    )
    a("--seed", type=int, help="random seed for training and data order (default: 0)")
    a(
        "--seeds",
        type=int,
        nargs="+",
        metavar="N",
        help="run several seeds one after another, e.g. --seeds 0 1 2 (replaces --seed); "
        "'run_benchmark.py report OUT' then gives mean +- std over them",
    )
    a(
        "--run-name",
        metavar="NAME",
        help="name of the run: its folder OUT/<sequence>/<NAME>/seed<N> and its rows in the "
        "report, e.g. ldifs@lam=100 for one value of a sweep (default: the strategy; not with "
        "--strategy all)",
    )


def io_options(a) -> None:
    data_root_option(a)
    a(
        "--no-download",
        dest="download",
        action="store_false",
        default=None,
        help="never try to download a missing dataset; fail with instructions instead",
    )
    a(
        "--source",
        choices=["auto", "torchvision", "hf", "folder"],
        help="where datasets are read from: auto (a prepared store, else every source on disk, "
        "then every source that can download, in each dataset's order), or only torchvision, "
        "Hugging Face copies (hf) or local image folders (see 'run_benchmark.py data list') "
        "(default: auto)",
    )
    a(
        "--pipeline",
        choices=["auto", "device", "pil"],
        help="image pipeline: device (batches gathered from the prepared store's uint8 arrays, "
        "sent as uint8 and transformed on the training device), pil (PIL transforms in loader "
        "processes, the reference) or auto (device when every dataset of the run is prepared, "
        "else pil) (default: auto)",
    )
    a(
        "--cache-dir",
        dest="cache",
        metavar="DIR",
        help="pretrained-row cache: row 0 is computed once per (model, weights, data, probe "
        "settings) and reused by every strategy and seed; 'none' turns it off "
        "(default: DATA_ROOT/cache/row0)",
    )
    a(
        "--out",
        help="results folder; each run writes OUT/<sequence>/<strategy>/seed<N>/ "
        "(default: results)",
    )
    a("--device", help="auto (CUDA when available), cpu, cuda or cuda:N (default: auto)")
    a(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard events (accuracy per stage, heatmaps) to each run folder's "
        "tensorboard/ (view with: tensorboard --logdir OUT)",
    )
    debug_option(a)


def training_options(a) -> None:
    a("--epochs", type=int, help="epochs for every task (default: the per-dataset paper value)")
    a("--batch-size", type=int, help="training batch size (default: 128)")
    a("--lr", type=float, help="AdamW peak learning rate (default: 1e-5)")
    a("--weight-decay", type=float, help="AdamW weight decay (default: 0.1)")
    a(
        "--warmup-steps",
        type=int,
        help="linear warm-up steps before cosine decay, per task (default: 500)",
    )
    a(
        "--max-train-images",
        type=int,
        help="fine-tune on a fixed random subset of at most this many images per task "
        "(default: all)",
    )
    a(
        "--batchnorm",
        choices=["train", "frozen"],
        help="batch-norm statistics while fine-tuning: 'train' updates them (PyTorch default), "
        "'frozen' keeps the pretrained running statistics (default: the sequence's, else train)",
    )
    a("--workers", type=int, help="data-loading processes (default: 0 on CPU, up to 8 on GPU)")
    a(
        "--micro-batch",
        type=int,
        metavar="N",
        help="split each training batch into passes of at most N images and accumulate their "
        "gradients: the same updates (up to rounding) in less GPU memory, so a resumed run may "
        "set it after running out of memory (refused where batch norms use batch statistics) "
        "(default: off)",
    )
    a(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        help="arithmetic of training and feature extraction: bf16 autocast or full fp32; auto is "
        "bf16 on a GPU and fp32 on CPU. LDIFS computes its feature distance in fp32 either way "
        "(default: auto)",
    )
    a(
        "--compile",
        action="store_true",
        default=None,
        help="torch.compile the encoder: the first steps compile (tens of seconds), later ones "
        "may run faster on a GPU (not yet measured; README 'Speed') (default: off)",
    )


def probe_options(a) -> None:
    a(
        "--probe-max-train",
        type=int,
        dest="probe_max_train_samples",
        help="fit the linear probe on at most this many training images per dataset (default: all)",
    )
    a(
        "--probe-max-test",
        type=int,
        dest="probe_max_test_samples",
        help="score probes and heads on a fixed subset of at most this many test images per "
        "dataset (default: all)",
    )
    a(
        "--eval-batch-size",
        type=int,
        dest="probe_batch_size",
        metavar="N",
        help="images per batch when extracting features for the probes (default: 1024 on a GPU, "
        "256 on CPU); it does not change the protocol, so a resumed run may lower it after "
        "running out of GPU memory",
    )


def resume_options(a) -> None:
    a(
        "--fresh",
        action="store_true",
        default=None,
        help="delete this run's folder (checkpoints and results) and start over; by default a "
        "command that was run before resumes after its last finished task, or reports that the "
        "run is complete",
    )
    a(
        "--keep-checkpoints",
        choices=["last", "all"],
        help="checkpoints kept in each run folder's checkpoints/: the latest stage's only (last), "
        "or one per stage (all) (default: last)",
    )
