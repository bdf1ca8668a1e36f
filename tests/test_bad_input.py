"""Every bad input of the catalogue: one line on stderr naming the problem and the fix, exit code 2,
no traceback, and the results already in --out untouched. (Corrupt checkpoints and resumes with
other settings are in test_resume.py, with the crash tests that make their folders.)"""

from pathlib import Path

import pytest

from run_benchmark import main
from tests.helpers.cli_checks import one_line_error, snapshot


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def bad_inputs(mini: Path, tmp_path: Path) -> list[tuple[str, list[str], list[str]]]:
    """(case, arguments, phrases the message must contain)."""
    seq = str(mini)
    return [
        (
            "unknown sequence",
            ["--sequence", "nosuch"],
            ["unknown sequence 'nosuch'; valid names: smoke, offline, 3tasks"],
        ),
        (
            "unknown strategy",
            ["--sequence", seq, "--strategy", "nosuch"],
            ["unknown strategy 'nosuch'; valid names: ft, l2sp, ldifs"],
        ),
        (
            "unknown dataset",
            ["--sequence", write(tmp_path, "d.yaml", "tasks: [synth_a, nosuch]\n")],
            ["d.yaml, line 1: unknown dataset 'nosuch'; valid names:", "synth_a"],
        ),
        (
            "unknown model",
            ["--sequence", seq, "--model", "NoSuchNet"],
            ["unknown model 'NoSuchNet'; use an open_clip architecture (e.g. ViT-B-32"],
        ),
        (
            "malformed YAML",
            ["--sequence", write(tmp_path, "y.yaml", "tasks: [synth_a\n")],
            ["y.yaml", "line 2", "not valid YAML"],
        ),
        (
            "YAML with a bad value",
            ["--sequence", write(tmp_path, "e.yaml", "tasks:\n  - {name: synth_a, epochs: 0}\n")],
            ["e.yaml, line 2: epochs for 'synth_a'"],
        ),
        (
            "missing dataset files",
            [
                "--sequence",
                write(tmp_path, "r.yaml", "tasks: [resisc45]\n"),
                "--data-root",
                str(tmp_path / "data"),
                "--no-download",
                "--model",
                "cfbench-tiny-vit",
                "--pretrained",
                "none",
            ],
            ["dataset 'resisc45'", "NWPU-RESISC45", str(tmp_path / "data" / "resisc45")],
        ),
        (
            "negative lambda",
            ["--sequence", seq, "--strategy", "ldifs", "--strategy-arg", "lam=-1"],
            ["lam must be a finite number >= 0, got -1.0", "valid fields: lam"],
        ),
        (
            "NaN lambda",
            ["--sequence", seq, "--strategy", "l2sp", "--strategy-arg", "alpha=nan"],
            ["alpha must be a finite number >= 0, got nan"],
        ),
        ("epochs 0", ["--sequence", seq, "--epochs", "0"], ["--epochs must be an integer >= 1"]),
        (
            "batch size 0",
            ["--sequence", seq, "--batch-size", "0"],
            ["--batch-size must be an integer >= 1"],
        ),
        ("NaN learning rate", ["--sequence", seq, "--lr", "nan"], ["lr must be a finite number"]),
        (
            "unwritable --out",
            ["--sequence", seq, "--out", write(tmp_path, "file", "") + "/sub"],
            ["cannot write to", "choose another --out"],
        ),
        (
            "micro-batches with batch norms",
            [
                "--sequence",
                seq,
                "--model",
                "resnet20-cifar",
                "--pretrained",
                "none",
                "--micro-batch",
                "8",
                "--strategy",
                "l2sp",
            ],  # a run not yet in --out
            [
                "--micro-batch would change what this model's batch norms see",
                "use --batchnorm frozen, or a smaller --batch-size",
            ],
        ),
        (
            "--fresh with a refused setting",
            [
                "--sequence",
                seq,
                "--fresh",
                "--model",
                "resnet20-cifar",
                "--pretrained",
                "none",
                "--micro-batch",
                "8",
            ],  # the finished run stays
            ["--micro-batch would change what this model's batch norms see"],
        ),
        (
            "micro-batch 0",
            ["--sequence", seq, "--micro-batch", "0"],
            ["--micro-batch must be an integer >= 1"],
        ),
        (
            "eval batch 0",
            ["--sequence", seq, "--eval-batch-size", "0"],
            ["--eval-batch-size must be an integer >= 1"],
        ),
    ]


CASES = [
    "unknown sequence",
    "unknown strategy",
    "unknown dataset",
    "unknown model",
    "malformed YAML",
    "YAML with a bad value",
    "missing dataset files",
    "negative lambda",
    "NaN lambda",
    "epochs 0",
    "batch size 0",
    "NaN learning rate",
    "unwritable --out",
    "micro-batches with batch norms",
    "--fresh with a refused setting",
    "micro-batch 0",
    "eval batch 0",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_and_touches_no_results(
    case, mini, finished, tmp_path, capsys
):
    cases = {name: (args, phrases) for name, args, phrases in bad_inputs(mini, tmp_path)}
    assert list(cases) == CASES
    args, phrases = cases[case]
    before = snapshot(finished)
    capsys.readouterr()
    assert main(["--out", str(finished), *args]) == 2
    message = one_line_error(capsys)
    for phrase in phrases:
        assert phrase in message, (phrase, message)
    assert snapshot(finished) == before
