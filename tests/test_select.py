"""run_benchmark.py select: a strategy argument chosen on validation records only, written into
the sequence's selected arguments, merged by get_sequence and recorded in config.json."""

import json
import math

import pandas as pd
import pytest
import yaml

from benchmark.errors import CFBenchError
from benchmark.grid import select
from benchmark.results import run_dir
from run_benchmark import main
from tasks import SEQUENCES, get_sequence
from tasks.selected import SELECTED_DIR, load_selection, selection_path, write_selection

SEQUENCE = (
    "tasks: [synth_a, synth_b]\ncontrols: [synth_control]\n"
    "defaults: {model: cfbench-tiny-vit, pretrained: none, lr: 1.0e-3, batch_size: 32, "
    "warmup_steps: 5, weight_decay: 0.0}\nstrategy_args: {l2sp: {alpha: 0.5}}\n"
)


@pytest.fixture
def seq_file(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text(SEQUENCE)
    return path


def test_where_selections_live(tmp_path):
    assert selection_path("offline", True) == SELECTED_DIR / "offline.yaml"
    assert selection_path(str(tmp_path / "x.yaml"), False) == tmp_path / "x.selected.yaml"


def test_write_keeps_other_strategies_and_get_sequence_merges(seq_file):
    path = selection_path(str(seq_file), False)
    write_selection(path, "ldifs", {"lam": 100}, {"score": "tasks", "scores": {"lam=1": 50.0}})
    write_selection(path, "l2sp", {"alpha": 0.01}, {"score": "tasks"})
    write_selection(path, "ldifs", {"lam": 300}, {"score": "all"})  # replaces ldifs only
    assert load_selection(path) == {
        "ldifs": {"args": {"lam": 300}, "chosen_by": {"score": "all"}},
        "l2sp": {"args": {"alpha": 0.01}, "chosen_by": {"score": "tasks"}},
    }
    assert path.read_text().startswith("# Strategy arguments chosen on validation")
    spec = get_sequence(str(seq_file))
    # the selected value replaces the sequence's own (alpha 0.5); other strategies are added
    assert spec.strategy_args == {"l2sp": {"alpha": 0.01}, "ldifs": {"lam": 300}}
    assert spec.selection["ldifs"] == {"args": {"lam": 300}, "score": "all"}


def test_a_broken_selection_file_is_one_clear_error(seq_file):
    selection_path(str(seq_file), False).write_text("ldifs: [1, 2]\n")
    with pytest.raises(CFBenchError, match="rerun run_benchmark.py select or delete it"):
        get_sequence(str(seq_file))


def test_registered_sequences_read_their_file():
    for name in SEQUENCES:
        spec = get_sequence(name)
        for strategy, entry in load_selection(selection_path(name, True)).items():
            assert spec.strategy_args[strategy] == {
                **SEQUENCES[name].strategy_args.get(strategy, {}),
                **entry["args"],
            }
            chosen = entry["chosen_by"]
            # the recorded scores name the chosen value as their maximum
            label = ",".join(f"{k}={v}" for k, v in entry["args"].items())
            assert max(chosen["scores"], key=chosen["scores"].get) == label
            assert chosen["score"] in ("tasks", "all", "head") and chosen["seeds"]


def test_choose_takes_the_best_mean_and_breaks_ties_by_grid_order():
    scores = {
        "lam=1": {"mean": 70.0},
        "lam=10": {"mean": 72.5},
        "lam=100": {"mean": 72.5},
        "lam=1000": {"mean": math.nan},
    }
    assert select.choose(scores) == "lam=10"
    with pytest.raises(CFBenchError, match="no value could be scored"):
        select.choose({"lam=1": {"mean": math.nan}})


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--grid", "alpha=0.1"], "give at least two"),
        (["--grid", "alpha=0.1,0.1"], "repeats a value"),
        (["--grid", "alpha=0.1,1", "--strategy-arg", "nonsense=1"], "nonsense"),
    ],
)
def test_bad_grids_fail_before_anything_runs(seq_file, tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    base = ["select", "--sequence", str(seq_file), "--strategy", "l2sp", "--out", str(out)]
    assert main(base + argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:") and message in err
    assert not out.exists() and not selection_path(str(seq_file), False).exists()


def _final_lp_val(folder, tasks):
    """The validation score recomputed from records.csv by hand: mean over tasks of the final
    stage's lp_val."""
    r = pd.read_csv(folder / "records.csv")
    last = r["stage"].max()
    rows = r[(r["stage"] == last) & (r["kind"] == "lp_val") & r["dataset"].isin(tasks)]
    assert len(rows) == len(tasks)
    return rows["accuracy"].mean()


def test_select_end_to_end(seq_file, tmp_path, capsys):
    out = tmp_path / "out"
    cache = str(tmp_path / "cache")  # the test's own: its four runs share row 0 and prompts
    argv = [
        "select",
        "--sequence",
        str(seq_file),
        "--strategy",
        "l2sp",
        "--grid",
        "alpha=0.01,100",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--cache-dir",
        cache,
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    folders = {a: run_dir(out, "two", f"l2sp@alpha={a}", 0) for a in ("0.01", "100")}
    by_hand = {a: _final_lp_val(f, ["synth_a", "synth_b"]) for a, f in folders.items()}
    best = max(by_hand, key=by_hand.get)
    assert f"alpha={best}" in [
        line.split()[0] for line in printed.splitlines() if line.endswith("<- chosen")
    ]
    entry = load_selection(selection_path(str(seq_file), False))["l2sp"]
    assert entry["args"] == {"alpha": float(best)}
    chosen_by = entry["chosen_by"]
    assert chosen_by["grid"] == {"alpha": [0.01, 100]} and chosen_by["seeds"] == [0]
    for a, value in by_hand.items():
        assert chosen_by["scores"][f"alpha={a}"] == pytest.approx(value, abs=1e-4)
    assert chosen_by["run_options"] == ["--epochs", "1", "--out", str(out), "--cache-dir", cache]
    # a plain run of the sequence now uses the chosen value and says where it came from
    assert (
        main(
            [
                "--sequence",
                str(seq_file),
                "--strategy",
                "l2sp",
                "--epochs",
                "1",
                "--out",
                str(out),
                "--cache-dir",
                cache,
            ]
        )
        == 0
    )
    config = json.loads((out / "two" / "l2sp" / "seed0" / "config.json").read_text())
    assert config["strategy_config"]["alpha"] == float(best)
    assert config["selection"]["grid"] == {"alpha": [0.01, 100]}
    # ... unless the command line replaces it
    assert (
        main(
            [
                "--sequence",
                str(seq_file),
                "--strategy",
                "l2sp",
                "--strategy-arg",
                "alpha=3",
                "--epochs",
                "1",
                "--out",
                str(out / "b"),
                "--cache-dir",
                cache,
            ]
        )
        == 0
    )
    config = json.loads((out / "b" / "two" / "l2sp" / "seed0" / "config.json").read_text())
    assert config["strategy_config"]["alpha"] == 3.0 and config["selection"] is None


def test_metrics_json_has_binomial_standard_errors(seq_file, tmp_path):
    out = tmp_path / "out"
    assert (
        main(
            [
                "--sequence",
                str(seq_file),
                "--strategy",
                "ft",
                "--epochs",
                "1",
                "--out",
                str(out),
                "--cache-dir",
                "none",
                "--probe-max-test",
                "50",
            ]
        )
        == 0
    )
    folder = out / "two" / "ft" / "seed0"
    m = json.loads((folder / "metrics.json").read_text())
    lp = pd.read_csv(folder / "lp_matrix.csv", index_col=0) / 100.0
    assert m["test_images"] == {"synth_a": 50, "synth_b": 50, "synth_control": 50}
    for name in lp.columns:
        p0, pt = lp[name].iloc[0], lp[name].iloc[-1]
        expected = 100 * math.sqrt(p0 * (1 - p0) / 50 + pt * (1 - pt) / 50)
        assert m["lp"]["delta_lp_se"][name] == pytest.approx(expected, rel=1e-6)
    # one control: the mean's error is that control's
    assert m["lp"]["delta_lp_controls_se"] == pytest.approx(m["lp"]["delta_lp_se"]["synth_control"])
    assert "delta_lp_se" in m["definitions"]


def test_selected_file_is_valid_yaml_for_humans(seq_file):
    path = selection_path(str(seq_file), False)
    write_selection(path, "ewc", {"lam": 3.0}, {"grid": {"lam": [0.3, 3.0]}})
    assert yaml.safe_load(path.read_text())["ewc"]["chosen_by"]["grid"] == {"lam": [0.3, 3.0]}


def test_ties_go_to_the_smallest_value_whatever_the_grid_order():
    # grid order would pick lam=100, text order lam=100 too ("1" < "3"); the rule: smallest value
    tied = {"lam=100": {"mean": 72.5}, "lam=3": {"mean": 72.5}, "lam=0.5": {"mean": 70.0}}
    assert select.choose(tied) == "lam=3"
    several = {"lam=10,anchor=pretrained": {"mean": 1.0}, "lam=2,anchor=pretrained": {"mean": 1.0}}
    assert select.choose(several) == "lam=2,anchor=pretrained"


def test_select_writes_a_registered_sequence_s_choice_beside_its_runs(tmp_path):
    """The shipped selections (tasks/selected/, package data) are never rewritten: select writes
    a registered sequence's choice to OUT/selected/NAME.yaml, and a run with that --out reads it
    over the shipped entries, strategy by strategy; a run with another --out does not."""
    from benchmark.commands.launch import build_configs
    from benchmark.commands.run import build_parser
    from tasks.selected import results_selection_path, written_selection_path

    out = tmp_path / "out"
    path = written_selection_path("smoke", True, out)
    assert path == results_selection_path(out, "smoke") == out / "selected" / "smoke.yaml"
    assert written_selection_path(str(tmp_path / "x.yaml"), False, out) == (
        tmp_path / "x.selected.yaml"
    )
    write_selection(path, "l2sp", {"alpha": 0.25}, {"score": "tasks", "seeds": [0]})
    parser = build_parser()
    sequence, (cfg,) = build_configs(parser.parse_args(["--strategy", "l2sp", "--out", str(out)]))
    assert cfg.strategy_args == {"alpha": 0.25}
    assert sequence.selection["l2sp"] == {"args": {"alpha": 0.25}, "score": "tasks", "seeds": [0]}
    _, (other,) = build_configs(
        parser.parse_args(["--strategy", "l2sp", "--out", str(tmp_path / "elsewhere")])
    )
    assert other.strategy_args == get_sequence("smoke").strategy_args.get("l2sp", {})
    assert not (SELECTED_DIR / "smoke.yaml").exists()


def test_a_results_selection_layers_over_the_shipped_one():
    from tasks.selected import apply_selection

    shipped = get_sequence("offline")
    assert shipped.selection  # tasks/selected/offline.yaml, package data
    strategy = next(iter(shipped.selection))
    spec = apply_selection(shipped, {"mine": {"args": {"k": 1}, "chosen_by": {"score": "all"}}})
    assert spec.strategy_args["mine"] == {"k": 1}
    assert spec.strategy_args[strategy] == shipped.strategy_args[strategy]
    assert spec.selection[strategy] == shipped.selection[strategy]
    assert spec.selection["mine"] == {"args": {"k": 1}, "score": "all"}
    assert apply_selection(shipped, {}) is shipped
