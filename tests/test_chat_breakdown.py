"""benchmarks/chat_breakdown.py: the groups it splits a run's samples into."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from chat_breakdown import GROUPS, sample_groups  # noqa: E402

EXACT = "larpo.tasks.arithmetic.chat:exact_reward"


def candidate(prompt_id: str, question: str, response: str) -> dict:
    return {"prompt_id": prompt_id, "prompt": "rendered", "response": response,
            "original_prompt": [{"role": "user", "content": f"What is {question}? Reply with the number only."}]}  # fmt: skip


def test_samples_are_grouped_by_the_exact_reward_and_whether_their_prompt_was_solved():
    """12 + 30 = 42 and 20 + 5 = 25: prompt a has a correct sample, prompt b none."""
    candidates = [
        candidate("a", "12 + 30", "42"),
        candidate("a", "12 + 30", "12 + 30 = 43"),
        candidate("b", "20 + 5", "26"),
        candidate("a", "12 + 30", "It is 42."),
        candidate("b", "20 + 5", "twenty-five"),
    ]
    correct, wrong_solved, wrong_unsolved = GROUPS
    assert sample_groups(candidates, EXACT) == [
        correct,
        wrong_solved,
        wrong_unsolved,
        correct,
        wrong_unsolved,
    ]
