"""IFEval's verifiable instructions (Zhou et al. 2023): drawing them, checking their fields, grading replies.

The instruction classes and their conflict table come from ``if-verifiable`` (Apache-2.0, on PyPI;
``pip install 'larpo[instructions]'``), a maintained copy of IFEval's published checkers that needs no
download at run time. A prompt row carries IFEval's own columns: ``instruction_id_list`` (ids such as
``punctuation:no_comma``) and ``kwargs`` (one mapping of arguments per id, as the class's
``build_description`` takes them), so IFEval's own input file works as a prompts file too.

Left out of the instructions drawn: the two whose checkers need nltk's ``punkt`` data, which is not
shipped in a package (:data:`NEEDS_DOWNLOADED_DATA`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

from larpo.errors import InputError

NEEDS_DOWNLOADED_DATA = frozenset(
    {"length_constraints:number_sentences", "change_case:capital_word_frequency"}
)
"""Instructions whose checkers load nltk's ``punkt`` tokenizer data, which no package ships."""

FIELDS = ("instruction_id_list", "kwargs")
"""IFEval's columns that a prompt row carries."""


@cache
def _registry() -> tuple[dict[str, type], dict[str, set[str]]]:
    """IFEval's instruction classes by id, and its conflict table (symmetric, each id conflicting with itself)."""
    try:
        import langdetect
        from if_verifiable.ifeval import instructions_registry as registry
    except ImportError as error:
        raise InputError(
            f"the instruction-following task needs the 'instructions' extra ({error}); "
            "pip install 'larpo[instructions]'"
        ) from None
    langdetect.DetectorFactory.seed = 0  # langdetect samples; seeded, its verdicts are reproducible
    classes = {k: v for k, v in registry.INSTRUCTION_DICT.items() if k not in NEEDS_DOWNLOADED_DATA}
    conflicts = registry.conflict_make({k: set(v) for k, v in registry.INSTRUCTION_CONFLICTS.items()})
    return classes, conflicts


def instruction_ids() -> list[str]:
    """The ids of the instructions this task draws and checks, in IFEval's order."""
    return list(_registry()[0])


@contextmanager
def _seeded_global_random(seed: str):
    """IFEval's builders draw their arguments from the global ``random``: seed it, then restore it."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


@dataclass(frozen=True)
class Constraint:
    """One drawn instruction: its id, the arguments its builder chose, and the sentence that asks for it."""

    instruction_id: str
    kwargs: dict[str, Any]
    description: str


def draw_constraints(request: str, count: int, seed: str) -> list[Constraint]:
    """``count`` instructions for ``request`` that do not conflict (IFEval's table), each built by its own
    class, which chooses the arguments; the same ``seed`` draws the same ones."""
    classes, conflicts = _registry()
    chosen: list[Constraint] = []
    with _seeded_global_random(seed):
        while len(chosen) < count:
            allowed = [i for i in classes if not any(i in conflicts[c.instruction_id] for c in chosen)]
            if not allowed:
                break
            instruction_id = random.choice(allowed)
            checker = classes[instruction_id](instruction_id)
            given = (
                {"prompt_to_repeat": request}
                if "prompt_to_repeat" in checker.get_instruction_args_keys()
                else {}
            )
            description = _sentence(checker.build_description(**given))
            kwargs = {k: v for k, v in (checker.get_instruction_args() or {}).items() if v is not None}
            if _satisfiable(kwargs):
                chosen.append(Constraint(instruction_id, kwargs, description))
    return chosen


def _satisfiable(kwargs: dict[str, Any]) -> bool:
    """False for the one impossible draw of IFEval's builders: the first word of paragraph n+1 of n."""
    return kwargs.get("nth_paragraph", 0) <= kwargs.get("num_paragraphs", kwargs.get("nth_paragraph", 0))


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return text if text.endswith((".", "!", "?", ")")) else text + "."


def check_instruction_fields(instruction_id_list: Any, kwargs: Any) -> None:
    """Raise ``ValueError`` unless the fields name known instructions, one argument mapping each, with exactly
    the arguments each one's builder takes (IFEval's rows may add ``null`` for the others)."""
    classes = _registry()[0]
    if not isinstance(instruction_id_list, list) or not instruction_id_list:
        raise ValueError("'instruction_id_list' must be a non-empty list of instruction ids")
    if not isinstance(kwargs, list) or len(kwargs) != len(instruction_id_list):
        raise ValueError(
            f"'kwargs' must be a list of {len(instruction_id_list)} argument mappings, one per instruction"
        )
    for instruction_id, arguments in zip(instruction_id_list, kwargs, strict=True):
        if instruction_id not in classes:
            known = "" if instruction_id in NEEDS_DOWNLOADED_DATA else f" (known: {', '.join(classes)})"
            reason = "needs nltk data that is not installed" if not known else "unknown instruction"
            raise ValueError(f"{reason} {instruction_id!r}{known}")
        if not isinstance(arguments, dict):
            raise ValueError(f"the arguments of {instruction_id!r} must be a mapping")
        wanted = set(classes[instruction_id](instruction_id).get_instruction_args_keys())
        given = {k for k, v in arguments.items() if v is not None}
        if missing := sorted(wanted - given):
            raise ValueError(f"{instruction_id!r} is missing its argument {missing[0]!r}")
        if unknown := sorted(given - wanted):
            raise ValueError(f"{instruction_id!r} takes no argument {unknown[0]!r}")


@dataclass(frozen=True)
class Verdict:
    """Which instructions one reply follows, strictly and loosely (IFEval's two checks)."""

    strict: list[bool]
    loose: list[bool]


def verdict(
    prompt_text: str, response: str, instruction_id_list: Sequence[str], kwargs: Sequence[Mapping]
) -> Verdict:
    """IFEval's strict and loose check of every instruction on ``response``. Loose also accepts the reply
    without its first or last line or its asterisks (IFEval's published variants); an empty reply follows
    nothing."""
    from if_verifiable.common import evaluate_instructions

    results, _ = evaluate_instructions(
        response, list(instruction_id_list), [dict(k) for k in kwargs], prompt_text, _registry()[0]
    )
    if len(results) != len(instruction_id_list):  # an empty reply: no instruction was checked
        return Verdict([False] * len(instruction_id_list), [False] * len(instruction_id_list))
    return Verdict([r.strict_pass for r in results], [r.loose_pass for r in results])


def ifeval_accuracies(verdicts: Sequence[Verdict]) -> dict[str, float]:
    """IFEval's four numbers: prompt-level accuracy (every instruction followed) and instruction-level
    accuracy (followed instructions over all instructions), each strict and loose."""
    if not verdicts:
        raise ValueError("no replies to grade")
    total = sum(len(v.strict) for v in verdicts)
    return {
        "prompt_level_strict": sum(all(v.strict) for v in verdicts) / len(verdicts),
        "prompt_level_loose": sum(all(v.loose) for v in verdicts) / len(verdicts),
        "instruction_level_strict": sum(sum(v.strict) for v in verdicts) / total,
        "instruction_level_loose": sum(sum(v.loose) for v in verdicts) / total,
    }
