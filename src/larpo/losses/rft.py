"""Rejection-sampling fine-tuning control (RAFT, Dong et al. 2023): NLL of the best candidate only.

The simplest method that uses the same samples as the ranking objectives; every comparison should
include it.
"""

from __future__ import annotations

from torch import Tensor

from larpo.losses._lists import mean_nll_of_best, rank_lists, reduce_rows


def rft_loss(
    policy_logps: Tensor,
    reference_logps: Tensor | None = None,
    beta: float = 0.1,
    mask: Tensor | None = None,
    *,
    scores: Tensor | None = None,
    lengths: Tensor | None = None,
    nll_weight: float = 0.0,
    nll_min_score: float | None = None,
    reduction: str = "mean",
) -> Tensor:
    """``L = -log pi(y_best) / |y_best|`` (per token when ``lengths`` is given, else per sequence).

    Args:
        policy_logps: ``[B, m]`` sequence log-probs, rows sorted best-first; only column 0 is trained.
        reference_logps, beta: accepted for the common signature, unused.
        scores: ``[B, m]`` reranker scores; candidates tied for the best score share the NLL equally.
        mask, lengths, reduction: as in :func:`larpo.losses.pairwise_loss`.
        nll_weight: extra weight on the same NLL term (the loss is then ``(1 + nll_weight) * NLL``).
        nll_min_score: train only rows whose best score is at least this (with a graded reward, 1.0
            is RFT on the exactly correct candidates); None: every row.
    """
    lists = rank_lists(
        policy_logps, None, beta, mask, scores=scores, lengths=lengths, nll_min_score=nll_min_score
    )
    nll = mean_nll_of_best(lists)
    return reduce_rows(nll, lists.imitated, lists, nll_weight, reduction)
