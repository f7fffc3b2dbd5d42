"""Metrics of the policy as a retriever (pass@k = Recall@k) and as a ranker (NDCG, Kendall tau),
and statistics of the implicit reward over candidate lists during training."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from larpo.losses import preference_pairs


def implicit_rewards(
    policy_logps: Tensor, reference_logps: Tensor | None, beta: float, mask: Tensor
) -> Tensor:
    """``[B, m]`` ``g = beta * (log pi - log pi_ref)`` (``beta * log pi`` without a reference), 0 when padded."""
    zero = policy_logps.new_zeros(())
    ratio = torch.where(mask, policy_logps, zero)
    if reference_logps is not None:
        ratio = ratio - torch.where(mask, reference_logps.to(ratio.dtype), zero)
    return beta * ratio


@torch.no_grad()
def ranking_stats(rewards: Tensor, mask: Tensor, scores: Tensor | None = None) -> dict[str, float]:
    """Summary of implicit rewards ``[B, m]`` over lists sorted best-first.

    Returns:
        ``ranking_accuracy``: fraction of preference pairs (i above j by the reranker; tied pairs
        skipped when ``scores`` are given) with ``g_i > g_j``, absent when there is no pair (every list
        tied); ``margin``: mean ``g_best - g_last``; ``rewards/rank_k``: mean g of the candidate at rank k
        over lists that have one.
    """
    pairs = preference_pairs(mask, scores)  # (B, m, m)
    agree = (rewards.unsqueeze(2) > rewards.unsqueeze(1)) & pairs
    last = (mask.sum(dim=1) - 1).unsqueeze(1)
    stats = {"margin": (rewards[:, 0] - rewards.gather(1, last).squeeze(1)).mean().item()}
    if pairs.any():
        stats["ranking_accuracy"] = (agree.sum() / pairs.sum()).item()
    for rank in range(mask.shape[1]):
        present = mask[:, rank]
        if present.any():
            stats[f"rewards/rank_{rank}"] = rewards[present, rank].mean().item()
    return stats


# --------------------------------------------------------------------------- retrieval metrics
def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): chance that k of n samples, c of them correct, hold a correct one.

    ``1 - C(n-c, k) / C(n, k)``, computed as ``1 - prod_{i=n-c+1}^{n} (1 - k/i)`` (no huge binomials).
    In the paper's view this is Recall@k of the policy as a retriever (Jin et al. 2025, Sec. 2).

    Raises:
        ValueError: ``k`` outside ``1..n`` or ``c`` outside ``0..n``.
    """
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n samples; got k={k}, n={n}")
    if not 0 <= c <= n:
        raise ValueError(f"correct count c={c} must be in 0..{n}")
    if n - c < k:
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


def mean_pass_at_k(samples: list[int], correct: list[int], k: int) -> float:
    """Mean of :func:`pass_at_k` over prompts, given each prompt's sample count and correct count."""
    return sum(pass_at_k(n, c, k) for n, c in zip(samples, correct, strict=True)) / len(samples)


def win_rate(scores: list[float], baseline_scores: list[float]) -> float:
    """Fraction of prompts where the policy's score beats the baseline's; ties count as half."""
    if len(scores) != len(baseline_scores) or not scores:
        raise ValueError("win_rate needs two non-empty score lists of the same length")
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(scores, baseline_scores, strict=True))
    return wins / len(scores)


def ndcg_at_k(relevance: list[float], predicted: list[float], k: int | None = None) -> float:
    """NDCG@k of the order given by ``predicted`` against graded ``relevance`` (non-negative, linear gain).

    Tied predictions are handled by averaging the gains of each tied group over the ranks it spans
    (the expected DCG over random tie-breaking). Returns 1.0 when every relevance is 0 (any order is ideal).
    """
    if len(relevance) != len(predicted) or not relevance:
        raise ValueError("ndcg needs two non-empty lists of the same length")
    if min(relevance) < 0:
        raise ValueError("ndcg needs non-negative relevance (scale rewards to [0, 1] first)")
    k = len(relevance) if k is None else min(k, len(relevance))
    discounts = [1.0 / math.log2(rank + 2) for rank in range(len(relevance))]
    ideal = sum(g * d for g, d in zip(sorted(relevance, reverse=True)[:k], discounts[:k], strict=True))
    if ideal == 0:
        return 1.0
    dcg, position = 0.0, 0
    for value in sorted(set(predicted), reverse=True):
        group = [g for g, p in zip(relevance, predicted, strict=True) if p == value]
        span = discounts[position : position + len(group)]
        dcg += sum(group) / len(group) * sum(span[: max(0, k - position)])
        position += len(group)
    return dcg / ideal


def kendall_tau(x: list[float], y: list[float]) -> float | None:
    """Kendall's tau-b between two scorings of the same items (ties handled); None if either is constant."""
    if len(x) != len(y):
        raise ValueError("kendall_tau needs two lists of the same length")
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return None if denominator == 0 else (concordant - discordant) / denominator


def scale_to_unit(values: list[float]) -> list[float]:
    """Min-max scale to ``[0, 1]`` (all zeros when constant), e.g. rewards into NDCG relevance."""
    low, high = min(values), max(values)
    return [0.0 if high == low else (v - low) / (high - low) for v in values]
