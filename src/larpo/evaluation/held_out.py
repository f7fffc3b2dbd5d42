"""Evaluating a policy as a retriever (Jin et al. 2025, Sec. 2, Figure 5, Tables 5-6).

Greedy decoding is retrieval at N = 1; pass@N over sampled responses is Recall@N; best-of-N is a
retriever-reranker pipeline. Correctness is ``reward >= correct_threshold`` (1.0 for exact-match or the
built-in graded arithmetic reward).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from larpo.adapters import without_adapters
from larpo.errors import InputError
from larpo.evaluation.metrics import kendall_tau, mean_pass_at_k, ndcg_at_k, scale_to_unit, win_rate
from larpo.generation import Generator, SamplingParams
from larpo.reference import response_logps
from larpo.rewards import Reranker
from larpo.rewards.base import Fields
from larpo.tasks.instructions import has_instruction_fields, instruction_following


@dataclass(frozen=True)
class EvalSettings:
    """What to measure. ``ks`` must not exceed ``num_samples``."""

    num_samples: int = 16
    temperatures: list[float] = field(default_factory=lambda: [1.0])
    ks: list[int] = field(default_factory=lambda: [1, 4, 16])
    max_new_tokens: int | None = 64
    """None: as long as the model's context allows, up to 64 (:func:`evaluate_model_dir`)."""
    correct_threshold: float = 1.0
    best_of: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise InputError(f"eval: num_samples must be at least 1, got {self.num_samples}")
        too_big = [k for k in self.ks if not 1 <= k <= self.num_samples]
        if too_big:
            raise InputError(
                f"eval: pass@k needs 1 <= k <= num_samples={self.num_samples}; got k={too_big[0]}"
            )
        if not self.temperatures or min(self.temperatures) <= 0:
            raise InputError("eval: sampling temperatures must be positive")


def evaluate_policy(
    generator: Generator,
    reranker: Reranker,
    prompts: list[str],
    settings: EvalSettings,
    *,
    baseline: Generator | None = None,
    keep_samples: bool = False,
    reward_prompts: list | None = None,
    reward_fields: Fields | None = None,
) -> dict[str, Any]:
    """Greedy accuracy and reward, pass@k and the Recall@N curve per temperature, optional best-of-N
    and win rate against a baseline policy's greedy outputs. With ``keep_samples`` the first temperature's
    distinct samples and their scores are returned under ``samples`` (held-out candidate lists).
    ``prompts`` are the texts the policy sees (rendered in its chat template); the reranker gets
    ``reward_prompts`` (the prompts as the file holds them, strings or message lists), default ``prompts``,
    and ``reward_fields`` (each prompt row's other fields), default none. When every row has IFEval's
    columns, ``instruction_following`` holds IFEval's four accuracies of the greedy replies.

    Returns a JSON-ready dict; ``pass_at_k`` is for the first temperature, ``pass_at_k_by_temperature``
    and ``recall_curve`` (pass@N for N = 1..num_samples) cover all of them.
    """
    scored_prompts = prompts if reward_prompts is None else reward_prompts
    score = _scorer(reranker, scored_prompts, reward_fields)
    greedy = generator.greedy(prompts, settings.max_new_tokens)
    greedy_scores = [s[0] for s in score([[g] for g in greedy])]
    result: dict[str, Any] = {
        "prompts": len(prompts),
        "greedy_accuracy": _fraction(s >= settings.correct_threshold for s in greedy_scores),
        "mean_reward": sum(greedy_scores) / len(prompts),
        "settings": asdict(settings),
    }
    if reward_fields is not None and has_instruction_fields(reward_fields):  # IFEval's columns
        result["instruction_following"] = instruction_following(scored_prompts, reward_fields, greedy)
    by_temperature, curves = {}, {}
    for index, temperature in enumerate(settings.temperatures):
        params = SamplingParams(
            settings.num_samples,
            temperature,
            max_new_tokens=settings.max_new_tokens,
            seed=settings.seed + index,
        )
        generations = generator.generate(prompts, params)
        scores = score(generations.responses)
        totals = [sum(c) for c in generations.counts]
        correct = [
            sum(c for c, s in zip(counts, row, strict=True) if s >= settings.correct_threshold)
            for counts, row in zip(generations.counts, scores, strict=True)
        ]
        key = str(temperature)
        if keep_samples and index == 0:
            result["samples"] = {"responses": generations.responses, "scores": scores}
        by_temperature[key] = {str(k): mean_pass_at_k(totals, correct, k) for k in settings.ks}
        curves[key] = [mean_pass_at_k(totals, correct, n) for n in range(1, settings.num_samples + 1)]
    result["pass_at_k"] = by_temperature[str(settings.temperatures[0])]
    result["pass_at_k_by_temperature"] = by_temperature
    result["recall_curve"] = curves
    if settings.best_of:
        picked = best_of_n(generator, reranker, prompts, settings.best_of, settings.temperatures[0],
                           settings.max_new_tokens, settings.seed, reward_prompts=reward_prompts,
                           reward_fields=reward_fields)  # fmt: skip
        picked_scores = [s[0] for s in score([[p] for p in picked])]
        result["best_of_n"] = {
            "n": settings.best_of,
            "accuracy": _fraction(s >= settings.correct_threshold for s in picked_scores),
            "mean_reward": sum(picked_scores) / len(prompts),
        }
    if baseline is not None:
        baseline_outputs = baseline.greedy(prompts, settings.max_new_tokens)
        baseline_scores = [s[0] for s in score([[b] for b in baseline_outputs])]
        result["win_rate"] = win_rate(greedy_scores, baseline_scores)
    result["greedy_outputs"] = greedy
    return result


