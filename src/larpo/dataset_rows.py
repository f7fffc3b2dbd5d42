"""Rows of the list formats (``lists``, ``ranked``, ``pairs``, ``rated``): each read into a prompt and its
``(response, score)`` candidates, with the checks of their fields (:mod:`larpo.dataset_formats` reads files)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from larpo.errors import InputError

Prompt = str | list[dict[str, str]]
Candidate = tuple[str, float | None]  # (response, score); None: the rating is missing
MISSING_RATINGS = (None, "", "N/A")
"""Rating values that mean "not rated": the completion is left out (and counted)."""


def lists_row(row: dict[str, Any], where: str, rating: str = "") -> tuple[Prompt, list[Candidate]]:
    responses = string_list(row.get("responses"), where, "responses")
    scores = row.get("scores")
    if scores is None:
        return ranked_row(row, where)
    if not isinstance(scores, list) or len(scores) != len(responses):
        raise InputError(f"{where}: 'scores' must be a list with one number per response")
    if not all(isinstance(s, int | float) and not isinstance(s, bool) for s in scores):
        raise InputError(f"{where}: 'scores' must hold numbers")
    if not all(math.isfinite(s) for s in scores):
        raise InputError(f"{where}: 'scores' must be finite")
    return row_prompt(row, where), list(zip(responses, map(float, scores), strict=True))


def ranked_row(row: dict[str, Any], where: str, rating: str = "") -> tuple[Prompt, list[Candidate]]:
    responses = string_list(row.get("responses"), where, "responses")
    ranks = [float(len(responses) - 1 - i) for i in range(len(responses))]
    return row_prompt(row, where), list(zip(responses, ranks, strict=True))


def pair_row(row: dict[str, Any], where: str, rating: str = "") -> tuple[Prompt, list[Candidate]]:
    chosen, rejected = row.get("chosen"), row.get("rejected")
    if row.get("prompt") is not None:
        prompt = row_prompt(row, where)
    else:  # implicit prompt: the messages both conversations share, leaving each one reply
        for name, value in (("chosen", chosen), ("rejected", rejected)):
            if not isinstance(value, list) or len(value) < 2:
                raise InputError(
                    f"{where}: without a 'prompt', '{name}' must be a whole conversation "
                    "(a list of at least 2 messages)"
                )
            check_messages(value, where, name)
        shared = 0
        while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
            shared += 1
        if shared == 0:
            raise InputError(
                f"{where}: 'chosen' and 'rejected' share no opening message to take as the prompt"
            )
        prompt, chosen, rejected = chosen[:shared], chosen[shared:], rejected[shared:]
    return prompt, [
        (response_text(chosen, where, "chosen"), 1.0),
        (response_text(rejected, where, "rejected"), 0.0),
    ]


def rated_row(row: dict[str, Any], where: str, rating: str = "rating") -> tuple[Prompt, list[Candidate]]:
    completions = row.get("completions")
    if not isinstance(completions, list) or not all(isinstance(c, dict) for c in completions):
        raise InputError(f"{where}: 'completions' must be a list of objects")
    candidates = []
    for number, completion in enumerate(completions, start=1):
        here = f"{where}: completion {number}"
        if "response" not in completion:
            raise InputError(f"{here}: no 'response' field (fields: {', '.join(completion) or 'none'})")
        candidates.append(
            (response_text(completion["response"], here, "response"), rating_of(completion, rating, here))
        )
    return row_prompt(row, where, "instruction"), candidates


ROW_READERS: dict[str, Callable[..., tuple[Prompt, list[Candidate]]]] = {
    "lists": lists_row, "ranked": ranked_row, "pairs": pair_row, "rated": rated_row,
}  # fmt: skip


# ---------------------------------------------------------------- fields
def row_prompt(row: dict[str, Any], where: str, alias: str | None = None) -> Prompt:
    prompt = row.get("prompt", row.get(alias) if alias else None)
    if isinstance(prompt, list):
        return check_messages(prompt, where, "prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError(f"{where}: 'prompt' must be a non-empty string or a list of messages")
    return prompt


def check_messages(messages: list, where: str, name: str) -> list[dict[str, str]]:
    if not messages or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in messages
    ):
        raise InputError(
            f"{where}: '{name}' must be a list of {{'role', 'content'}} messages with string content"
        )
    return messages


def response_text(value: Any, where: str, name: str) -> str:
    """A response's text: a string, or a list holding one assistant message."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        check_messages(value, where, name)
        if len(value) == 1 and value[0]["role"] == "assistant":
            return value[0]["content"]
    raise InputError(f"{where}: '{name}' must be a string or one assistant message")


def string_list(value: Any, where: str, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{where}: '{name}' must be a list of strings")
    return value


def rating_of(completion: dict[str, Any], field: str, where: str) -> float | None:
    """The completion's rating at the dotted path ``field``; None when it is missing."""
    value: Any = completion
    for key in field.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    if value in MISSING_RATINGS:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InputError(f"{where}: rating {field!r} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{where}: rating {field!r} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise InputError(f"{where}: rating {field!r} must be finite, got {value!r}")
    return float(value)
