"""A prompt row's other fields reach the reward functions that declare them (TRL's convention), in
`larpo run`, `larpo score` and `larpo eval`, and are kept with the run's candidates."""

import json
import signal
from pathlib import Path

import pytest

from larpo.prompts import load_prompts
from larpo.rewards import CallableReranker, RewardError
from larpo.run import run as run_larpo
from larpo.run.config import load_run_config
from larpo.store import read_records
from tests.helpers import larpo_run, run_cli, settings
from tests.rewards_for_tests import digit_overlap, field_count, weighted_overlap

REWARDS = Path(__file__).with_name("rewards_for_tests.py")
WEIGHTED = f"{REWARDS}:weighted_overlap"


def test_a_reward_gets_the_fields_it_declares_and_no_others():
    reranker = CallableReranker(weighted_overlap)
    fields = [{"weight": 2.0, "note": "unused"}, {"weight": -1.0, "offset": 0.5}]
    scores = reranker.score(["10+20=", "11+23="], [["30", "3"], ["34"]], fields)
    assert scores == [[4.0, 2 * digit_overlap("10+20=", ["3"])[0]], [-2.0 + 0.5]]


def test_a_reward_with_kwargs_gets_every_field_and_a_plain_reward_none():
    assert CallableReranker(field_count).score(
        ["p", "q"], [["a"], ["b", "c"]], [{"weight": 2.0, "x": [1]}, {}]
    ) == [
        [4.0],
        [0.0, 0.0],
    ]
    plain = CallableReranker(digit_overlap)
    assert plain.score(["10+20="], [["30"]], [{"weight": 5.0}]) == plain.score(["10+20="], [["30"]])


def test_only_fields_without_a_default_are_required():
    reranker = CallableReranker(weighted_overlap)
    reranker.check_fields([("q0", {"weight": 1.0})])  # offset has a default
    with pytest.raises(RewardError, match=r"prompts.jsonl: prompt 'q1' cannot be scored by weighted_overlap: "
                                          r"it has no field 'weight'.*\(its fields: offset\)"):  # fmt: skip
        reranker.check_fields([("q0", {"weight": 1.0}), ("q1", {"offset": 1.0})], "prompts.jsonl: ")


