"""|delta NDCG| lambda weights for LambdaRank (Burges 2010; LiPO-lambda, Liu et al. 2024)."""

from __future__ import annotations

import torch
from torch import Tensor


def delta_ndcg_weights(rewards: Tensor, mask: Tensor, scores: Tensor | None = None) -> Tensor:
    """``[B, m, m]`` weight of each pair: the NDCG change from swapping i and j in the model's ranking.

    Relevance is the reranker score scaled to ``[0, 1]`` within the row (or, without scores, the
    position: 1 for the best candidate down to 0 for the last). Gains are ``2**rel - 1``; discounts use
    the rank of each candidate under the current implicit rewards. Weights carry no gradient.

    Args:
        rewards: ``[B, m]`` implicit rewards g (padded slots arbitrary but finite).
        mask: ``[B, m]`` bool, True for real candidates.
        scores: ``[B, m]`` reranker scores or None.
    """
    rewards = rewards.detach()
    relevance = _relevance(mask, scores, rewards.dtype)
    gains = torch.where(mask, torch.exp2(relevance) - 1.0, rewards.new_zeros(()))  # (B, m)

    both_real = mask.unsqueeze(2) & mask.unsqueeze(1)  # (B, m, m): [b, i, j]
    index = torch.arange(mask.shape[1], device=mask.device)
    beats = (rewards.unsqueeze(1) > rewards.unsqueeze(2)) | (
        (rewards.unsqueeze(1) == rewards.unsqueeze(2)) & (index.view(1, 1, -1) < index.view(1, -1, 1))
    )  # [b, i, j]: j is ranked above i
    rank = 1 + (beats & both_real).sum(dim=2)  # (B, m), 1 = top
    discount = torch.where(mask, 1.0 / torch.log2(1.0 + rank.to(rewards.dtype)), rewards.new_zeros(()))

    ideal_gains = gains.sort(dim=1, descending=True).values
    ideal_discount = 1.0 / torch.log2(2.0 + index.to(rewards.dtype))
    ideal_dcg = (ideal_gains * ideal_discount).sum(dim=1).clamp_min(torch.finfo(rewards.dtype).tiny)

    weights = (gains.unsqueeze(2) - gains.unsqueeze(1)).abs() * (
        discount.unsqueeze(2) - discount.unsqueeze(1)
    ).abs()
    return weights / ideal_dcg.view(-1, 1, 1)


def _relevance(mask: Tensor, scores: Tensor | None, dtype: torch.dtype) -> Tensor:
    """``[B, m]`` relevance in ``[0, 1]``: min-max scaled scores, or linear in position."""
    if scores is None:
        count = mask.sum(dim=1, keepdim=True).to(dtype)
        position = torch.arange(mask.shape[1], device=mask.device, dtype=dtype).unsqueeze(0)
        return ((count - 1 - position) / (count - 1)).clamp_min(0.0)
    scores = scores.to(dtype)
    high = torch.where(mask, scores, scores.new_full((), float("-inf"))).amax(dim=1, keepdim=True)
    low = torch.where(mask, scores, scores.new_full((), float("inf"))).amin(dim=1, keepdim=True)
    spread = high - low
    scaled = (torch.where(mask, scores, low) - low) / torch.where(spread > 0, spread, scores.new_ones(()))
    return torch.where(mask, scaled, scores.new_zeros(()))
