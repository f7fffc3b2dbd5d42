"""Instruction following graded by IFEval's checkers: larpo's alignment task for chat models.

Each prompt is an everyday request (:mod:`~larpo.tasks.instructions.requests`) followed by 1-3 verifiable
instructions drawn with IFEval's own instruction classes (``Do not use any commas.``, ``Finish your response
with this exact phrase Is there anything else I can help with?.``, ...). The rows carry IFEval's columns
``instruction_id_list`` and ``kwargs`` as fields, which the rewards declare and so receive:

- ``larpo.tasks.instructions:graded_reward``: the fraction of the instructions followed (strict), for
  training: a reply that follows 2 of 3 ranks above one that follows 1;
- ``larpo.tasks.instructions:exact_reward``: 1.0 when every instruction is followed (strict), for accuracy.

``larpo eval`` and a run's evaluations add IFEval's four accuracies on any prompts file with these columns.

    python -m larpo.tasks.instructions --output runs/instructions   # train / validation / test
"""

from __future__ import annotations

from typing import Any

from larpo.tasks.instructions.checkers import (
    FIELDS,
    check_instruction_fields,
    ifeval_accuracies,
    instruction_ids,
    verdict,
)


def user_text(prompt: str | list[dict[str, Any]]) -> str:
    """The request as the user wrote it: the prompt string, or the last user message of a message list."""
    if isinstance(prompt, str):
        return prompt
    users = [m.get("content", "") for m in prompt if m.get("role") == "user"]
    return users[-1] if users else ""


def graded_reward(
    prompt, responses: list[str], instruction_id_list: list[str], kwargs: list[dict]
) -> list[float]:
    """The fraction of the prompt's instructions each response follows (IFEval's strict check)."""
    text = user_text(prompt)
    return [_fraction(verdict(text, r, instruction_id_list, kwargs).strict) for r in responses]


def exact_reward(
    prompt, responses: list[str], instruction_id_list: list[str], kwargs: list[dict]
) -> list[float]:
    """1.0 when a response follows every instruction of the prompt (IFEval's strict check), else 0.0."""
    text = user_text(prompt)
    return [float(all(verdict(text, r, instruction_id_list, kwargs).strict)) for r in responses]


def _fraction(flags: list[bool]) -> float:
    return sum(flags) / len(flags)


graded_reward.check_fields = check_instruction_fields
exact_reward.check_fields = check_instruction_fields


def has_instruction_fields(rows: list[dict[str, Any]]) -> bool:
    """Whether every prompt row carries IFEval's columns (then evaluations report IFEval's accuracies)."""
    return bool(rows) and all(all(name in row for name in FIELDS) for row in rows)


def instruction_following(
    prompts: list, fields: list[dict[str, Any]], replies: list[str]
) -> dict[str, float]:
    """IFEval's four accuracies of ``replies`` (one per prompt, as the file holds the prompts, with their
    rows' fields): prompt- and instruction-level, strict and loose."""
    verdicts = [
        verdict(user_text(p), reply, row["instruction_id_list"], row["kwargs"])
        for p, row, reply in zip(prompts, fields, replies, strict=True)
    ]
    return ifeval_accuracies(verdicts)


__all__ = [
    "exact_reward",
    "graded_reward",
    "has_instruction_fields",
    "instruction_following",
    "instruction_ids",
    "user_text",
]
