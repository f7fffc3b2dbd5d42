"""The arithmetic task in chat form, for pretrained instruction-tuned models.

A problem such as ``41+93=`` becomes one user message, ``What is 41 + 93? Reply with the number only.``,
and the verifier reads the *last* integer of the reply, so ``41 + 93 = 134`` and ``134.`` both count as
the answer 134. Prompt files hold TRL's conversational format (``"prompt": [{"role": "user", ...}]``);
the policy's chat template turns them into the text the model sees. Rewards are named in configs as
``larpo.tasks.arithmetic.chat:exact_reward`` or ``larpo.tasks.arithmetic.chat:graded_reward``.

    python -m larpo.tasks.arithmetic.chat --output runs/chat_prompts --kind add
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from larpo.errors import InputError
from larpo.tasks.arithmetic.problems import answer, make_problems
from larpo.tasks.arithmetic.rewards import grade

_QUESTION = re.compile(r"What is (-?\d+) ([+\-*]) (-?\d+)\?")
_INTEGER = re.compile(r"-?\d+")
_SPLITS = ("train", "validation", "test")


def question(problem: str) -> str:
    """``41+93=`` -> ``What is 41 + 93? Reply with the number only.``"""
    answer(problem)  # validates it
    left, op, right = re.fullmatch(r"(\d+)([+\-*])(\d+)=", problem).groups()
    return f"What is {left} {op} {right}? Reply with the number only."


def problem_of(prompt: str | list[dict[str, Any]]) -> str:
    """The ``41+93=`` problem a chat prompt asks, from its text or its messages (the last question wins)."""
    text = prompt if isinstance(prompt, str) else "\n".join(str(m.get("content", "")) for m in prompt)
    found = _QUESTION.findall(text)
    if not found:
        raise InputError(f"no 'What is A + B?' question in prompt {text[:80]!r}")
    left, op, right = found[-1]
    return f"{left}{op}{right}="


def final_number(response: str) -> str | None:
    """The last integer in a reply (``41 + 93 = 134.`` -> ``134``), or None when it has none."""
    numbers = _INTEGER.findall(response.replace(",", ""))
    return numbers[-1] if numbers else None


def exact_reward(prompt: str | list[dict[str, Any]], responses: list[str]) -> list[float]:
    """1.0 when the reply's last integer is the answer, else 0.0."""
    target = answer(problem_of(prompt))
    return [float(final_number(response) == target) for response in responses]


def graded_reward(prompt: str | list[dict[str, Any]], responses: list[str]) -> list[float]:
    """The demo's graded reward (:func:`larpo.tasks.arithmetic.graded_reward`) on the reply's last integer,
    so wrong numbers are ranked by how close they are; a reply without a number scores 0."""
    target = answer(problem_of(prompt))
    return [grade(number, target) if (number := final_number(r)) is not None else 0.0 for r in responses]


def write_prompt_files(
    output: Path, sizes: dict[str, int], seed: int, *, kind: str = "add"
) -> dict[str, Path]:
    """``train``/``validation``/``test`` JSONL files of distinct problems (disjoint splits) in chat form."""
    problems = make_problems(sum(sizes[s] for s in _SPLITS), seed, kind=kind)
    output.mkdir(parents=True, exist_ok=True)
    paths, start = {}, 0
    for split in _SPLITS:
        rows = problems[start : start + sizes[split]]
        start += sizes[split]
        paths[split] = output / f"{split}.jsonl"
        with open(paths[split], "w", encoding="utf-8") as handle:
            for i, problem in enumerate(rows):
                messages = [{"role": "user", "content": question(problem)}]
                handle.write(json.dumps({"id": f"{split}-{i}", "prompt": messages}) + "\n")
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Write chat-form arithmetic prompt files (train/validation/test)."
    )
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--kind", default="add", help="add, sub, mul, addsub or mixed")
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--validation", type=int, default=500)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = {"train": args.train, "validation": args.validation, "test": args.test}
    for split, path in write_prompt_files(args.output, sizes, args.seed, kind=args.kind).items():
        print(f"{split}: {sizes[split]} prompts -> {path}")


if __name__ == "__main__":
    main()
