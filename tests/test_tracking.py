"""Experiment tracking: manifest stats to flat metrics, and the metrics read back from TensorBoard's
event files (and a W&B offline run where wandb is installed)."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from larpo.errors import InputError
from larpo.tracking import IterationTracker, global_step, iteration_metrics, normalize_report_to

# The manifest's "completed" section of a 2-iteration run with held-out evaluation (values as the
# stages record them: see LarpoRun.generate/score/build/train/evaluate).
COMPLETED = {
    "-1": {"eval": {"greedy_accuracy": 0.25, "mean_reward": 1.5, "pass_at_k": {"1": 0.25, "4": 0.5}}},
    "0": {
        "generate": {"prompts": 6, "candidates": 22, "duplicates": 2, "external_negatives": 0, "temperatures": [1.0]},
        "score": {"mean_reward": 2.875, "mean_best_reward": 3.5},
        "lists": {"prompts_seen": 6, "lists_built": 4, "skipped_too_few": 1, "dropped_all_tied": 1,
                  "duplicates_removed": 0, "candidates_in_lists": 16, "mean_list_size": 4.0},
        "train": {"lists": 4, "steps": 3, "loss": 1.25, "ranking_accuracy": 0.5, "margin": 0.01, "final_loss": 1.0},
        "eval": {"skipped": True},
    },
    "1": {
        "generate": {"prompts": 6, "candidates": 24, "duplicates": 0, "external_negatives": 0, "temperatures": [1.0]},
        "score": {"mean_reward": 3.25, "mean_best_reward": 4.0},
        "lists": {"prompts_seen": 6, "lists_built": 6, "skipped_too_few": 0, "dropped_all_tied": 0,
                  "duplicates_removed": 0, "candidates_in_lists": 24, "mean_list_size": 4.0},
        "train": {"lists": 6, "steps": 4, "loss": 0.75, "ranking_accuracy": 0.625, "margin": 0.2,
                  "final_loss": 0.5},
        "eval": {"greedy_accuracy": 0.5, "mean_reward": 2.5, "pass_at_k": {"1": 0.5, "4": 0.75},
                 "ndcg": 0.9, "kendall_tau": None},
    },
}  # fmt: skip


def test_iteration_metrics_flatten_the_manifest_stats():
    metrics = iteration_metrics(COMPLETED["0"])
    assert metrics["iteration/mean_reward"] == 2.875
    assert metrics["iteration/mean_best_reward"] == 3.5
    assert metrics["iteration/lists_built"] == 4
    assert metrics["iteration/lists_skipped"] == 2  # 1 with too few responses + 1 all tied
    assert metrics["iteration/ranking_accuracy"] == 0.5
    assert "iteration/temperatures" not in metrics and not any(k.startswith("eval/") for k in metrics)
    assert {k: v for k, v in iteration_metrics(COMPLETED["1"]).items() if k.startswith("eval/")} == {
        "eval/greedy_accuracy": 0.5, "eval/mean_reward": 2.5, "eval/pass_at_k/1": 0.5,
        "eval/pass_at_k/4": 0.75, "eval/ndcg": 0.9,
    }  # fmt: skip
    assert iteration_metrics(COMPLETED["-1"]) == {
        "eval/greedy_accuracy": 0.25, "eval/mean_reward": 1.5, "eval/pass_at_k/1": 0.25, "eval/pass_at_k/4": 0.5
    }  # fmt: skip


def test_global_step_counts_the_optimizer_steps_so_far():
    assert [global_step(COMPLETED, s) for s in (-1, 0, 1)] == [0, 3, 7]


def test_report_to_values():
    assert normalize_report_to("none") == normalize_report_to(None) == normalize_report_to(["none"]) == []
    assert normalize_report_to("tensorboard") == ["tensorboard"]
    assert normalize_report_to(["tensorboard", "wandb"]) == ["tensorboard", "wandb"]
    with pytest.raises(InputError, match="report_to must be a tracker name or a list of names"):
        normalize_report_to(3)


def test_none_imports_nothing_heavy(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "transformers", raising=False)
    tracker = IterationTracker("none", tmp_path)
    tracker.log({"iteration/mean_reward": 1.0}, step=1)
    tracker.close()
    assert "transformers" not in sys.modules
    assert list(tmp_path.iterdir()) == []


def test_unknown_tracker_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="report_to: .*tensorbored is not supported"):
        IterationTracker(["tensorbored"], tmp_path)


def test_a_tracker_whose_package_is_missing_is_an_input_error(tmp_path):
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed")
    with pytest.raises(InputError, match="report_to: .*requires wandb to be installed"):
        IterationTracker("wandb", tmp_path)


def _scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _log_run(tracker: IterationTracker) -> None:
    """What the loop does: the initial evaluation, then per iteration its Trainer's logs and metrics."""
    tracker.log(iteration_metrics(COMPLETED["-1"]), global_step(COMPLETED, -1))
    for s in (0, 1):
        offset = global_step(COMPLETED, s - 1)
        forward = tracker.trainer_callback(offset)
        for step in range(1, COMPLETED[str(s)]["train"]["steps"] + 1):
            state = _trainer_state(step)
            forward.on_log(None, state, None, logs={"loss": 10.0 * s + step, "learning_rate": 1e-3})
        tracker.log(iteration_metrics(COMPLETED[str(s)]), global_step(COMPLETED, s))


