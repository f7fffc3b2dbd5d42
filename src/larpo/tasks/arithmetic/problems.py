"""Arithmetic problems written as ``37+85=`` whose completion is the decimal answer."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from larpo.errors import InputError

_PROMPT = re.compile(r"(\d+)([+\-*])(\d+)=")


@dataclass(frozen=True)
class _Shape:
    """One operator with inclusive operand ranges."""

    op: str
    left: tuple[int, int]
    right: tuple[int, int]

    @property
    def size(self) -> int:
        """How many distinct prompts this shape can produce."""
        return (self.left[1] - self.left[0] + 1) * (self.right[1] - self.right[0] + 1)

    def sample(self, rng: random.Random) -> str:
        return f"{rng.randint(*self.left)}{self.op}{rng.randint(*self.right)}="


_THREE_DIGITS = (100, 999)
KINDS: dict[str, tuple[_Shape, ...]] = {
    "add": (_Shape("+", _THREE_DIGITS, _THREE_DIGITS),),
    "sub": (_Shape("-", _THREE_DIGITS, _THREE_DIGITS),),
    "mul": (_Shape("*", _THREE_DIGITS, (2, 9)),),
    "mixed": (
        _Shape("+", _THREE_DIGITS, _THREE_DIGITS),
        _Shape("-", _THREE_DIGITS, _THREE_DIGITS),
        _Shape("*", _THREE_DIGITS, (2, 9)),
    ),
}
"""Problem kinds: 3-digit ``+`` and ``-`` (answers may be negative), 3-digit times 1-digit ``*``
(the multiplier is 2-9), and ``mixed``, each operator equally likely."""

DEFAULT_KIND = "add"


def answer(prompt: str) -> str:
    """The exact decimal answer of a prompt such as ``37+85=`` (``-`` answers may be negative)."""
    match = _PROMPT.fullmatch(prompt)
    if match is None:
        raise InputError(f"{prompt!r} is not an arithmetic prompt like '37+85='")
    left, op, right = int(match[1]), match[2], int(match[3])
    if op == "+":
        return str(left + right)
    if op == "-":
        return str(left - right)
    return str(left * right)


def make_problems(n: int, seed: int, *, kind: str = DEFAULT_KIND) -> list[str]:
    """``n`` distinct prompts of ``kind`` (see :data:`KINDS`), drawn in a fixed order from ``seed``."""
    if kind not in KINDS:
        raise InputError(f"unknown arithmetic kind {kind!r}; choose from {sorted(KINDS)}")
    shapes = KINDS[kind]
    capacity = sum(shape.size for shape in shapes)
    if not 0 <= n <= capacity:
        raise InputError(f"kind {kind!r} has {capacity} distinct problems; cannot draw {n}")
    rng = random.Random(seed)
    prompts: dict[str, None] = {}
    while len(prompts) < n:
        prompts.setdefault(rng.choice(shapes).sample(rng))
    return list(prompts)


def train_and_heldout_splits(
    n_train: int, n_heldout: int, seed: int, *, kind: str = DEFAULT_KIND
) -> tuple[list[str], list[str]]:
    """Disjoint train and held-out prompts: one seeded draw of distinct problems, cut in two."""
    problems = make_problems(n_train + n_heldout, seed, kind=kind)
    return problems[:n_train], problems[n_train:]
