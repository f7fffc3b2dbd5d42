"""A run's trackers (``report_to``) and model cards hold the numbers its manifest records."""

import re

import pytest

from larpo.model_card import read_card_metadata
from tests.helpers import run, settings

pytest.importorskip("tensorboard")

EVAL = ["eval_samples=2", "eval_ks=[1, 2]", "eval_ranking_prompts=0"]


def _scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.fixture(scope="module")
def tracked(workspace, tmp_path_factory):
    """A 2-iteration run with TensorBoard tracking and held-out evaluation, then resumed for a third."""
    run_dir = tmp_path_factory.mktemp("tracked") / "run"
    overrides = [
        "report_to=tensorboard",
        "run_name=tiny",
        f"eval_prompts={workspace / 'prompts.jsonl'}",
        *EVAL,
    ]
    first = run(workspace, run_dir, *overrides)
    first_scalars = _scalars(run_dir / "runs")
    manifest = run(workspace, run_dir, *overrides, "iterations=3")
    return run_dir, first, first_scalars, manifest


def _steps(completed, s):
    return sum(completed[str(i)]["train"]["steps"] for i in range(s + 1))


def test_event_files_hold_each_iterations_accuracy_and_reward_once(tracked):
    run_dir, first, first_scalars, manifest = tracked
    completed = manifest["completed"]
    assert _steps(completed, 2) > _steps(completed, 1) > _steps(completed, 0) > 0
    scalars = _scalars(run_dir / "runs")
    accuracy = [(0, completed["-1"]["eval"]["greedy_accuracy"])] + [
        (_steps(completed, s), completed[str(s)]["eval"]["greedy_accuracy"]) for s in range(3)
    ]
    assert scalars["eval/greedy_accuracy"] == [(step, pytest.approx(value)) for step, value in accuracy]
    rewards = [(_steps(completed, s), completed[str(s)]["score"]["mean_reward"]) for s in range(3)]
    assert scalars["train/iteration/mean_reward"] == [(step, pytest.approx(value)) for step, value in rewards]
    # the first invocation logged iterations 0 and 1; the resumed one added iteration 2 alone
    assert first_scalars["eval/greedy_accuracy"] == scalars["eval/greedy_accuracy"][:3]
    # the Trainers' per-step losses continue across iterations, one per optimizer step
    assert [step for step, _ in scalars["train/loss"]] == list(range(1, _steps(completed, 2) + 1))
    assert first["config"]["report_to"] == "tensorboard" and first["config"]["run_name"] == "tiny"


def test_each_iterations_model_card_holds_its_recorded_evaluation(tracked, workspace):
    run_dir, _, _, manifest = tracked
    for s in range(3):
        text = (run_dir / f"iter_{s}" / "model" / "README.md").read_text()
        metadata = read_card_metadata(text)
        assert metadata["library_name"] == "transformers"
        assert metadata["tags"][-1] == "contrastive"
        assert (
            f"`{workspace / 'model'}`" in text and f"| iterations | {s + 1} of {2 if s < 2 else 3} |" in text
        )  # as the run stood when s finished
        rows = dict(re.findall(r"^\| ([\w@]+) \| ([^|]+) \|$", text, re.MULTILINE))
        recorded = manifest["completed"][str(s)]["eval"]
        assert f"(after iteration {s})" in text
        assert float(rows["greedy_accuracy"]) == recorded["greedy_accuracy"]
        assert float(rows["mean_reward"]) == recorded["mean_reward"]
        assert {k: float(rows[f"pass@{k}"]) for k in ("1", "2")} == recorded["pass_at_k"]


def test_a_bad_report_to_is_one_error_before_anything_is_written(workspace, tmp_path):
    from larpo.errors import InputError
    from larpo.run import load_run_config

    with pytest.raises(InputError, match="'report_to' must be a string or a non-empty list"):
        load_run_config(None, settings(workspace, tmp_path / "run", "report_to=3"))
    config = load_run_config(None, settings(workspace, tmp_path / "run", "report_to=[nosuchtracker]"))
    assert config.report_to == ["nosuchtracker"] and config.run_name is None
    with pytest.raises(InputError, match="report_to: .*nosuchtracker"):
        run(workspace, tmp_path / "run", "report_to=[nosuchtracker]")
    assert not (tmp_path / "run").exists()
