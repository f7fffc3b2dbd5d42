"""Pairwise (DPO / Bradley-Terry) objective: best candidate against the last one.

Jin et al. 2025, Table 1 and Appendix F; Rafailov et al. 2023.
"""

from __future__ import annotations

from torch import Tensor

from larpo.losses._lists import best_vs_worst_pairs, pairwise_logistic_losses, rank_lists, reduce_rows


def pairwise_loss(
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
    """DPO on candidate 0 (winner) and the last real candidate (loser) of each row.

    ``L = -log sigmoid(g_w - g_l)`` with ``g = beta * (log pi - log pi_ref)``.

    Args:
        policy_logps, reference_logps: ``[B, m]`` sequence log-probs, rows sorted best-first.
        beta: implicit-reward scale.
        mask: ``[B, m]`` bool, True for real candidates (padding only at row ends).
        scores: ``[B, m]`` reranker scores; a row whose winner and loser tie is skipped, and tied
            best (worst) candidates share the winner's (loser's) place equally.
        lengths: ``[B, m]`` response token counts (for ``length_normalize`` and ``nll_weight``).
        length_normalize: average log-prob per token instead of the sum (SimPO-style).
        nll_weight: add this times the per-token NLL of candidate 0 (RPO).
        nll_min_score: add that NLL only on rows whose best score is at least this (needs ``scores``;
            1.0 with a graded reward: imitate only fully correct candidates); None: every row.
        reduction: ``"mean"`` over rows, ``"sum"`` or ``"none"`` (``[B]``).

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
    weights, active = best_vs_worst_pairs(lists)
    pair_loss = pairwise_logistic_losses(lists.rewards)  # (B, m, m): [b, winner, loser]
    return reduce_rows((weights * pair_loss).sum(dim=(1, 2)), active, lists, nll_weight, reduction)
