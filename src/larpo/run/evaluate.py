"""The ``eval`` stage: the policy after iteration s (-1: the initial model) on the held-out prompts.

Greedy accuracy, pass@k and mean reward (:func:`larpo.evaluation.evaluate_policy`), and the NDCG and
Kendall tau of the implicit reward over the policy's own held-out samples. -> ``eval/iter_<s>.json``
(``eval/initial.json`` for the initial model).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from larpo.evaluation import EvalSettings, evaluate_policy, implicit_rewards_of_lists, ranking_quality
from larpo.evaluation.held_out import evaluation_batches, rankable_lists
from larpo.io import atomic_write_json
from larpo.progress import generation_progress
from larpo.run.config import RunConfig
from larpo.run.context import RunContext
from larpo.seeding import hash_seed

REPORTED = ("greedy_accuracy", "mean_reward", "pass_at_k", "ndcg", "kendall_tau", "instruction_following")
"""The results of an evaluation that the manifest records (the file keeps everything)."""


def stage(ctx: RunContext, s: int) -> dict[str, Any]:
    """Evaluate the policy after iteration ``s`` (-1: the initial model) on the held-out prompts."""
    if not evaluates(ctx, s):
        return {"skipped": True}
    path = result_path(ctx.run_dir, s)
    settings = eval_settings(ctx.config, s)
    if not covers(path, settings):
        texts = [p.text for p in ctx.eval_prompts]
        keep = s >= 0 and ctx.config.eval_ranking_prompts > 0
        label = f"iter {s}: evaluating" if s >= 0 else "initial model: evaluating"
        with (
            ctx.generator(ctx.model_path(s)) as generator,
            generation_progress([generator], label, evaluation_batches(settings, len(texts)), ctx.console),
        ):
            result = evaluate_policy(
                generator, ctx.eval_reranker, texts, settings, keep_samples=keep,
                reward_prompts=[p.original for p in ctx.eval_prompts],
                reward_fields=[p.fields for p in ctx.eval_prompts],
            )  # fmt: skip
        kept = result.pop("samples", None)
        if kept:
            result.update(held_out_ranking(ctx, s, texts, kept))
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, result)
    result = json.loads(path.read_text(encoding="utf-8"))
    return {key: result[key] for key in REPORTED if key in result}


def evaluates(ctx: RunContext, s: int) -> bool:
    """Whether the run evaluates the policy after iteration ``s``: the initial model, every ``eval_every``-th
    iteration and the last, when it has held-out prompts."""
    config = ctx.config
    last = s == config.iterations - 1
    return bool(ctx.eval_prompts) and (s < 0 or last or (s + 1) % config.eval_every == 0)


def result_path(run_dir: Path, s: int) -> Path:
    """The evaluation file of the policy after iteration ``s`` (-1: the initial model) in a run directory."""
    return run_dir / "eval" / ("initial.json" if s < 0 else f"iter_{s}.json")


def covers(path: Path, wanted: EvalSettings) -> bool:
    """Whether the evaluation file ``path`` measures everything ``wanted`` asks for: the same temperatures,
    budget and threshold, at least as many samples, every k. No file: False; a file written before
    evaluations recorded their settings: True."""
    if not path.exists():
        return False
    recorded = json.loads(path.read_text(encoding="utf-8")).get("settings")
    if recorded is None:
        return True
    fixed = {k: v for k, v in asdict(wanted).items() if k not in ("num_samples", "ks")}
    return (
        all(recorded.get(k) == v for k, v in fixed.items())
        and recorded.get("num_samples", 0) >= wanted.num_samples
        and set(wanted.ks) <= set(recorded.get("ks", []))
    )


def is_outdated(ctx: RunContext, s: int) -> bool:
    """Whether iteration ``s``'s recorded evaluation no longer answers the config: skipped where it is now
    evaluated, or made with less than it now asks for. Both happen when a run is resumed with another
    ``iterations``, which makes another iteration the last (the one evaluated in full)."""
    if not evaluates(ctx, s):
        return False
    skipped = ctx.manifest.stats(s, "eval").get("skipped", False)
    return skipped or not covers(result_path(ctx.run_dir, s), eval_settings(ctx.config, s))


def eval_settings(config: RunConfig, s: int) -> EvalSettings:
    """How ``config``'s run evaluates the policy after iteration ``s`` (-1: the initial one):
    ``eval_samples_between`` samples per prompt (when set) for the cheaper checks between the initial and
    the last evaluation, ``eval_samples`` otherwise."""
    num_samples = config.eval_samples
    if 0 <= s < config.iterations - 1 and config.eval_samples_between is not None:
        num_samples = config.eval_samples_between
    return EvalSettings(
        num_samples=num_samples,
        temperatures=config.eval_temperatures,
        ks=[k for k in config.eval_ks if k <= num_samples],
        max_new_tokens=config.max_new_tokens,
        correct_threshold=config.eval_threshold,
        seed=hash_seed(config.seed, "eval") % (2**31),
    )


def held_out_ranking(ctx: RunContext, s: int, prompts: list[str], kept: dict[str, list]) -> dict[str, Any]:
    """NDCG / Kendall tau of the implicit reward on the policy's held-out sample lists ``kept``
    (``responses`` and ``scores`` per prompt)."""
    config = ctx.config
    chosen = rankable_lists(kept, config.eval_ranking_prompts)
    if not chosen:
        return {"ndcg": None, "kendall_tau": None}
    policy, tokenizer = ctx.policy(ctx.model_path(s))
    if ctx.lora and config.reference == "initial":
        reference = None  # the policy with its adapters disabled
    else:
        reference_path = config.model if config.reference == "initial" else ctx.model_path(s - 1)
        reference = ctx.load(reference_path)[0].to(policy.device)
    rewards = implicit_rewards_of_lists(
        policy, reference, tokenizer, [prompts[i] for i in chosen],
        [kept["responses"][i] for i in chosen], config.beta, ctx.chat.end_token_id,
    )  # fmt: skip
    return ranking_quality(rewards, [kept["scores"][i] for i in chosen])
