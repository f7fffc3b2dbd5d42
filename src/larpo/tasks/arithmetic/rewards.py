"""Rule-based rewards for arithmetic, usable from a config as ``larpo.tasks.arithmetic:NAME``."""

from __future__ import annotations

import math
import re

from larpo.tasks.arithmetic.problems import answer

_INTEGER = re.compile(r"-?\d+")


def exact_match(prompt: str, responses: list[str]) -> list[float]:
    """1.0 for a response that is exactly the answer (surrounding whitespace ignored), else 0.0."""
    target = answer(prompt)
    return [float(response.strip() == target) for response in responses]


def graded_reward(prompt: str, responses: list[str]) -> list[float]:
    """A reward that also ranks wrong answers, so every candidate list gets a full order.

    With ``t`` the answer and ``r = response.strip()``:

    * ``r == t``: 1.0;
    * ``r`` an integer (``-?[0-9]+``) other than ``t``: ``(digits + closeness) / 2`` in (0, 1), where
      ``digits`` is the fraction of the ``max(len(r), len(t))`` character positions, aligned from the
      right, in which ``r`` and ``t`` agree, and ``closeness = 1 / (1 + log10(1 + |int(r) - int(t)|))``;
    * anything else: 0.0.

    For ``37+85=`` (answer 122): ``121`` scores (2/3 + 1/(1 + log10 2)) / 2 = 0.7176, ``112`` scores
    (2/3 + 1/(1 + log10 11)) / 2 = 0.5783, ``22`` scores (2/3 + 1/(1 + log10 101)) / 2 = 0.4998
    and ``-122`` scores (3/4 + 1/(1 + log10 245)) / 2 = 0.5225.
    """
    target = answer(prompt)
    return [grade(response.strip(), target) for response in responses]


def grade(response: str, target: str) -> float:
    """:func:`graded_reward`'s score of one stripped ``response`` against the answer ``target``."""
    if response == target:
        return 1.0
    if _INTEGER.fullmatch(response) is None:
        return 0.0
    width = max(len(response), len(target))
    digits = sum(a == b for a, b in zip(response.rjust(width), target.rjust(width), strict=True)) / width
    closeness = 1.0 / (1.0 + math.log10(1 + abs(int(response) - int(target))))
    return (digits + closeness) / 2
