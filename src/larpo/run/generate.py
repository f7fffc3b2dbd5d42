"""The ``generate`` stage: the policy of iteration s-1 samples k candidates per prompt.

Prompts are sampled in chunks, one part file each (seeded by the chunk's index, so the store does not
depend on how many processes share the chunks); the main process merges them, adds the off-policy
negatives of ``negative_source`` and writes ``candidates/iter_<s>.jsonl``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from larpo.candidates import split_samples, temperature_for
from larpo.faults import fault_point
from larpo.generation import Generator, SamplingParams
from larpo.negatives import sample_external_negatives
from larpo.prompts import Prompt
from larpo.run.context import RunContext, chunked
from larpo.seeding import hash_seed
from larpo.store import CandidateRecord, read_records, write_records_atomic


def stage(ctx: RunContext, s: int) -> dict[str, Any]:
    """Sample k candidates per prompt with the policy of iteration s-1, chunk by chunk."""
    config = ctx.config
    final = ctx.store.path(s)
    parts = final.with_suffix(".parts")
    prompts = ctx.prompts_for(s)
    mix = split_samples(
        config.num_candidates, config.temperature_mix or [temperature_for(s, config.temperature)]
    )
    if not (final.exists() and not parts.exists()):
        parts.mkdir(parents=True, exist_ok=True)
        chunks = chunked(prompts, config.generation_batch_size)
        paths = [parts / f"{index:06d}.jsonl" for index in range(len(chunks))]
        if missing := ctx.missing_parts(paths):
            with ctx.generator(ctx.model_path(s - 1)) as generator:

                def sample(index: int) -> None:
                    params = sampling_params(ctx, s, index, mix)
                    records = sample_candidates(
                        generator,
                        chunks[index],
                        s,
                        params,
                        ids=ctx.records_ids,
                        finished=ctx.records_finished,
                    )
                    write_records_atomic(paths[index], records)
                    fault_point("generate.chunk")

                ctx.make_parts(f"iter {s}: generating", missing, sample)
        ctx.state.wait_for_everyone()
        if not ctx.is_main:
            return {}
        records = [r for path in paths for r in read_records(path)]
        if config.negative_source != "policy":
            seed = hash_seed(config.seed, "negatives", s)
            records += sample_external_negatives(records, config.negatives, config.negative_source, seed)
        write_records_atomic(final, records)
        fault_point("generate.merge")
        shutil.rmtree(parts)
    records = ctx.store.read(s)
    policy_records = [r for r in records if r.source in (None, "policy")]
    return {
        "prompts": len(prompts),
        "candidates": len(policy_records),
        "duplicates": len(prompts) * config.num_candidates - len(policy_records),
        "external_negatives": len(records) - len(policy_records),
        "truncated": sum(r.finished is False for r in policy_records),
        "temperatures": [t for t, _ in mix],
    }


def sample_candidates(
    generator: Generator,
    prompts: list[Prompt],
    iteration: int,
    params: list[SamplingParams],
    *,
    ids: bool = False,
    finished: bool = False,
) -> list[CandidateRecord]:
    """The policy's candidates for ``prompts`` (rendered: ``Prompt.text`` is what the model saw and what
    the records keep, with the prompt as the file holds it and the row's fields for the reward): the samples
    of every entry of ``params`` (one per temperature), each response once per prompt, with the
    temperature, token ids and stop flag of the sample that first gave it.
    ``ids`` / ``finished``: keep the sampled token ids / stop flag in the records."""
    per_prompt: list[dict[str, tuple]] = [{} for _ in prompts]
    for group in params:
        generations = generator.generate([p.text for p in prompts], group)
        token_ids = generations.token_ids or [[None] * len(row) for row in generations.responses]
        rows = zip(generations.responses, token_ids, generations.finished, strict=True)
        for seen, (responses, row_ids, flags) in zip(per_prompt, rows, strict=True):
            for response, sample_ids, flag in zip(responses, row_ids, flags, strict=True):
                seen.setdefault(response, (group.temperature, sample_ids, flag))
    return [
        CandidateRecord(
            p.prompt_id,
            p.text,
            response,
            None,
            iteration,
            temperature,
            source="policy",
            response_ids=sample_ids if ids else None,
            finished=flag if finished else None,
            original_prompt=None if p.original == p.text else p.original,
            prompt_fields=p.fields or None,
        )  # fmt: skip
        for p, seen in zip(prompts, per_prompt, strict=True)
        for response, (temperature, sample_ids, flag) in seen.items()
    ]


def sampling_params(
    ctx: RunContext, s: int, index: int, mix: list[tuple[float, int]]
) -> list[SamplingParams]:
    """The sampling of chunk ``index`` of iteration ``s``: one entry per (temperature, count) of ``mix``,
    each seeded by the run's seed, the iteration, the chunk and its place in the mix."""
    config = ctx.config
    return [
        SamplingParams(
            num_samples=count,
            temperature=temperature,
            top_p=config.top_p,
            max_new_tokens=config.max_new_tokens,
            seed=hash_seed(config.seed, "generate", s, index, group),
        )
        for group, (temperature, count) in enumerate(mix)
    ]


def sample_prompts_file(
    model: Path,
    prompts: Path,
    params: SamplingParams,
    *,
    batch_size: int,
    dtype: str = "auto",
    chat_template: str = "auto",
) -> tuple[list[Prompt], list[CandidateRecord]]:
    """``larpo generate``: the prompts of the file ``prompts``, rendered under ``chat_template``, and the
    candidates the model directory ``model`` samples for them with ``params`` (as iteration 0's; with a
    template, with their token ids and stop flags)."""
    from larpo.chat import ChatFormat
    from larpo.generation import TransformersGenerator
    from larpo.model_io import check_prompt_lengths, load_policy
    from larpo.prompts import load_prompts, rendered

    items = load_prompts(prompts)
    policy, tokenizer = load_policy(model, dtype)
    chat = ChatFormat(tokenizer, chat_template)
    items = rendered(items, chat, f"{prompts}: ")
    check_prompt_lengths(policy, tokenizer, [(repr(p.prompt_id), p.text) for p in items],
                         max_new_tokens=params.max_new_tokens, where=f"{prompts}: ")  # fmt: skip
    generator = TransformersGenerator(
        policy, tokenizer, batch_size=batch_size, stop_ids=chat.stop_token_ids(policy)
    )
    templated = chat.template is not None
    return items, sample_candidates(generator, items, 0, [params], ids=templated, finished=templated)
