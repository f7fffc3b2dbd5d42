"""ListMLE objective: Plackett-Luce likelihood of the reranker's order (Jin et al. 2025, Eq. 23)."""

from __future__ import annotations

import torch
from torch import Tensor

from larpo.losses._lists import masked_logsumexp, rank_lists, reduce_rows


def listmle_loss(
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
    """Negative Plackett-Luce log-likelihood of each list.

    ``L = -sum_i [ g_i - logsumexp_{j >= i} g_j ]`` over the real candidates of a row. With ``scores``
    candidate i competes with itself and the strictly worse candidates only,
    ``logsumexp({g_i} + {g_j : s_j < s_i})``, so the order among tied candidates does not matter.

    Args:
        policy_logps, reference_logps: ``[B, m]`` sequence log-probs, rows sorted best-first.
        beta: implicit-reward scale.
        mask: ``[B, m]`` bool, True for real candidates (padding only at row ends).
        scores: ``[B, m]`` reranker scores (ties handled as above).
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
    competitors = lists.pairs | lists.mask.diag_embed()  # (B, m, m): [b, i, j] j in i's softmax
    log_normaliser = masked_logsumexp(g.unsqueeze(1).expand_as(competitors), competitors)  # (B, m)
    step_loss = torch.where(lists.mask, log_normaliser - g, g.new_zeros(()))
    return reduce_rows(step_loss.sum(dim=1), lists.pairs.any(dim=(1, 2)), lists, nll_weight, reduction)
