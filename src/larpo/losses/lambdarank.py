"""LambdaRank objective: every ordered pair of a ranked list (Jin et al. 2025, Table 1, Appendix F)."""

from __future__ import annotations

from torch import Tensor

from larpo.losses._lists import pairwise_logistic_losses, rank_lists, reduce_rows
from larpo.losses.lambda_weights import delta_ndcg_weights


def lambdarank_loss(
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
    lambda_weights: bool = False,
    reduction: str = "mean",
) -> Tensor:
    """Pairwise logistic loss summed over all pairs i above j of each list.

    ``L = -sum_{i<j} w_ij * log sigmoid(g_i - g_j)`` with ``w_ij = 1`` as in the paper, or the
    |delta NDCG| weights of LiPO-lambda with ``lambda_weights=True``.

    Args:
        policy_logps, reference_logps: ``[B, m]`` sequence log-probs, rows sorted best-first.
        beta: implicit-reward scale.
        mask: ``[B, m]`` bool, True for real candidates (padding only at row ends).
        scores: ``[B, m]`` reranker scores; tied pairs are skipped (and weights use them as labels).
        lambda_weights: weight each pair by |delta NDCG| (:func:`delta_ndcg_weights`).
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
    pair_loss = pairwise_logistic_losses(g)  # (B, m, m): [b, i, j]
    if lambda_weights:
        pair_loss = pair_loss * delta_ndcg_weights(g, lists.mask, scores)
    row_loss = (pair_loss * lists.pairs).sum(dim=(1, 2))
    return reduce_rows(row_loss, lists.pairs.any(dim=(1, 2)), lists, nll_weight, reduction)
