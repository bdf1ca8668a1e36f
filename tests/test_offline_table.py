"""The README's offline tables are what the code computes: the 3-seed table (with SE and the
differences beyond 2 std) regenerated from the committed run records in results/offline-3seeds/,
and the selected weights from tasks/selected/offline.yaml."""

from pathlib import Path

import pytest

from benchmark.grid.select import selected_markdown
from benchmark.report.runs import discover_runs
from benchmark.report.seeds import seeds_section
from tasks.selected import load_selection, selection_path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "offline-3seeds"


def readme_block(name: str) -> str:
    text = (ROOT / "README.md").read_text()
    begin, end = f"<!-- {name}: begin -->\n", f"<!-- {name}: end -->"
    assert begin in text and end in text, f"README lacks the {name} markers"
    return text.split(begin, 1)[1].split(end, 1)[0].strip()


def test_readme_offline_table_is_regenerated_from_the_records():
    runs, _ = discover_runs(RESULTS)
    runs = [r for r in runs if r.sequence == "offline"]
    assert runs, f"no offline runs under {RESULTS}"
    assert {r.seed for r in runs} == {0, 1, 2}
    assert all(r.complete for r in runs)
    assert readme_block("offline-table") == seeds_section(runs).strip()


def test_readme_selected_weights_are_the_sequence_file():
    selection = load_selection(selection_path("offline", True))
    assert set(selection) >= {"l2sp", "ldifs", "ewc", "lwf", "wise_ft"}
    assert readme_block("offline-selection") == selected_markdown(selection).strip()


@pytest.mark.parametrize("strategy", ["ft", "ldifs"])
def test_committed_runs_used_the_selected_weights(strategy):
    import json

    selection = load_selection(selection_path("offline", True))
    for seed in (0, 1, 2):
        config = json.loads(
            (RESULTS / "offline" / strategy / f"seed{seed}" / "config.json").read_text()
        )
        if strategy in selection:
            for key, value in selection[strategy]["args"].items():
                assert config["strategy_config"][key] == value
