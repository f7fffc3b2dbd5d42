"""The ``lists`` stage: iteration s's ranked candidate lists, with reference log-probs.

Lists are built from the candidates of the memorization window (:func:`larpo.candidates.build_lists`).
With ``reference: initial`` each (prompt, response)'s reference log-prob is computed once and kept in
the candidate store; with ``reference: previous`` it is computed with the policy of iteration s-1. Only
the lists that training reads them for get values (:func:`larpo.trainer.trainer.lists_reading_reference`);
the others hold ``null``: every list of a reference-free objective (``rft``, ``simpo``), and a list that
cannot change a step (every reply tied and none imitated, e.g. an all-wrong list under a binary verifier).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from larpo.adapters import without_adapters
from larpo.candidates import CandidateList, build_lists, memorization_window
from larpo.faults import fault_point
from larpo.io import atomic_write_jsonl
from larpo.run.context import RunContext
from larpo.trainer.trainer import lists_reading_reference


def stage(ctx: RunContext, s: int) -> dict[str, Any]:
    """Build iteration ``s``'s candidate lists and attach reference log-probs."""
    iterations = list(memorization_window(s, ctx.config.memorization))
    lists, stats = build_lists(ctx.store.read_all(iterations), s, ctx.config.list_settings())
    config = ctx.config
    reading = lists_read(config, [x.scores for x in lists])
    read = [x for x, r in zip(lists, reading, strict=True) if r]
    if read and config.reference == "initial":
        read = cached_reference_logps(ctx, read, iterations, s)
    elif read:
        read = fresh_reference_logps(ctx, read, ctx.model_path(s - 1))
    with_values = iter(read)  # a list not read holds none, even where the store holds some (a resumed run)
    lists = [next(with_values) if r else dataclasses.replace(x, reference_logps=[None] * len(x.responses))
             for x, r in zip(lists, reading, strict=True)]  # fmt: skip
    path = ctx.iteration_dir(s) / "lists.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(path, (item.to_dict() for item in lists))
    fault_point("lists.write")
    return stats.as_dict()


def lists_read(config, scores: list[list[float]]) -> list[bool]:
    """:func:`~larpo.trainer.trainer.lists_reading_reference` for a run's lists (``scores``, one per list),
    under its ``config``'s objective and NLL term, with the trainer's ``skip_inert_lists``."""
    return lists_reading_reference(scores, objective=config.objective, nll_weight=config.nll_weight,
                                   nll_min_score=config.nll_min_score)  # fmt: skip


def cached_reference_logps(
    ctx: RunContext, lists: list[CandidateList], iterations: list[int], s: int
) -> list[CandidateList]:
    """Reference = initial model: compute each candidate's log-prob once, keep it in the store.

    A candidate is its (prompt, response text, sampled ids): two samples of one text with different ids
    have different log-probs. With adapters, the initial model is the current policy with its adapters
    disabled (no second model is loaded).
    """
    by_iteration = {i: ctx.store.read(i) for i in iterations}
    cache = {_key(r.prompt_id, r.response, r.response_ids): r.reference_logp
             for records in by_iteration.values() for r in records if r.reference_logp is not None}  # fmt: skip
    missing = sorted({c for x in lists for c in _candidates(x) if _key(c[0], c[2], c[3]) not in cache},
                     key=lambda c: (*c[:3], c[3] or ()))  # fmt: skip
    if missing:
        model, tokenizer = ctx.policy(ctx.model_path(s - 1) if ctx.lora else ctx.config.model)
        with without_adapters(model):
            values = _logps(ctx, model, tokenizer, missing, f"iter {s}: reference log-probs")
        cache.update({_key(c[0], c[2], c[3]): v for c, v in zip(missing, values, strict=True)})
        for i, records in by_iteration.items():
            updated = [
                dataclasses.replace(r, reference_logp=cache.get(_key(r.prompt_id, r.response, r.response_ids),
                                                                r.reference_logp))
                for r in records
            ]  # fmt: skip
            if updated != records:
                ctx.store.replace(i, updated)
                fault_point("lists.reference")
    return [
        dataclasses.replace(x, reference_logps=[cache[_key(c[0], c[2], c[3])] for c in _candidates(x)])
        for x in lists
    ]


def fresh_reference_logps(
    ctx: RunContext, lists: list[CandidateList], reference_path: str
) -> list[CandidateList]:
    """Reference = previous iteration's policy: computed for every list candidate."""
    model, tokenizer = ctx.policy(reference_path)
    values = iter(
        _logps(ctx, model, tokenizer, [c for x in lists for c in _candidates(x)], "reference log-probs")
    )
    return [dataclasses.replace(x, reference_logps=[next(values) for _ in x.responses]) for x in lists]


def _candidates(x: CandidateList) -> list[tuple]:
    """``(prompt_id, prompt, response, ids, finished)`` of each candidate of ``x`` (ids as a tuple, or None)."""
    ids = x.response_ids or [None] * len(x.responses)
    finished = x.finished or [None] * len(x.responses)
    return [(x.prompt_id, x.prompt, y, tuple(i) if i is not None else None, f)
            for y, i, f in zip(x.responses, ids, finished, strict=True)]  # fmt: skip


def _key(prompt_id: str, response: str, ids) -> tuple:
    return (prompt_id, response) if ids is None else (prompt_id, response, tuple(ids))


def _logps(ctx: RunContext, model, tokenizer, candidates: list[tuple], label: str) -> list[float]:
    """Log-probs of ``(prompt_id, prompt, response, ids, finished)`` candidates, of their ids when sampled."""
    return ctx.response_logps(
        model, tokenizer, [(p, y) for _, p, y, _, _ in candidates], label,
        response_ids=[i for *_, i, _ in candidates], finished=[f for *_, f in candidates],
    )  # fmt: skip


def preference_pairs(lists: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One preference pair per list of at least 2 responses (best first), for pairwise trainers such as
    TRL's DPOTrainer: its first and last response, with their reference log-probs (``None`` when the list
    has none)."""
    pairs = []
    for item in lists:
        responses, reference = item["responses"], item.get("reference_logps")
        if len(responses) >= 2:
            pairs.append({"prompt": item["prompt"], "chosen": responses[0], "rejected": responses[-1],
                          "reference": [reference[0], reference[-1]] if reference and None not in reference
                          else None})  # fmt: skip
    return pairs
