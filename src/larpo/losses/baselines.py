"""Pairwise baselines behind the list-objective signature: SimPO and IPO.

SimPO: Meng et al. 2024 (reference-free, length-normalised, with a target margin).
IPO: Azar et al. 2023 (squared loss toward a fixed log-ratio margin of ``1 / (2 beta)``).
Both compare candidate 0 with the last real candidate, like :func:`larpo.losses.pairwise_loss`.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from larpo.losses._lists import RankedLists, best_vs_worst_pairs, rank_lists, reduce_rows


def simpo_loss(
    policy_logps: Tensor,
    reference_logps: Tensor | None = None,
    beta: float = 0.1,
    mask: Tensor | None = None,
    *,
    scores: Tensor | None = None,
    lengths: Tensor | None = None,
    gamma: float = 0.5,
    nll_weight: float = 0.0,
    nll_min_score: float | None = None,
    reduction: str = "mean",
) -> Tensor:
    """``L = -log sigmoid(beta * (avg log pi(y_w) - avg log pi(y_l)) - gamma)``; no reference model.

    Args:
        policy_logps: ``[B, m]`` sequence log-probs, rows sorted best-first.
        reference_logps: ignored (SimPO is reference-free); accepted for the common signature.
        beta: reward scale (SimPO's paper uses 2-2.5).
        mask, scores, nll_weight, nll_min_score, reduction: as in :func:`larpo.losses.pairwise_loss`.
        lengths: ``[B, m]`` response token counts (required: SimPO averages over tokens).
        gamma: target reward margin.
    """
    if lengths is None:
        raise ValueError("simpo needs `lengths` (response token counts) to average log-probs")
    lists = rank_lists(
        policy_logps, None, beta, mask, scores=scores, lengths=lengths, length_normalize=True,
        nll_min_score=nll_min_score,
    )  # fmt: skip
    weights, active = best_vs_worst_pairs(lists)
    margins = _pair_margins(lists)
    return reduce_rows(
        (weights * -F.logsigmoid(margins - gamma)).sum(dim=(1, 2)), active, lists, nll_weight, reduction
    )


def ipo_loss(
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
    """``L = (h - 1 / (2 beta))**2`` with ``h`` the log-ratio margin of candidate 0 over the last one.

    Args: as in :func:`larpo.losses.pairwise_loss`.
    """
    lists = rank_lists(
        policy_logps,
        reference_logps,
        1.0,
        mask,
        scores=scores,
        lengths=lengths,
        length_normalize=length_normalize,
        nll_min_score=nll_min_score,
    )
    weights, active = best_vs_worst_pairs(lists)
    squared = (_pair_margins(lists) - 1.0 / (2.0 * beta)) ** 2
    return reduce_rows((weights * squared).sum(dim=(1, 2)), active, lists, nll_weight, reduction)


def _pair_margins(lists: RankedLists) -> Tensor:
    """``[B, m, m]`` reward margin ``g_i - g_j`` of every pair."""
    return lists.rewards.unsqueeze(2) - lists.rewards.unsqueeze(1)
