from run_benchmark import build_parser, main
from tests.test_report import LP, ZS, write_run


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
    text = build_parser().format_help()
    assert "--seeds" in text and "--tensorboard" in text
    assert build_parser().parse_args(["--seeds", "0", "1", "2"]).seeds == [0, 1, 2]
