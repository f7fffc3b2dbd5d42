"""The reranker interface: (prompt, candidate responses[, the prompt row's fields]) -> one real score per
response."""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from larpo.errors import InputError


class RewardError(InputError):
    """A reranker could not be loaded or returned unusable scores."""


Fields = Sequence[Mapping[str, Any]]
"""One mapping per prompt: the prompt row's other fields (:attr:`larpo.prompts.Prompt.fields`)."""


def _check_inputs(
    prompts: Sequence[Any], responses: Sequence[Sequence[str]], fields: Fields | None = None
) -> None:
    if len(responses) != len(prompts):
        raise RewardError(f"got {len(prompts)} prompts but {len(responses)} response lists")
    if fields is not None and len(fields) != len(prompts):
        raise RewardError(f"got {len(prompts)} prompts but {len(fields)} field rows")


def prompt_excerpt(prompt: Any) -> str:
    """The first 60 characters of a prompt, quoted; of a message list, those of its last message."""
    text = prompt[-1].get("content", "") if isinstance(prompt, list) and prompt else prompt
    return repr(str(text)[:60])


def _label(prompts: Sequence[Any], i: int) -> str:
    """Prompts and responses are counted from 1 in messages, as file lines are."""
    return f"prompt {i + 1} ({prompt_excerpt(prompts[i])})"


def check_scores(
    prompts: Sequence[str], responses: Sequence[Sequence[str]], scores: Any
) -> list[list[float]]:
    """Validate reranker output against its input and return it as plain floats.

    Every prompt needs exactly one score per response, and every score must be a finite real number
    (``bool``, ``str`` and ``None`` are rejected). Errors name the offending prompt.
    """
    _check_inputs(prompts, responses)
    scores = _as_list(scores, "reranker output")
    if len(scores) != len(prompts):
        raise RewardError(f"reranker returned {len(scores)} score lists for {len(prompts)} prompts")
    checked = []
    for i, row in enumerate(scores):
        row = _as_list(row, f"scores of {_label(prompts, i)}")
        if len(row) != len(responses[i]):
            raise RewardError(f"{_label(prompts, i)}: expected {len(responses[i])} scores, got {len(row)}")
        for j, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise RewardError(
                    f"{_label(prompts, i)}, response {j + 1}: score must be a real number, got {type(value).__name__}"
                )
            if not math.isfinite(value):
                raise RewardError(f"{_label(prompts, i)}, response {j + 1}: non-finite score {value!r}")
        checked.append([float(value) for value in row])
    return checked


def _as_list(value: Any, what: str) -> list[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise RewardError(f"{what} must be a list, got {type(value).__name__}")
    return list(value)


class Reranker(ABC):
    """Scores candidate responses; subclasses implement :meth:`_score`, :meth:`score` validates it.

    A reranker that reads each prompt row's fields (a reference answer, a constraint's arguments)
    overrides :meth:`_score_with_fields` and :meth:`check_fields`; the others never see them.
    """

    def score(
        self, prompts: list[Any], responses: list[list[str]], fields: Fields | None = None
    ) -> list[list[float]]:
        """One list of scores per prompt, aligned with that prompt's responses; all finite. ``fields``:
        one mapping per prompt (the row's other fields), for rerankers that read them."""
        _check_inputs(prompts, responses, fields)
        return check_scores(prompts, responses, self._score_with_fields(prompts, responses, fields))

    def check_fields(self, rows: Sequence[tuple[str, Mapping[str, Any]]], where: str = "") -> None:
        """Raise :class:`RewardError` (prefixed with ``where``) when a prompt's fields, given as
        ``(prompt id, fields)`` pairs, cannot be passed to this reranker. Default: it reads none."""
        del rows, where

    def _score_with_fields(
        self, prompts: list[Any], responses: list[list[str]], fields: Fields | None
    ) -> Any:
        """Raw scores given the fields; by default the fields are not read."""
        return self._score(prompts, responses)

    @abstractmethod
    def _score(self, prompts: list[Any], responses: list[list[str]]) -> Any:
        """Raw scores, checked by :func:`check_scores`."""
