"""The instruction-following task: IFEval's checkers on hand-written replies, its rewards and their field
checks, the splits, and IFEval's four accuracies in evaluations."""

import json

import pytest

pytest.importorskip("if_verifiable")

from larpo.evaluation import EvalSettings, evaluate_policy  # noqa: E402
from larpo.generation import Generations, Generator  # noqa: E402
from larpo.rewards import CallableReranker, RewardError  # noqa: E402
from larpo.tasks.instructions import (  # noqa: E402
    exact_reward,
    graded_reward,
    instruction_following,
    instruction_ids,
    user_text,
)
from larpo.tasks.instructions.checkers import (  # noqa: E402
    NEEDS_DOWNLOADED_DATA,
    Verdict,
    check_instruction_fields,
    draw_constraints,
    ifeval_accuracies,
    verdict,
)
from larpo.tasks.instructions.requests import KINDS  # noqa: E402
from larpo.tasks.instructions.splits import SplitSettings, main, split_requests, write_splits  # noqa: E402

END = "Is there anything else I can help with?"
PROMPT = [{"role": "user", "content": "Describe a beach. Do not use any commas."}]


@pytest.mark.parametrize(
    ("instruction", "kwargs", "reply", "strict"),
    [
        ("punctuation:no_comma", {}, "The sand is warm and the sea is calm.", True),
        ("punctuation:no_comma", {}, "The sand is warm, and the sea is calm.", False),
        ("startend:end_checker", {"end_phrase": END}, f"Sunny all day. {END}", True),
        ("startend:end_checker", {"end_phrase": END}, f"{END} Sunny all day.", False),
        ("change_case:english_lowercase", {}, "the waves roll in slowly over the soft white sand.", True),
        ("change_case:english_lowercase", {}, "The waves roll in slowly over the soft white sand.", False),
        ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* sand\n* sea", True),
        ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* sand\n* sea\n* sun", False),
        ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Lovely.\nP.S. Bring a hat.", True),
        ("detectable_format:title", {}, "<<A Day at the Beach>>\nWarm sand.", True),
        ("keywords:existence", {"keywords": ["shell", "tide"]}, "A shell left by the tide.", True),
        ("keywords:existence", {"keywords": ["shell", "tide"]}, "A shell on the sand.", False),
        (
            "length_constraints:number_words",
            {"num_words": 5, "relation": "less than"},
            "Warm sand here.",
            True,
        ),
    ],
)
def test_ifevals_checkers_on_hand_written_replies(instruction, kwargs, reply, strict):
    assert verdict("Describe a beach.", reply, [instruction], [kwargs]).strict == [strict]


def test_loose_accepts_a_reply_without_its_first_line_as_ifeval_does():
    reply = 'Sure! Here it is:\n{"place": "beach"}'
    result = verdict("Describe a beach.", reply, ["detectable_format:json_format"], [{}])
    assert (result.strict, result.loose) == ([False], [True])


def test_rewards_grade_the_fraction_followed_and_exact_needs_all():
    ids = ["punctuation:no_comma", "startend:end_checker", "change_case:english_lowercase"]
    kwargs = [{}, {"end_phrase": END}, {}]
    replies = [f"warm sand and calm sea. {END.lower()}", f"Warm sand and calm sea. {END}", "Warm, sunny."]
    assert graded_reward(PROMPT, replies, ids, kwargs) == pytest.approx([1.0, 2 / 3, 0.0])
    assert exact_reward(PROMPT, replies, ids, kwargs) == [1.0, 0.0, 0.0]


def test_the_reward_reads_the_prompt_from_its_last_user_message():
    messages = [{"role": "system", "content": "Be brief."}, *PROMPT, {"role": "assistant", "content": "ok"}]
    assert user_text(messages) == PROMPT[0]["content"]
    repeat = {"prompt_to_repeat": "Describe a beach."}
    reply = "Describe a beach. It is warm."
    assert exact_reward(messages, [reply], ["combination:repeat_prompt"], [repeat]) == [1.0]


