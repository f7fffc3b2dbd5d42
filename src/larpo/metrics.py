"""How well the policy ranks as a retriever: statistics of the implicit reward over candidate lists."""

from __future__ import annotations

import torch
from torch import Tensor

from larpo.losses._lists import preference_pairs


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
        skipped when ``scores`` are given) with ``g_i > g_j``; ``margin``: mean ``g_best - g_last``;
        ``rewards/rank_k``: mean g of the candidate at rank k over lists that have one.
    """
    pairs = preference_pairs(mask, scores)  # (B, m, m)
    agree = (rewards.unsqueeze(2) > rewards.unsqueeze(1)) & pairs
    last = (mask.sum(dim=1) - 1).unsqueeze(1)
    stats = {
        "ranking_accuracy": (agree.sum() / pairs.sum().clamp_min(1)).item(),
        "margin": (rewards[:, 0] - rewards.gather(1, last).squeeze(1)).mean().item(),
    }
    for rank in range(mask.shape[1]):
        present = mask[:, rank]
        if present.any():
            stats[f"rewards/rank_{rank}"] = rewards[present, rank].mean().item()
    return stats