def _trainer_state(step: int):
    from transformers import TrainerState

    state = TrainerState()
    state.global_step = step
    return state


def test_tensorboard_event_files_hold_the_iteration_metrics(tmp_path):
    with IterationTracker("tensorboard", tmp_path / "tb", run_name="demo", settings={"beta": 0.1}) as tracker:
        _log_run(tracker)
    scalars = _scalars(tmp_path / "tb")
    assert scalars["train/iteration/mean_reward"] == [(3, 2.875), (7, 3.25)]
    assert scalars["train/iteration/lists_skipped"] == [(3, 2.0), (7, 0.0)]
    assert scalars["eval/greedy_accuracy"] == [(0, 0.25), (7, 0.5)]
    assert scalars["eval/pass_at_k/4"] == [(0, 0.5), (7, 0.75)]
    assert "eval/kendall_tau" not in scalars  # None: not measured
    # the Trainers' own logs continue across iterations: steps 1-3, then 4-7
    assert scalars["train/loss"] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 11.0), (5, 12.0), (6, 13.0), (7, 14.0)]


def test_wandb_offline_run_holds_the_iteration_metrics(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    with IterationTracker("wandb", tmp_path, run_name="demo", settings={"beta": 0.1}) as tracker:
        _log_run(tracker)
        run = wandb.run
        assert run.config["beta"] == 0.1
        summary = dict(run.summary)
    wandb.finish()
    assert summary["train/iteration/mean_reward"] == 3.25
    assert summary["eval/greedy_accuracy"] == 0.5
    assert summary["train/global_step"] == 7


def test_a_trainers_logs_continue_at_the_step_offset(tmp_path):
    """A real ListwiseTrainer (report_to none) forwards its per-step logs through the tracker."""
    from larpo.trainer import ListwiseConfig, ListwiseTrainer
    from tests.helpers import arithmetic_lists, tiny_model_and_tokenizer

    model, tokenizer = tiny_model_and_tokenizer()
    args = ListwiseConfig(
        output_dir=str(tmp_path / "trainer"), objective="contrastive", learning_rate=1e-3,
        per_device_train_batch_size=2, num_train_epochs=1, logging_steps=1, use_cpu=True,
        disable_tqdm=True, seed=0, report_to="none", save_strategy="no",
    )  # fmt: skip
    trainer = ListwiseTrainer(model, args, arithmetic_lists(tokenizer), processing_class=tokenizer)
    with IterationTracker("tensorboard", tmp_path / "tb") as tracker:
        trainer.add_callback(tracker.trainer_callback(step_offset=5))
        trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    scalars = _scalars(tmp_path / "tb")
    assert [step for step, _ in scalars["train/loss"]] == [6, 7, 8]  # 6 lists, 2 per step
    assert [value for _, value in scalars["train/loss"]] == pytest.approx(losses)
    assert [step for step, _ in scalars["train/ranking_accuracy"]] == [6, 7, 8]
