"""benchmarks/study_ledger.py: which recorded measurement answers for a run, and what it knows of the run's
stage seconds."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from study_ledger import Ledger  # noqa: E402

SETTINGS = {
    "iterations": 2,
    "beta": 0.1,
    "learning_rate": 4e-5,
    "output_dir": "runs/a",
    "save_total_limit": None,
}
VALIDATION = {"prompts": "validation.jsonl", "first": 200, "reward": "exact"}


def test_a_measurement_answers_only_for_the_same_run_settings_and_evaluation(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl", machine="test machine")
    entry = ledger.record(
        "validation", "seed0/x_lr4e-05", SETTINGS, VALIDATION, {"greedy_accuracy": 0.25}, [10.0, 12.0]
    )
    assert ledger.find("validation", "seed0/x_lr4e-05", SETTINGS, VALIDATION) == entry
    # what a run may change on resume does not change its results
    moved = {**SETTINGS, "output_dir": "elsewhere", "save_total_limit": 2}
    assert ledger.find("validation", "seed0/x_lr4e-05", moved, VALIDATION)["result"] == {
        "greedy_accuracy": 0.25
    }
    misses = [
        ("test", "seed0/x_lr4e-05", SETTINGS, VALIDATION),
        ("validation", "seed1/x_lr4e-05", SETTINGS, VALIDATION),
        ("validation", "seed0/x_lr4e-05", {**SETTINGS, "beta": 0.5}, VALIDATION),
        ("validation", "seed0/x_lr4e-05", {**SETTINGS, "iterations": 3}, VALIDATION),
        ("validation", "seed0/x_lr4e-05", {**SETTINGS, "nll_min_score": 1.0}, VALIDATION),  # added: was None
        ("validation", "seed0/x_lr4e-05", SETTINGS, {**VALIDATION, "first": 100}),
    ]
    assert [ledger.find(*miss) for miss in misses] == [None] * len(misses)
    assert (
        ledger.find("validation", "seed0/x_lr4e-05", {**SETTINGS, "nll_min_score": None}, VALIDATION) == entry
    )
    newer = ledger.record(
        "validation", "seed0/x_lr4e-05", SETTINGS, VALIDATION, {"greedy_accuracy": 0.3}, [9.0, 9.0]
    )
    assert ledger.find("validation", "seed0/x_lr4e-05", SETTINGS, VALIDATION) == newer
    assert Ledger(tmp_path / "ledger.jsonl").entries() == [entry, newer]  # read back from the file


def test_the_longest_record_of_a_runs_stage_seconds_is_what_the_ledger_knows(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    run = "seed0/x_lr4e-05"
    ledger.record("test", run, SETTINGS, VALIDATION, {}, [10.0, 12.0, 11.0])  # extended for equal compute
    ledger.record("validation", run, SETTINGS, VALIDATION, {}, [10.0, 12.0])
    ledger.record("validation", "seed0/y_lr1e-05", SETTINGS, VALIDATION, {}, None)  # carried over, unrecorded
    assert ledger.iteration_seconds(run, {**SETTINGS, "iterations": 7}) == [10.0, 12.0, 11.0]
    assert ledger.iteration_seconds(run, {**SETTINGS, "beta": 0.5}) == []  # another run's settings
    assert ledger.iteration_seconds("seed0/y_lr1e-05", SETTINGS) == []
    assert ledger.stage_seconds_by_run() == {run: 33.0, "seed0/y_lr1e-05": 0.0}


def test_a_line_cut_off_by_a_crash_is_skipped_and_the_next_entry_stays_whole(tmp_path, capsys):
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    kept = ledger.record(
        "validation", "seed0/x_lr4e-05", SETTINGS, VALIDATION, {"greedy_accuracy": 0.2}, [1.0]
    )
    with path.open("a") as handle:
        handle.write('{"kind": "validation", "run": "seed0/y_lr')  # the crash: half a line, no newline
    assert ledger.entries() == [kept]
    assert "ledger.jsonl:2 is not a whole entry" in capsys.readouterr().err
    after = ledger.record("test", "seed0/x_lr4e-05", SETTINGS, VALIDATION, {"greedy_accuracy": 0.3}, [1.0])
    assert ledger.entries() == [kept, after]
    assert ledger.find("test", "seed0/x_lr4e-05", SETTINGS, VALIDATION) == after
    assert len(path.read_text().splitlines()) == 3
