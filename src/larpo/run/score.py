"""The ``score`` stage: the reranker scores every candidate of iteration s.

Prompt groups are scored in chunks of ``score_batch_size`` prompts, one part file each (shared among
processes like the generate stage's); the main process writes the scores into the candidate file.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from larpo.chat import PromptInput
from larpo.faults import fault_point
from larpo.io import atomic_write_json
from larpo.prompts import Prompt
from larpo.rewards import Reranker
from larpo.run.context import RunContext, chunked
from larpo.store import CandidateRecord, group_by_prompt


def stage(ctx: RunContext, s: int) -> dict[str, Any]:
    """Score every candidate of iteration ``s`` with the reranker, chunk by chunk."""
    records = ctx.store.read(s)
    parts = ctx.store.path(s).with_suffix(".scores")
    if not ctx.config.keep_truncated and any(r.finished is False for r in records):
        if ctx.is_main:  # dropped before scoring; the generate stage's stats counted them
            ctx.store.replace(s, [r for r in records if r.finished is not False])
        ctx.state.wait_for_everyone()
        records = ctx.store.read(s)
    if any(r.score is None for r in records):
        parts.mkdir(parents=True, exist_ok=True)
        chunks = chunked(list(group_by_prompt(records).values()), ctx.config.scoring_chunk_size)
        paths = [parts / f"{index:06d}.json" for index in range(len(chunks))]

        def score_chunk(index: int) -> None:
            scores = score_groups(ctx.reranker, records, chunks[index], ctx.prompts_by_id)
            atomic_write_json(paths[index], scores)
            fault_point("score.chunk")

        ctx.make_parts(f"iter {s}: scoring", ctx.missing_parts(paths), score_chunk)
        ctx.state.wait_for_everyone()
        if ctx.is_main:
            records = _with_scores(records, chunks, paths)
            ctx.store.replace(s, records)
            fault_point("score.merge")
    if not ctx.is_main:
        return {}
    shutil.rmtree(parts, ignore_errors=True)
    policy = [r for r in records if r.source in (None, "policy")]
    best: dict[str, float] = {}
    for r in policy:
        best[r.prompt_id] = max(best.get(r.prompt_id, r.score), r.score)
    return {
        "mean_reward": sum(r.score for r in policy) / max(len(policy), 1),
        "mean_best_reward": sum(best.values()) / max(len(best), 1),
    }


def score_groups(
    reranker: Reranker,
    records: list[CandidateRecord],
    groups: list[list[int]],
    prompts: Mapping[str, Prompt] | None = None,
) -> list[list[float]]:
    """The reranker's scores of each group of records (positions in ``records`` of one prompt's).

    The reranker gets each prompt as the prompts file holds it (a string or a message list, as TRL passes
    them to reward functions) with its row's fields, both as the records keep them; records that keep
    neither (written before records kept them) take them from ``prompts`` (by id) when it has the prompt.
    """
    inputs = [reward_input(records[group[0]], prompts or {}) for group in groups]
    responses = [[records[i].response for i in group] for group in groups]
    return reranker.score([prompt for prompt, _ in inputs], responses, [fields for _, fields in inputs])


def reward_input(
    record: CandidateRecord, prompts: Mapping[str, Prompt]
) -> tuple[PromptInput, dict[str, Any]]:
    """The prompt and fields the reward sees for ``record`` (see :func:`score_groups`)."""
    kept = record.original_prompt is not None or record.prompt_fields is not None
    if not kept and record.prompt_id in prompts:
        prompt = prompts[record.prompt_id]
        return prompt.original, prompt.fields
    return record.reward_prompt, record.prompt_fields or {}


def score_records(
    reranker: Reranker, records: list[CandidateRecord], where: str = ""
) -> list[CandidateRecord]:
    """``records`` with their scores, all prompt groups in one reranker call (``larpo score``).

    Raises:
        RewardError: a prompt whose fields the reranker cannot take (checked before any is scored).
    """
    groups = list(group_by_prompt(records).values())
    reranker.check_fields(
        [(records[g[0]].prompt_id, records[g[0]].prompt_fields or {}) for g in groups], where
    )
    return _with_scores(records, [groups], [score_groups(reranker, records, groups)])


def _with_scores(
    records: list[CandidateRecord], chunks: list[list[list[int]]], parts: list
) -> list[CandidateRecord]:
    """``records`` with the scores of each chunk (a list of scores per prompt group, or the part file
    holding it)."""
    scores: list[float | None] = [None] * len(records)
    for chunk, part in zip(chunks, parts, strict=True):
        values = json.loads(part.read_text(encoding="utf-8")) if isinstance(part, Path) else part
        for group, group_scores in zip(chunk, values, strict=True):
            for position, value in zip(group, group_scores, strict=True):
                scores[position] = value
    return [dataclasses.replace(r, score=v) for r, v in zip(records, scores, strict=True)]
