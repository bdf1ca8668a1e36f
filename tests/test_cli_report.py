from benchmark.commands.run import build_parser
from run_benchmark import main
from strategies import STRATEGIES
from tests.helpers.report_runs import LP, ZS, write_run


def test_report_subcommand_writes_the_report(tmp_path, capsys):
    for (strategy, seed), lp in LP.items():
        write_run(tmp_path, strategy, seed, lp, zs=ZS)
    assert main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "report" / "report.md").is_file()
    assert str(tmp_path / "report" / "report.md") in capsys.readouterr().out


def test_report_subcommand_on_an_empty_folder_is_one_line_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no runs under") and err.count("\n") == 1


def test_seeds_and_tensorboard_are_documented():
    text = build_parser(list(STRATEGIES)).format_help()
    assert "--seeds" in text and "--tensorboard" in text
    assert build_parser(list(STRATEGIES)).parse_args(["--seeds", "0", "1", "2"]).seeds == [0, 1, 2]


def test_report_shows_what_the_runs_cost_mean_over_seeds(tmp_path):
    import json

    import pandas as pd

    # trained, encoded, GFLOPs, text seconds, wall
    spent = {0: (100, 40, 2.5, 4.0, 10.0), 1: (100, 60, 3.5, 6.0, 14.0)}
    for seed, (trained, encoded, gflops, text, wall) in spent.items():
        folder = write_run(tmp_path, "ft", seed, LP[("ft", 0)])
        metrics = json.loads((folder / "metrics.json").read_text())
        seconds = {"train": 1.0, "features": 2.0, "probe": 3.0, "text": text, "wall": wall}
        metrics["cost"] = {
            "images_trained": trained,
            "images_encoded": encoded,
            "prompts_encoded": 875,
            "gflops": gflops,
            "seconds": seconds,
        }
        (folder / "metrics.json").write_text(json.dumps(metrics))
    write_run(tmp_path, "l2sp", 0, LP[("ft", 0)])  # no cost recorded: left out of the cost table
    assert main(["report", str(tmp_path)]) == 0
    cost = pd.read_csv(tmp_path / "report" / "cost.csv")
    assert cost.strategy.tolist() == ["ft"] and cost.seeds.tolist() == [2]
    row = cost.iloc[0]
    assert (row.images_trained, row.images_encoded, row.gflops, row.wall) == (100, 50, 3.0, 12.0)
    text = (tmp_path / "report" / "report.md").read_text()
    assert (
        "## Cost" in text
        and "| `smoke` | `ft` | 2 | 100 | 50 | 875 | 3 | 1.0 | 2.0 | 3.0 | 5.0 | 12.0 |" in text
    )