def _scorer(reranker: Reranker, prompts: list, fields: Fields | None):
    """``responses -> scores`` of ``reranker`` for these prompts and fields."""
    return lambda responses: reranker.score(prompts, responses, fields)


def evaluation_batches(settings: EvalSettings, prompts: int, baseline: bool = False) -> int:
    """How many prompts :func:`evaluate_policy` generates for, counted as a progress bar counts them."""
    return prompts * (1 + len(settings.temperatures) + bool(settings.best_of) + baseline)


def best_of_n(
    generator: Generator,
    reranker: Reranker,
    prompts: list[str],
    n: int,
    temperature: float,
    max_new_tokens: int,
    seed: int = 0,
    *,
    reward_prompts: list | None = None,
    reward_fields: Fields | None = None,
) -> list[str]:
    """Retriever-reranker inference: sample ``n`` responses, return the one the reranker scores highest
    (it sees ``reward_prompts`` and ``reward_fields`` when given, as in :func:`evaluate_policy`)."""
    generations = generator.generate(
        prompts, SamplingParams(n, temperature, max_new_tokens=max_new_tokens, seed=seed)
    )
    score = _scorer(reranker, prompts if reward_prompts is None else reward_prompts, reward_fields)
    scores = score(generations.responses)
    return [
        max(zip(row_scores, responses, strict=True), key=lambda pair: pair[0])[1]
        for row_scores, responses in zip(scores, generations.responses, strict=True)
    ]


def implicit_rewards_of_lists(
    policy: PreTrainedModel,
    reference: PreTrainedModel | None,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    responses: list[list[str]],
    beta: float,
    end_token_id: int | None = None,
) -> list[list[float]]:
    """``beta * (log pi - log pi_ref)`` of every response, as lists parallel to ``responses``.

    ``reference=None``: the reference is ``policy`` with its (peft) adapters disabled. Responses end with
    ``end_token_id`` (the chat template's end of turn; default EOS), as trained.
    """
    pairs = [(p, r) for p, row in zip(prompts, responses, strict=True) for r in row]
    policy_logps = iter(response_logps(policy, tokenizer, pairs, end_token_id=end_token_id))
    if reference is None:
        with without_adapters(policy):
            reference_logps = iter(response_logps(policy, tokenizer, pairs, end_token_id=end_token_id))
    else:
        reference_logps = iter(response_logps(reference, tokenizer, pairs, end_token_id=end_token_id))
    return [[beta * (next(policy_logps) - next(reference_logps)) for _ in row] for row in responses]


def ranking_quality(
    policy_rewards: list[list[float]], reranker_scores: list[list[float]], k: int | None = None
) -> dict[str, float | None]:
    """Mean NDCG@k and Kendall tau between the implicit-reward order and the reranker's, over lists.

    Relevance for NDCG is each list's reranker scores scaled to [0, 1]; lists whose scores are all tied
    carry no order and are left out of tau.
    """
    ndcgs = [ndcg_at_k(scale_to_unit(s), g, k) for g, s in zip(policy_rewards, reranker_scores, strict=True)]
    taus = [kendall_tau(g, s) for g, s in zip(policy_rewards, reranker_scores, strict=True)]
    taus = [t for t in taus if t is not None]
    return {
        "ndcg": sum(ndcgs) / len(ndcgs) if ndcgs else None,
        "kendall_tau": sum(taus) / len(taus) if taus else None,
    }


def export_alpaca_eval(
    path: str | Path, instructions: list[str], outputs: list[str], generator_name: str
) -> None:
    """Write AlpacaEval's ``model_outputs.json``: a list of ``{instruction, output, generator}``."""
    rows = [
        {"instruction": i, "output": o, "generator": generator_name}
        for i, o in zip(instructions, outputs, strict=True)
    ]
    Path(path).write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


RANKING_PROMPTS = 200
"""Held-out prompts whose sample lists measure NDCG / Kendall tau in ``larpo eval``."""


def rankable_lists(kept: dict[str, list], limit: int) -> list[int]:
    """Indices of the first ``limit`` sample lists (``responses`` and ``scores`` per prompt) that can be
    ranked: more than one response and not all scores tied (a graded reward)."""
    pairs = zip(kept["responses"], kept["scores"], strict=True)
    return [i for i, (responses, scores) in enumerate(pairs) if len(responses) > 1 and len(set(scores)) > 1][
        :limit
    ]


def _fraction(flags) -> float:
    flags = list(flags)
    return sum(flags) / len(flags)
