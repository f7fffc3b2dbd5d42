"""The GRPO baseline's plumbing: TRL's GRPOTrainer sees the iteration's prompts, larpo's scores and the
configured number of samples, and the model it saves is what larpo's evaluation measures."""

import json

import pytest
import torch

from larpo.errors import InputError
from larpo.prompts import Prompt
from larpo.rewards import CallableReranker, Reranker
from larpo.run.config import RunConfig
from larpo.tasks.arithmetic import graded_reward
from tests.rewards_for_tests import digit_overlap, weighted_overlap

pytest.importorskip("trl")

from larpo.baselines.grpo import GRPO_STAGES, TRLReward, grpo_dataset, open_grpo_run, run_grpo  # noqa: E402
from larpo.model_io import load_policy  # noqa: E402
from larpo.run import execute  # noqa: E402


class PositionInList(Reranker):
    """Scores each response by its position in its list: shows which completions were scored together."""

    def _score(self, prompts, responses):
        return [[float(i) for i in range(len(row))] for row in responses]


def test_reward_wrapper_gives_larpo_scores_in_trls_call_convention():
    prompts = ["37+85=", "52-37=", "37+85=", "52-37=", "37+85="]
    completions = ["122", "15", "121", "25", "x"]
    rewards = TRLReward(CallableReranker(graded_reward))(prompts, completions, trainer_state=None)
    expected = [graded_reward(p, [c])[0] for p, c in zip(prompts, completions, strict=True)]
    assert rewards == pytest.approx(expected)
    assert rewards[0] == rewards[1] == 1.0 and rewards[4] == 0.0
    assert rewards[2] == pytest.approx(0.7176, abs=1e-4)  # the docstring's value for 121


def test_reward_wrapper_scores_each_prompts_completions_as_one_list():
    reward = TRLReward(PositionInList())
    assert reward(["a", "b", "a", "a", "b"], ["1", "2", "3", "4", "5"]) == [0.0, 0.0, 1.0, 2.0, 1.0]
    reward(["a"], ["1"])
    assert reward.completions_scored == 6


def test_dataset_holds_the_rendered_prompts_and_their_ids():
    prompts = [Prompt("a", "<user>12+20=", [{"role": "user", "content": "12+20="}]), Prompt("b", "13+23=")]
    assert grpo_dataset(prompts)[:] == {"prompt": ["<user>12+20=", "13+23="], "prompt_id": ["a", "b"]}


def test_reward_wrapper_gives_the_reward_each_prompts_original_and_fields():
    """TRL passes the dataset's other columns as keyword arguments: the ids name the run's prompts."""
    prompts = [
        Prompt("a", "<user>10+20=", "10+20=", {"weight": 2.0}),
        Prompt("b", "<user>11+23=", "11+23=", {"weight": -1.0}),
    ]
    reward = TRLReward(CallableReranker(weighted_overlap), prompts)
    rewards = reward(["<user>10+20=", "<user>11+23=", "<user>10+20="], ["30", "34", "3"],
                     prompt_id=["a", "b", "a"], trainer_state=None)  # fmt: skip
    assert rewards == [4.0, -2.0, 2 * digit_overlap("10+20=", ["3"])[0]]


class Recording(Reranker):
    """Records every call's prompts, completion counts and fields, then scores like ``inner``."""

    def __init__(self, inner: Reranker) -> None:
        self.inner, self.calls, self.fields = inner, [], []

    def _score(self, prompts, responses):
        return self._score_with_fields(prompts, responses, None)

    def _score_with_fields(self, prompts, responses, fields):
        self.calls.append((list(prompts), [len(row) for row in responses]))
        self.fields.append(dict(zip(prompts, fields or [], strict=False)))
        return self.inner.score(prompts, responses, fields)


@pytest.fixture(scope="module")
def grpo_run(workspace, tmp_path_factory):
    """One GRPO iteration on 4 of the 8 prompts, 4 samples each, 2 prompts (8 completions) per step."""
    root = tmp_path_factory.mktemp("grpo")
    prompts = root / "prompts.jsonl"  # the workspace's prompts, each with a field its reward reads
    rows = [json.loads(line) for line in (workspace / "prompts.jsonl").read_text().splitlines()]
    prompts.write_text(
        "".join(json.dumps(row | {"weight": float(i + 1)}) + "\n" for i, row in enumerate(rows))
    )
    config = RunConfig(
        model=str(workspace / "model"), prompts=str(prompts),
        reward="tests.rewards_for_tests:weighted_overlap", output_dir=str(root / "run"),
        iterations=1, prompts_per_iteration=4, num_candidates=4, batch_size=2, max_new_tokens=4,
        learning_rate=1e-2, eval_prompts=str(prompts), eval_samples=2, eval_ks=[1, 2],
    )  # fmt: skip
    ctx = open_grpo_run(config)
    ctx.reranker = Recording(ctx.reranker)
    execute(ctx, GRPO_STAGES)
    return ctx


def test_grpo_trains_on_the_iterations_prompts_with_the_configured_samples(grpo_run):
    calls = grpo_run.reranker.calls
    assert len(calls) == 2  # 4 prompts / 2 per step
    assert all(counts == [4, 4] for _, counts in calls)  # 2 prompts x num_candidates per step
    seen = sorted(p for prompts, _ in calls for p in prompts)
    assert seen == sorted(p.text for p in grpo_run.prompts_for(0))
    weights = {p.text: {"weight": float(int(p.prompt_id[1:]) + 1)} for p in grpo_run.prompts_for(0)}
    assert {p: f for call in grpo_run.reranker.fields for p, f in call.items()} == weights
    stats = json.loads((grpo_run.run_dir / "iter_0" / "train_stats.json").read_text())
    assert (stats["prompts"], stats["completions"], stats["steps"]) == (4, 16, 2)
    assert stats["loss_type"] == "dapo"  # TRL 1.16's default


def test_the_saved_grpo_model_is_trained_and_evaluated_by_larpo(grpo_run, workspace):
    start, _ = load_policy(workspace / "model")
    trained, _ = load_policy(grpo_run.run_dir / "iter_0" / "model")
    changed = [not torch.equal(a, b) for a, b in zip(start.parameters(), trained.parameters(), strict=True)]
    assert any(changed)
    result = json.loads((grpo_run.run_dir / "eval" / "iter_0.json").read_text())
    assert result["prompts"] == 8 and len(result["greedy_outputs"]) == 8
    assert set(result["pass_at_k"]) == {"1", "2"}
    assert grpo_run.manifest.stats(0, "generate") == {"skipped": "GRPO samples inside its trainer"}


def test_grpo_run_rejects_what_it_cannot_do_before_writing(workspace, tmp_path):
    config = RunConfig(
        model=str(workspace / "model"), prompts=str(workspace / "prompts.jsonl"),
        reward="tests.rewards_for_tests:digit_overlap", output_dir=str(tmp_path / "run"), temperature_mix=[0.7, 1.0],
    )  # fmt: skip
    with pytest.raises(InputError, match="one temperature"):
        run_grpo(config)
    assert not (tmp_path / "run").exists()
