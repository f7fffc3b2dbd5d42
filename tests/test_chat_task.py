"""The chat-form arithmetic task: questions, the last-integer verifier and disjoint prompt files."""

import json

import pytest

from larpo.errors import InputError
from larpo.tasks.arithmetic.chat import (
    exact_reward,
    final_number,
    graded_reward,
    problem_of,
    question,
    write_prompt_files,
)


def test_question_and_problem_round_trip_through_messages_and_rendered_text():
    asked = question("41+93=")
    assert asked == "What is 41 + 93? Reply with the number only."
    assert (
        problem_of([{"role": "system", "content": "Be brief."}, {"role": "user", "content": asked}])
        == "41+93="
    )
    rendered = f"<|im_start|>user\n{asked}<|im_end|>\n<|im_start|>assistant\n"
    assert problem_of(rendered) == "41+93="


def test_problem_of_a_prompt_without_a_question_is_an_input_error():
    with pytest.raises(InputError, match="no 'What is A \\+ B\\?' question"):
        problem_of("Tell me a story.")


@pytest.mark.parametrize(
    ("reply", "number"),
    [
        ("41 + 93 = 134", "134"),
        ("134.", "134"),
        ("The answer is 1,340", "1340"),
        ("-7", "-7"),
        ("none", None),
    ],
)
def test_final_number_is_the_last_integer(reply, number):
    assert final_number(reply) == number


def test_exact_reward_checks_the_last_number_only():
    prompt = [{"role": "user", "content": question("41+93=")}]
    assert exact_reward(prompt, ["41 + 93 = 134", "134", "41 + 93 = 133", "I think 134 or 135", ""]) == [
        1.0, 1.0, 0.0, 0.0, 0.0,
    ]  # fmt: skip


def test_graded_reward_uses_the_demo_grading_on_the_last_number():
    prompt = [{"role": "user", "content": question("37+85=")}]
    # 121 against 122: (2/3 + 1/(1 + log10 2)) / 2 = 0.7176 (the demo reward's docstring value)
    scores = graded_reward(prompt, ["37 + 85 = 122", "= 121", "no idea"])
    assert scores[0] == 1.0 and scores[1] == pytest.approx(0.7176, abs=1e-4) and scores[2] == 0.0


def test_prompt_files_are_disjoint_chat_prompts(tmp_path):
    paths = write_prompt_files(tmp_path, {"train": 30, "validation": 10, "test": 10}, seed=3)
    rows = {split: [json.loads(line) for line in open(path)] for split, path in paths.items()}
    assert {split: len(r) for split, r in rows.items()} == {"train": 30, "validation": 10, "test": 10}
    problems = {split: {problem_of(r["prompt"]) for r in split_rows} for split, split_rows in rows.items()}
    assert sum(len(p) for p in problems.values()) == 50  # distinct within and across splits
    first = rows["train"][0]["prompt"]
    assert first[0]["role"] == "user" and len(first) == 1 and first[0]["content"].startswith("What is ")