@pytest.mark.parametrize(
    ("ids", "kwargs", "message"),
    [
        (["punctuation:no_coma"], [{}], "unknown instruction 'punctuation:no_coma'"),
        (["startend:end_checker"], [{}], "'startend:end_checker' is missing its argument 'end_phrase'"),
        (
            ["punctuation:no_comma"],
            [{"end_phrase": "x"}],
            "'punctuation:no_comma' takes no argument 'end_phrase'",
        ),
        (
            ["length_constraints:number_sentences"],
            [{"num_sentences": 2, "relation": "at least"}],
            "needs nltk data",
        ),
        (["punctuation:no_comma"], [], "'kwargs' must be a list of 1 argument mappings"),
        ("punctuation:no_comma", [{}], "'instruction_id_list' must be a non-empty list"),
    ],
)
def test_bad_instruction_fields_are_refused_with_the_reason(ids, kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_instruction_fields(ids, kwargs)
    reranker = CallableReranker(graded_reward)
    with pytest.raises(
        RewardError, match=f"prompts.jsonl: prompt 'p1' cannot be scored by graded_reward: .*{message}"
    ):
        reranker.check_fields([("p1", {"instruction_id_list": ids, "kwargs": kwargs})], "prompts.jsonl: ")


def test_ifevals_null_arguments_are_accepted():
    """IFEval's own rows list every argument of the table, null where unused."""
    check_instruction_fields(["punctuation:no_comma"], [{"end_phrase": None}])


def test_drawn_constraints_do_not_conflict_and_repeat_with_the_seed():
    ids = set(instruction_ids())
    assert not ids & NEEDS_DOWNLOADED_DATA and len(ids) == 23
    first = draw_constraints("Describe a beach.", 3, "seed-a")
    assert first == draw_constraints("Describe a beach.", 3, "seed-a")
    assert first != draw_constraints("Describe a beach.", 3, "seed-b")
    check_instruction_fields([c.instruction_id for c in first], [c.kwargs for c in first])
    assert len({c.instruction_id for c in first}) == len(first)


def test_splits_are_disjoint_by_request_and_cover_every_kind(tmp_path):
    splits = split_requests(
        {"a": tuple(f"a{i}" for i in range(20)), "b": tuple(f"b{i}" for i in range(10))}, SplitSettings()
    )
    requests = {name: {r for _, r in pairs} for name, pairs in splits.items()}
    assert sum(len(r) for r in requests.values()) == 30 == len(set().union(*requests.values()))
    assert all({kind for kind, _ in pairs} == {"a", "b"} for pairs in splits.values())
    assert (len(requests["test"]), len(requests["validation"])) == (4 + 2, 3 + 2)  # 20% and 15%, rounded


def test_written_rows_carry_ifevals_fields_and_the_instructions_text(tmp_path, capsys):
    main(["--output", str(tmp_path), "--draws", "2", "1", "1"])
    assert "train: " in capsys.readouterr().out
    rows = {
        split: [json.loads(line) for line in (tmp_path / f"{split}.jsonl").open()]
        for split in ("train", "test")
    }
    splits = split_requests(KINDS, SplitSettings())
    assert (len(rows["train"]), len(rows["test"])) == (2 * len(splits["train"]), len(splits["test"]))
    for row in rows["train"] + rows["test"]:
        assert 1 <= len(row["instruction_id_list"]) <= 3
        check_instruction_fields(row["instruction_id_list"], row["kwargs"])
        assert row["prompt"][0]["role"] == "user" and row["prompt"][0]["content"].endswith(
            (".", "?", "!", ")")
        )
    requests = [{r["prompt"][0]["content"].split(". ")[0] for r in rows[s]} for s in ("train", "test")]
    assert not requests[0] & requests[1]
    again = tmp_path / "again"
    write_splits(again, SplitSettings(draws=(2, 1, 1)))
    assert (again / "test.jsonl").read_bytes() == (tmp_path / "test.jsonl").read_bytes()


def test_ifevals_accuracies_count_prompts_and_instructions():
    verdicts = [Verdict([True, True], [True, True]), Verdict([True, False, False], [True, True, False]),
                Verdict([False], [True])]  # fmt: skip
    assert ifeval_accuracies(verdicts) == pytest.approx({
        "prompt_level_strict": 1 / 3, "prompt_level_loose": 2 / 3,
        "instruction_level_strict": 3 / 6, "instruction_level_loose": 5 / 6,
    })  # fmt: skip


class FixedReplies(Generator):
    """Answers every prompt with its fixed reply, greedy or sampled."""

    def __init__(self, replies: dict[str, str]) -> None:
        self.replies = replies

    def generate(self, prompts, params):
        rows = [[self.replies[p]] for p in prompts]
        return Generations(rows, [[True] for _ in rows], 0, [[params.num_samples] for _ in rows])


def test_evaluation_reports_ifevals_four_accuracies_of_the_greedy_replies():
    rows = [
        {
            "instruction_id_list": ["punctuation:no_comma", "startend:end_checker"],
            "kwargs": [{}, {"end_phrase": END}],
        },
        {"instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}]},
    ]
    prompts = [[{"role": "user", "content": f"Request {i}."}] for i in range(2)]
    generator = FixedReplies({"t0": f"Calm sea. {END}", "t1": "Calm sea, warm sand."})
    settings = EvalSettings(num_samples=1, ks=[1], max_new_tokens=8)
    result = evaluate_policy(generator, CallableReranker(exact_reward), ["t0", "t1"], settings,
                             reward_prompts=prompts, reward_fields=rows)  # fmt: skip
    assert result["greedy_accuracy"] == 0.5
    expected = instruction_following(prompts, rows, [f"Calm sea. {END}", "Calm sea, warm sand."])
    assert result["instruction_following"] == expected == {
        "prompt_level_strict": 0.5, "prompt_level_loose": 0.5,
        "instruction_level_strict": 2 / 3, "instruction_level_loose": 2 / 3,
    }  # fmt: skip
