"""Train, validation and test prompt files of the instruction-following task, disjoint by request.

Within each kind of request, a seeded shuffle puts ``test_share`` of the requests in the test split,
``validation_share`` in the validation split and the rest in the training split, so every kind is in every
split and no request is in two. Each request then gets ``draws`` prompts per split, each with 1-3
instructions (weights :data:`CONSTRAINT_COUNT_WEIGHTS`) drawn by :func:`~.checkers.draw_constraints`.

    python -m larpo.tasks.instructions --output runs/instructions
    python -m larpo.tasks.instructions --output runs/other --seed 1 --requests my_requests.txt
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from larpo.errors import InputError
from larpo.io import atomic_write_bytes
from larpo.tasks.instructions.checkers import draw_constraints
from larpo.tasks.instructions.requests import KINDS

CONSTRAINT_COUNT_WEIGHTS = {1: 1, 2: 2, 3: 2}
"""How often a prompt gets 1, 2 or 3 instructions: mostly several, so that replies are graded, not binary."""

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class SplitSettings:
    """How the splits are made. ``draws``: prompts per request in train, validation and test."""

    seed: int = 0
    test_share: float = 0.2
    validation_share: float = 0.15
    draws: tuple[int, int, int] = (8, 9, 3)


def split_requests(
    kinds: dict[str, tuple[str, ...]], settings: SplitSettings
) -> dict[str, list[tuple[str, str]]]:
    """``(kind, request)`` pairs of each split: every kind shuffled (seeded) and cut by the shares."""
    splits: dict[str, list[tuple[str, str]]] = {name: [] for name in SPLITS}
    for kind, requests in kinds.items():
        order = sorted(set(requests))
        random.Random(f"{settings.seed}/split/{kind}").shuffle(order)
        test = max(1, round(settings.test_share * len(order)))
        validation = max(1, round(settings.validation_share * len(order)))
        if test + validation >= len(order):
            raise InputError(f"kind {kind!r} has {len(order)} requests: too few for three disjoint splits")
        splits["test"] += [(kind, r) for r in order[:test]]
        splits["validation"] += [(kind, r) for r in order[test : test + validation]]
        splits["train"] += [(kind, r) for r in order[test + validation :]]
    return splits


def prompt_rows(split: str, requests: list[tuple[str, str]], draws: int, seed: int) -> list[dict[str, Any]]:
    """``draws`` prompt rows per request: the request and its instructions as one user message, with
    IFEval's ``instruction_id_list`` and ``kwargs`` and the request's ``kind``."""
    rows = []
    counts, weights = zip(*CONSTRAINT_COUNT_WEIGHTS.items(), strict=True)
    for number, (kind, request) in enumerate(requests):
        for draw in range(draws):
            key = f"{seed}/{split}/{request}/{draw}"
            count = random.Random(key).choices(counts, weights)[0]
            constraints = draw_constraints(request, count, key)
            text = " ".join([request, *(c.description for c in constraints)])
            rows.append({
                "id": f"{split}-{number}-{draw}",
                "prompt": [{"role": "user", "content": text}],
                "instruction_id_list": [c.instruction_id for c in constraints],
                "kwargs": [c.kwargs for c in constraints],
                "kind": kind,
            })  # fmt: skip
    return rows


def write_splits(
    output: Path, settings: SplitSettings, kinds: dict[str, tuple[str, ...]] = KINDS
) -> dict[str, int]:
    """Write ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl`` to ``output``; prompts per split."""
    sizes = {}
    for (split, requests), draws in zip(split_requests(kinds, settings).items(), settings.draws, strict=True):
        rows = prompt_rows(split, requests, draws, settings.seed)
        output.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(output / f"{split}.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
        sizes[split] = len(rows)
    return sizes


def read_requests(path: Path) -> dict[str, tuple[str, ...]]:
    """Requests from a text file, one per line (blank lines and lines starting with ``#`` skipped)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the requests ({error})") from None
    requests = tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))
    if not requests:
        raise InputError(f"{path}: no requests")
    return {"custom": requests}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m larpo.tasks.instructions",
        description="Write the instruction-following task's train/validation/test prompt files.",
    )
    parser.add_argument("--output", type=Path, required=True, help="folder for the three files")
    parser.add_argument("--seed", type=int, default=0, help="draws the split and the instructions")
    parser.add_argument("--requests", type=Path, help="a text file of your own requests, one per line")
    parser.add_argument("--draws", type=int, nargs=3, default=list(SplitSettings.draws),
                        metavar=("TRAIN", "VALIDATION", "TEST"), help="prompts per request in each split (default: %(default)s)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        if min(args.draws) < 1:
            raise InputError("--draws: every split needs at least 1 prompt per request")
        kinds = read_requests(args.requests) if args.requests else KINDS
        sizes = write_splits(args.output, SplitSettings(seed=args.seed, draws=tuple(args.draws)), kinds)
    except InputError as error:
        parser.exit(2, f"larpo: error: {error}\n")
    print(", ".join(f"{split}: {n} prompts" for split, n in sizes.items()) + f"; wrote {args.output}")
