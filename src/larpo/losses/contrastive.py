"""Contrastive (InfoNCE) objective: the best candidate against all the others.

Jin et al. 2025, Table 1 and Appendix F (the dense-retriever loss of Karpukhin et al. 2020).
"""

from __future__ import annotations

import torch
from torch import Tensor

from larpo.losses._lists import masked_logsumexp, rank_lists, reduce_rows


def contrastive_loss(
    policy_logps: Tensor,
    reference_logps: Tensor,
    beta: float = 0.1,
    mask: Tensor | None = None,
    *,
    scores: Tensor | None = None,
    lengths: Tensor | None = None,
    length_normalize: bool = False,
    nll_weight: float = 0.0,
    nll_min_score: float | None = None,
    reduction: str = "mean",
) -> Tensor:
    """InfoNCE with candidate 0 as the positive and every other real candidate as a negative.

    ``L = -log[ exp g_0 / (exp g_0 + sum_{j>0} exp g_j) ] = -(g_0 - logsumexp_j g_j)``.

    Args:
        policy_logps, reference_logps: ``[B, m]`` sequence log-probs, rows sorted best-first.
        beta: implicit-reward scale.
        mask: ``[B, m]`` bool, True for real candidates (padding only at row ends).
        scores: ``[B, m]`` reranker scores; candidates tied for the best score are each a positive
            (the loss averages over them, so their order does not matter) and none of them a negative;
            a row with no negative left is skipped.
        lengths, length_normalize, nll_weight, nll_min_score, reduction: as in
            :func:`larpo.losses.pairwise_loss`.

    Returns:
        Scalar loss, or ``[B]`` per-row losses with ``reduction="none"``.
    """
    lists = rank_lists(
        policy_logps,
        reference_logps,
        beta,
        mask,
        scores=scores,
        lengths=lengths,
        length_normalize=length_normalize,
        nll_min_score=nll_min_score,
    )
    g = lists.rewards
    negatives = (lists.best.unsqueeze(2) & lists.pairs).any(dim=1)  # (B, m): worse than the best
    competitors = negatives.unsqueeze(1) | lists.best.diag_embed()  # (B, m, m): [b, positive p, j]
    per_positive = masked_logsumexp(g.unsqueeze(1).expand_as(competitors), competitors) - g  # (B, m)
    positives = lists.best.to(g.dtype)
    per_positive = torch.where(lists.best, per_positive, g.new_zeros(()))
    row_loss = (per_positive * positives).sum(dim=1) / positives.sum(dim=1)
    return reduce_rows(row_loss, negatives.any(dim=1), lists, nll_weight, reduction)
