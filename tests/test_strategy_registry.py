"""The registry end to end through ``main()``: ``--strategy all`` runs every strategy into one
table, its arguments are checked before training, and external plugins run by import path."""

import json
import math

import pandas as pd
import pytest

from benchmark.metrics import HEADLINE
from run_benchmark import main
from strategies import STRATEGIES

MINI = """name: mini
tasks: [{name: synth_a, epochs: 1}, {name: synth_b, epochs: 1}]
controls: [synth_control]
defaults: {model: cfbench-tiny-vit, pretrained: none, lr: 1.0e-3, batch_size: 32,
           warmup_steps: 2, weight_decay: 0.0, probe_max_train_samples: 60}
strategy_args: {ldifs: {lam: 1, anchor: pretrained}, replay: {mem_size: 40}}
"""


@pytest.fixture(scope="module")
def mini_sequence(tmp_path_factory):
    path = tmp_path_factory.mktemp("seq") / "mini.yaml"
    path.write_text(MINI)
    return path


def test_strategy_all_runs_every_strategy_and_prints_one_table(mini_sequence, tmp_path, capsys):
    assert (
        main(["--sequence", str(mini_sequence), "--strategy", "all", "--out", str(tmp_path)]) == 0
    )
    out = capsys.readouterr().out
    table = out[out.index("LP metrics") :].splitlines()
    assert table[1].split() == ["Final", "acc", "ΔLP", "controls", "Forgetting"]
    assert [m.label for m in HEADLINE] == ["Final acc", "ΔLP controls", "Forgetting"]
    rows = {line.split()[0]: line.split()[1:] for line in table[3 : 3 + len(STRATEGIES)]}
    assert list(rows) == list(STRATEGIES)
    assert all(len(v) == 3 and "n/a" not in v for v in rows.values())
    csv = pd.read_csv(tmp_path / "mini" / "comparison_seed0.csv", index_col="strategy")
    assert list(csv.index) == list(STRATEGIES)
    metrics = json.loads((tmp_path / "mini" / "ldifs" / "seed0" / "metrics.json").read_text())
    assert csv.loc["ldifs", "Forgetting"] == pytest.approx(metrics["lp"]["forgetting"])
    assert csv.loc["ldifs", "Final acc"] == pytest.approx(metrics["lp"]["final_avg_acc"])
    config = json.loads((tmp_path / "mini" / "ldifs" / "seed0" / "config.json").read_text())
    assert config["strategy_args"] == {"lam": 1, "anchor": "pretrained"}  # from the YAML
    assert config["strategy_config"] == {
        "lam": 1.0,
        "anchor": "pretrained",
        "axis": "token",
        "reduction": "mean",
    }
    assert config["seed"] == 0
    assert "strategy_details" not in config  # LDIFS reports no config entries
    # Re-running compares the strategy's settings by effect, not as typed: an argument given at
    # the value it already had is the same run (already complete); another value is refused.
    argv = ["--sequence", str(mini_sequence), "--out", str(tmp_path), "--strategy", "ldifs"]
    before = {p: p.read_bytes() for p in (tmp_path / "mini" / "ldifs").rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main([*argv, "--strategy-arg", "lam=1.0", "--strategy-arg", "axis=token"]) == 0
    assert "is already complete" in capsys.readouterr().out
    assert main([*argv, "--strategy-arg", "lam=2"]) == 2
    assert "other settings (strategy_config.lam: 1.0 -> 2.0)" in capsys.readouterr().err
    after = {p: p.read_bytes() for p in (tmp_path / "mini" / "ldifs").rglob("*") if p.is_file()}
    assert after == before


def test_strategy_all_refuses_a_strategy_arg_before_training(mini_sequence, tmp_path, capsys):
    argv = ["--sequence", str(mini_sequence), "--out", str(tmp_path), "--strategy"]
    assert main([*argv, "all", "--strategy-arg", "lam=1"]) == 2
    assert main([*argv, "ldifs", "--strategy-arg", "anchor=foo"]) == 2
    err = capsys.readouterr().err
    assert "with --strategy all" in err and "anchor='foo' is not one of" in err
    assert not (tmp_path / "mini").exists()


@pytest.mark.parametrize(
    "strategy, args",
    [
        ("examples.my_strategy:build", ["lam=1e-4"]),
        ("avalanche.training.plugins:SynapticIntelligencePlugin", ["si_lambda=1"]),
        ("avalanche.training.plugins:MASPlugin", ["lambda_reg=0.5"]),
    ],
)
def test_external_plugins_run_end_to_end(mini_sequence, tmp_path, strategy, args):
    argv = ["--sequence", str(mini_sequence), "--strategy", strategy, "--out", str(tmp_path)]
    for arg in args:
        argv += ["--strategy-arg", arg]
    assert main(argv) == 0
    (folder,) = (tmp_path / "mini").iterdir()
    metrics = json.loads((folder / "seed0" / "metrics.json").read_text())
    assert math.isfinite(metrics["lp"]["final_avg_acc"])
