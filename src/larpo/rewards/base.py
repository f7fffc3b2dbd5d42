"""The reranker interface: (prompt, candidate responses) -> one real score per response."""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

from larpo.errors import InputError


class RewardError(InputError):
    """A reranker could not be loaded or returned unusable scores."""


def _check_inputs(prompts: Sequence[str], responses: Sequence[Sequence[str]]) -> None:
    if len(responses) != len(prompts):
        raise RewardError(f"got {len(prompts)} prompts but {len(responses)} response lists")


def _label(prompts: Sequence[str], i: int) -> str:
    """Prompts and responses are counted from 1 in messages, as file lines are."""
    return f"prompt {i + 1} ({prompts[i][:60]!r})"


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
    """Scores candidate responses; subclasses implement :meth:`_score`, :meth:`score` validates it."""

    def score(self, prompts: list[str], responses: list[list[str]]) -> list[list[float]]:
        """One list of scores per prompt, aligned with that prompt's responses; all finite."""
        _check_inputs(prompts, responses)
        return check_scores(prompts, responses, self._score(prompts, responses))

    @abstractmethod
    def _score(self, prompts: list[str], responses: list[list[str]]) -> Any:
        """Raw scores, checked by :func:`check_scores`."""
