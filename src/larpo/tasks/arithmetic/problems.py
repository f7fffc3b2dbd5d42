"""Arithmetic problems written as ``37+85=`` whose completion is the decimal answer."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from larpo.errors import InputError

_PROMPT = re.compile(r"(\d+)([+\-*])(\d+)=")


@dataclass(frozen=True)
class _Shape:
    """One operator with inclusive operand ranges; its problems are numbered ``0 .. size - 1``."""

    op: str
    left: tuple[int, int]
    right: tuple[int, int]

    @property
    def size(self) -> int:
        """How many distinct prompts this shape has."""
        return (self.left[1] - self.left[0] + 1) * self._right_count

    @property
    def _right_count(self) -> int:
        return self.right[1] - self.right[0] + 1

    def prompt(self, index: int) -> str:
        """Problem number ``index``."""
        left, right = divmod(index, self._right_count)
        return f"{self.left[0] + left}{self.op}{self.right[0] + right}="


_TWO_DIGITS, _THREE_DIGITS = (10, 99), (100, 999)
_ADD = _Shape("+", _TWO_DIGITS, _TWO_DIGITS)
_SUB = _Shape("-", _TWO_DIGITS, _TWO_DIGITS)
_MUL = _Shape("*", _THREE_DIGITS, (2, 9))
KINDS: dict[str, tuple[_Shape, ...]] = {
    "add": (_ADD,),
    "sub": (_SUB,),
    "mul": (_MUL,),
    "addsub": (_ADD, _SUB),
    "mixed": (_ADD, _SUB, _MUL),
}
"""Problem kinds: 2-digit ``+``, 2-digit ``-`` (answers may be negative), 3-digit times 1-digit ``*``
(multiplier 2-9), ``addsub``: ``+`` and ``-`` in equal shares, and ``mixed``: all three in equal shares."""

DEFAULT_KIND = "mixed"


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


def make_problems(
    n: int, seed: int, *, kind: str = DEFAULT_KIND, exclude: frozenset[str] = frozenset()
) -> list[str]:
    """``n`` distinct prompts of ``kind`` (see :data:`KINDS`) in a seeded random order, none in ``exclude``.

    Each operator of the kind gets an equal share of ``n`` (the first ones one more when it does not
    divide), drawn without replacement from all its problems that are not in ``exclude``.
    """
    if kind not in KINDS:
        raise InputError(f"unknown arithmetic kind {kind!r}; choose from {sorted(KINDS)}")
    shapes = KINDS[kind]
    counts = [n // len(shapes) + (i < n % len(shapes)) for i in range(len(shapes))]
    pools = [[i for i in range(shape.size) if shape.prompt(i) not in exclude] for shape in shapes]
    if n < 0 or any(count > len(pool) for count, pool in zip(counts, pools, strict=True)):
        sizes = ", ".join(f"{shape.op} {len(pool)}" for shape, pool in zip(shapes, pools, strict=True))
        raise InputError(f"cannot draw {n} problems of kind {kind!r} in equal shares (per operator: {sizes})")
    rng = random.Random(seed)
    prompts = [
        shape.prompt(index)
        for count, shape, pool in zip(counts, shapes, pools, strict=True)
        for index in rng.sample(pool, count)
    ]
    rng.shuffle(prompts)
    return prompts


def train_and_heldout_splits(
    n_train: int, n_heldout: int, seed: int, *, kind: str = DEFAULT_KIND
) -> tuple[list[str], list[str]]:
    """Disjoint train and held-out prompts: one seeded draw of distinct problems, cut in two."""
    problems = make_problems(n_train + n_heldout, seed, kind=kind)
    return problems[:n_train], problems[n_train:]


def validation_split(n: int, seed: int, used: list[str], *, kind: str = DEFAULT_KIND) -> list[str]:
    """``n`` problems for choosing settings, disjoint from ``used`` (the train, test and SFT-stopping
    problems): a seeded draw from the problems not in ``used``, so adding it changes none of them."""
    return make_problems(n, seed, kind=kind, exclude=frozenset(used))


def flawed_answer(prompt: str) -> str:
    """The answer a demonstrator with a classic column-arithmetic bug writes.

    ``+`` and ``*``: each column's result is written without carrying (the leading column in full),
    e.g. ``85+37=`` -> ``112`` (not 122) and ``123*7=`` -> ``741`` (not 861). ``-``: in each column the
    smaller digit is taken from the larger ("smaller-from-larger"), e.g. ``52-37=`` -> ``25`` (not 15);
    a negative result keeps its sign, ``37-85=`` -> ``-52``. Problems that need no carry or borrow come
    out right.
    """
    answer(prompt)  # validates the prompt
    match = _PROMPT.fullmatch(prompt)
    left, op, right = match[1], match[2], match[3]
    if op == "-":
        sign = "-" if int(left) < int(right) else ""
        big, small = (right, left) if sign else (left, right)
        small = small.rjust(len(big), "0")
        digits = "".join(str(abs(int(a) - int(b))) for a, b in zip(big, small, strict=True))
        return sign + (digits.lstrip("0") or "0")
    if op == "+":
        width = max(len(left), len(right))
        columns = [
            int(a) + int(b) for a, b in zip(left.rjust(width, "0"), right.rjust(width, "0"), strict=True)
        ]
    else:
        columns = [int(a) * int(right) for a in left]
    return str(columns[0]) + "".join(str(c % 10) for c in columns[1:])


def demonstrations(prompts: list[str], error_rate: float, seed: int) -> list[str]:
    """One SFT target per prompt: :func:`flawed_answer` with probability ``error_rate``, else the answer.

    Models imperfect human demonstrations: a systematic bug the verifier reward knows to be wrong, so
    supervised imitation learns it and alignment has something real to fix. ``error_rate`` 0 gives
    clean targets.
    """
    if not 0.0 <= error_rate <= 1.0:
        raise InputError(f"error_rate must be in [0, 1], got {error_rate}")
    rng = random.Random(seed)
    return [flawed_answer(p) if rng.random() < error_rate else answer(p) for p in prompts]