def test_prompts_keep_every_other_field_of_their_row(tmp_path):
    path = tmp_path / "prompts.jsonl"
    rows = [{"id": "a", "prompt": "1+1=", "answer": 2, "tests": {"kind": ["exact"]}}, {"prompt": "2+2="}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert [(p.prompt_id, p.fields) for p in load_prompts(path)] == [
        ("a", {"answer": 2, "tests": {"kind": ["exact"]}}),
        ("p2", {}),
    ]


WEIGHTS = [1.0, 2.0, -1.0, 0.5, 3.0, 1.5, -2.0, 4.0]


def write_weighted_prompts(path, weights=WEIGHTS):
    """The workspace's 8 prompts, each with its own ``weight`` field (and ``offset`` on every other one)."""
    with open(path, "w") as handle:
        for i, weight in enumerate(weights):
            row = {"id": f"q{i}", "prompt": f"{10 + i}+{20 + 3 * i}=", "weight": weight}
            handle.write(json.dumps(row | ({"offset": float(i)} if i % 2 else {})) + "\n")
    return path


def expected_score(prompt_id: str, prompt: str, response: str, weights=WEIGHTS) -> float:
    i = int(prompt_id[1:])
    return weights[i] * digit_overlap(prompt, [response])[0] + (float(i) if i % 2 else 0.0)


def expected_mean_reward(prompts, replies) -> float:
    """The mean weighted score of one reply per prompt of the file ``prompts``."""
    items = load_prompts(prompts)
    scores = [expected_score(p.prompt_id, p.text, reply) for p, reply in zip(items, replies, strict=True)]
    return sum(scores) / len(scores)


def weighted_settings(workspace, prompts, run_dir):
    return settings(workspace, run_dir, f"prompts={prompts}", f"reward={WEIGHTED}", "iterations=1",
                    f"eval_prompts={prompts}", "eval_samples=2", "eval_ks=[1]", "eval_ranking_prompts=0")  # fmt: skip


@pytest.fixture(scope="module")
def weighted_run(workspace, tmp_path_factory):
    root = tmp_path_factory.mktemp("fields")
    prompts = write_weighted_prompts(root / "prompts.jsonl")
    run_dir = root / "run"
    run_larpo(load_run_config(None, weighted_settings(workspace, prompts, run_dir)))
    return prompts, run_dir


def test_run_scores_each_candidate_with_its_prompts_fields_and_keeps_them(weighted_run):
    _, run_dir = weighted_run
    records = read_records(run_dir / "candidates" / "iter_0.jsonl")
    assert {r.prompt_id for r in records} == {f"q{i}" for i in range(8)}
    for r in records:
        assert r.score == pytest.approx(expected_score(r.prompt_id, r.prompt, r.response))
        i = int(r.prompt_id[1:])
        assert r.prompt_fields == {"weight": WEIGHTS[i]} | ({"offset": float(i)} if i % 2 else {})
        assert r.original_prompt is None  # a plain-text prompt is its own original


def test_run_evaluation_scores_with_the_fields(weighted_run):
    prompts, run_dir = weighted_run
    result = json.loads((run_dir / "eval" / "iter_0.json").read_text())
    assert result["mean_reward"] == pytest.approx(expected_mean_reward(prompts, result["greedy_outputs"]))


def test_resumed_run_scores_with_the_fields_it_sampled_with(workspace, weighted_run, tmp_path):
    """Killed after sampling, then resumed after the prompts file's fields changed: the scores are those of
    the uninterrupted run, since the candidates keep the fields they were sampled with."""
    _, uninterrupted = weighted_run
    prompts = write_weighted_prompts(tmp_path / "prompts.jsonl")
    eval_prompts = tmp_path / "eval.jsonl"
    eval_prompts.write_bytes(prompts.read_bytes())
    items = weighted_settings(workspace, prompts, tmp_path / "run")
    items = [item.replace(f"eval_prompts={prompts}", f"eval_prompts={eval_prompts}") for item in items]
    killed = larpo_run(workspace, tmp_path / "run", "generate.merge#1", items)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    write_weighted_prompts(prompts, [w + 10.0 for w in WEIGHTS])
    resumed = larpo_run(workspace, tmp_path / "run", items=items)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    candidates = "candidates/iter_0.jsonl"
    assert (tmp_path / "run" / candidates).read_bytes() == (uninterrupted / candidates).read_bytes()


def test_larpo_score_scores_a_runs_candidates_as_the_run_did(weighted_run, tmp_path, monkeypatch, capsys):
    _, run_dir = weighted_run
    scored = read_records(run_dir / "candidates" / "iter_0.jsonl")
    unscored = tmp_path / "unscored.jsonl"
    unscored.write_text("".join(json.dumps(json.loads(r.to_json()) | {"score": None}) + "\n" for r in scored))
    out = tmp_path / "scored.jsonl"
    code, _, err = run_cli(
        monkeypatch, capsys, "score", "--reward", WEIGHTED, "--candidates", unscored, "--output", out
    )
    assert code == 0, err
    assert [r.score for r in read_records(out)] == [r.score for r in scored]


def test_larpo_eval_passes_the_fields(workspace, weighted_run, tmp_path, monkeypatch, capsys):
    prompts, _ = weighted_run
    code, _, err = run_cli(monkeypatch, capsys, "eval", "--model", workspace / "model", "--prompts", prompts,
                           "--reward", WEIGHTED, "--output", tmp_path / "eval", "--num-samples", 1,
                           "--max-new-tokens", 4)  # fmt: skip
    assert code == 0, err
    result = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert result["mean_reward"] == pytest.approx(expected_mean_reward(prompts, result["greedy_outputs"]))
