"""Off-protocol runs (benchmark/protocol.py) and the report's forgets-least sentence
(benchmark/report/ranking.py): runs that changed protocol settings are marked, and a lead within
the standard error of the difference is said to be one."""

import math

import numpy as np

from benchmark.config import build_run_config
from benchmark.protocol import off_protocol
from benchmark.report.build import main_report
from benchmark.results import RunResults, run_dir
from tasks import get_sequence

TASKS, CONTROLS = ["a", "b"], ["c"]


def test_a_run_with_the_sequences_settings_is_on_the_protocol():
    smoke = get_sequence("smoke")
    cfg = build_run_config(smoke.defaults, {"out": "elsewhere", "device": "cpu"}, {"seed": 3})
    assert off_protocol(cfg, smoke.defaults) == []


def test_every_changed_protocol_setting_is_named_with_the_protocols_value():
    five = get_sequence("5tasks")
    given = {
        "pretrained": "/tmp/random.pt",
        "epochs": 1,
        "probe_max_train_samples": 20,
        "max_train_images": 16,
        "workers": 0,
        "precision": "fp32",
    }
    cfg = build_run_config(five.defaults, given, {"strategy": "ldifs"})
    assert off_protocol(cfg, five.defaults) == [
        "pretrained /tmp/random.pt (protocol: openai)",
        "epochs 1 (protocol: the sequence's per-task epochs)",
        "max_train_images 16 (protocol: all)",
        "max_train_samples 20 (protocol: all)",
    ]  # workers and precision change how fast, not what: not protocol settings
    cfg = build_run_config(five.defaults, {"pretrained": "none", "lr": 3e-5})
    assert off_protocol(cfg, five.defaults) == [
        "pretrained none (random weights) (protocol: openai)",
        "lr 3e-05 (protocol: 1e-05)",
    ]


def _run(out, strategy, control_after, test_images, off=None):
    """A finished run whose only control goes from 50 % to ``control_after`` %."""
    folder = run_dir(out, "seq", strategy, 0)
    results = RunResults(
        folder, {"sequence": "seq", "strategy": strategy, "seed": 0}, TASKS, CONTROLS
    )
    sizes = dict.fromkeys(TASKS + CONTROLS, test_images)
    results.write_config(
        {
            "strategy": strategy,
            "seed": 0,
            "test_images": sizes,
            "sequence_spec": {"name": "seq", "tasks": TASKS, "controls": CONTROLS},
            **({"off_protocol": off} if off is not None else {}),
        }
    )
    lp = np.array([[60.0, 60.0, 50.0], [80.0, 60.0, 50.0], [70.0, 80.0, control_after]])
    for stage in range(3):
        task = "pretrained" if stage == 0 else TASKS[stage - 1]
        results.append(
            [
                {
                    "stage": stage,
                    "stage_task": task,
                    "dataset": d,
                    "kind": "lp",
                    "role": "task" if d in TASKS else "control",
                    "accuracy": lp[stage, j],
                }
                for j, d in enumerate(TASKS + CONTROLS)
            ]
        )
        results.write()
    results.finish()


def _sentence(tmp_path) -> str:
    text = (main_report(tmp_path) / "report.md").read_text()
    return next(line for line in text.splitlines() if "forgets least" in line)


def _se(after: float, n: int) -> float:  # binomial SE of one control's delta-LP, by hand
    return 100 * math.sqrt(0.5 * 0.5 / n + after / 100 * (1 - after / 100) / n)


def test_a_lead_inside_the_standard_error_is_said_to_be_no_difference(tmp_path):
    _run(tmp_path, "ft", 49.0, 10)
    _run(tmp_path, "ldifs", 48.0, 10)
    sentence = _sentence(tmp_path)
    diff_se = math.hypot(_se(49.0, 10), _se(48.0, 10))  # 31.5 points: 10 test images
    assert "`ft` forgets least" in sentence
    assert f"`ldifs` (-2.00, difference SE {diff_se:.2f})" in sentence
    assert "do not show that `ft` forgets less than it" in sentence
    assert "Off the protocol" not in sentence


def test_a_lead_beyond_the_standard_error_stands_and_off_protocol_runs_are_marked(tmp_path):
    changed = ["epochs 1 (protocol: the sequence's per-task epochs)"]
    _run(tmp_path, "ft", 49.0, 1_000_000, changed)  # SE of the difference 0.10 < the 1.00 lead
    _run(tmp_path, "ldifs", 48.0, 1_000_000, changed)
    sentence = _sentence(tmp_path)
    assert "`ft` forgets least" in sentence and "standard error" not in sentence
    assert sentence.startswith(f"**Off the protocol** ({changed[0]}): these runs test the code")
    report = (tmp_path / "report" / "report.md").read_text()
    assert f"- `seq` `ft`: {changed[0]}" in report and f"- `seq` `ldifs`: {changed[0]}" in report


def test_with_several_seeds_the_standard_error_is_std_over_root_n():
    import pandas as pd

    from benchmark.report.ranking import strategy_se, within_noise

    key = "delta_lp_controls_mean"
    table = pd.DataFrame(
        {
            "strategy": ["ldifs", "l2sp", "ft"],
            "n_seeds": [4, 4, 9],
            key: [-1.0, -2.5, -9.0],
            "delta_lp_controls_std": [2.0, 2.0, 3.0],
        }
    )
    se = strategy_se(table, [], key)
    assert se == {"ldifs": 1.0, "l2sp": 1.0, "ft": 1.0}
    # the difference SE is sqrt(1 + 1) = 1.41: l2sp 1.5 behind is beyond it
    assert within_noise(table, se, "ldifs", key) == []
    table.loc[1, key] = -2.4  # 1.4 behind: within sqrt(1 + 1)
    assert within_noise(table, se, "ldifs", key) == [("l2sp", -2.4, math.sqrt(2))]
