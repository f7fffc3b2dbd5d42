"""Shared, masked building blocks for the list objectives.

Every objective in :mod:`larpo.losses` sees the same inputs (Jin et al. 2025, Table 1):

- ``policy_logps``, ``reference_logps``: ``[B, m]`` sequence log-probabilities of ``m`` candidates per
  prompt, each row sorted best-first by the reranker;
- ``mask``: ``[B, m]`` bool, True for real candidates, padding only at row ends, at least 2 per row.

Padded slots are replaced by zeros with :func:`torch.where` *before* any arithmetic, so whatever they
hold (huge, ``inf``, ``nan``) never reaches the loss and their gradient is exactly zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class RankedLists:
    """Validated inputs of one batch of candidate lists.

    Attributes:
        rewards: ``[B, m]`` implicit rewards ``g = beta * (log pi - log pi_ref)``, 0 in padded slots.
        mask: ``[B, m]`` bool, True for real candidates.
        pairs: ``[B, m, m]`` bool, ``pairs[b, i, j]`` True when candidate i should rank above j.
        best, worst: ``[B, m]`` bool: candidate 0 and the last real candidate, or with scores every
            candidate tied with the best (worst) score, so that no result depends on the order of ties.
        policy_logps: ``[B, m]`` policy log-probs, 0 in padded slots.
        lengths: ``[B, m]`` response token counts (1 in padded slots), or None.
        imitated: ``[B]`` bool, rows whose best candidate the NLL term trains (every row unless
            ``nll_min_score`` is given: then rows whose best score is at least it).
    """

    rewards: Tensor
    mask: Tensor
    pairs: Tensor
    best: Tensor
    worst: Tensor
    policy_logps: Tensor
    lengths: Tensor | None
    imitated: Tensor


def rank_lists(
    policy_logps: Tensor,
    reference_logps: Tensor | None,
    beta: float,
    mask: Tensor | None,
    *,
    scores: Tensor | None = None,
    lengths: Tensor | None = None,
    length_normalize: bool = False,
    nll_min_score: float | None = None,
) -> RankedLists:
    """Check the inputs and compute implicit rewards and preference pairs.

    Args:
        policy_logps: ``[B, m]`` summed log-probs under the policy.
        reference_logps: ``[B, m]`` summed log-probs under the reference, or None for reference-free
            objectives (then ``g = beta * log pi``).
        beta: inverse temperature of the implicit reward.
        mask: ``[B, m]`` bool or None (all real).
        scores: ``[B, m]`` reranker scores or None. When given, candidate i is preferred to j only if
            ``scores[i] > scores[j]``: tied pairs are skipped.
        lengths: ``[B, m]`` response token counts; needed by ``length_normalize``.
        length_normalize: use the average log-prob per token (SimPO-style) instead of the sum.
        nll_min_score: the NLL term trains only rows whose best score is at least this (needs
            ``scores``): with a graded reward, 1.0 imitates only fully correct candidates while the
            ranking term still learns from every list. None: every row.
    """
    if policy_logps.dim() != 2:
        raise ValueError(f"policy_logps must be [B, m], got shape {tuple(policy_logps.shape)}")
    batch, size = policy_logps.shape
    if size < 2:
        raise ValueError(f"a candidate list needs at least 2 candidates, got m={size}")
    if mask is None:
        mask = torch.ones_like(policy_logps, dtype=torch.bool)
    _check_same_shape(
        policy_logps, mask=mask, reference_logps=reference_logps, scores=scores, lengths=lengths
    )
    mask = mask.bool()
    _check_mask(mask)

    zero = policy_logps.new_zeros(())
    policy = torch.where(mask, policy_logps, zero)
    log_ratio = policy
    if reference_logps is not None:
        log_ratio = policy - torch.where(mask, reference_logps.to(policy.dtype), zero)
    safe_lengths = None
    if lengths is not None:
        safe_lengths = torch.where(mask, lengths.to(policy.dtype), policy.new_ones(())).clamp_min(1.0)
    if length_normalize:
        if safe_lengths is None:
            raise ValueError("length_normalize=True needs `lengths` (response token counts)")
        log_ratio = log_ratio / safe_lengths

    best, worst = best_and_worst(mask, scores)
    return RankedLists(
        rewards=beta * log_ratio,
        mask=mask,
        pairs=preference_pairs(mask, scores),
        best=best,
        worst=worst,
        policy_logps=policy,
        lengths=safe_lengths,
        imitated=imitated_rows(best & mask, scores, nll_min_score),
    )


def imitated_rows(best: Tensor, scores: Tensor | None, nll_min_score: float | None) -> Tensor:
    """``[B]`` bool: the rows whose best candidates (``best``, of :func:`best_and_worst`) the NLL term
    trains (see :func:`rank_lists`)."""
    if nll_min_score is None:
        return best.new_ones(best.shape[0])
    if scores is None:
        raise ValueError("nll_min_score needs `scores` (the reranker scores of the candidates)")
    return (best & (scores >= nll_min_score)).any(dim=1)


def rows_with_gradient(
    mask: Tensor, scores: Tensor | None = None, *, nll_term: bool = False, nll_min_score: float | None = None
) -> Tensor:
    """``[B]`` bool: the rows a built-in objective can train. A row with no preference pair (every
    candidate tied) whose best the NLL term does not imitate (``nll_term`` off, or its best score under
    ``nll_min_score``) adds exactly zero to the loss and to its gradient, whatever its log-probs: an
    all-wrong list under a binary verifier. The mean over rows still counts it."""
    trained = preference_pairs(mask, scores).any(dim=(1, 2))
    if nll_term:
        best, _ = best_and_worst(mask, scores)
        trained = trained | imitated_rows(best, scores, nll_min_score)
    return trained


def read_candidates(mask: Tensor, scores: Tensor | None, reads: str) -> Tensor:
    """``[B, m]`` bool: the candidates whose log-probs a loss that ``reads`` (an objective's
    :attr:`~larpo.losses.registry.Objective.reads`) can use: every real one (``all``), those of
    :func:`best_and_worst` (``best_and_worst``), or the best only (``best``). The NLL term reads the best,
    which each of them includes; any other candidate's value is multiplied by zero or never indexed."""
    if reads == "all":
        return mask
    best, worst = best_and_worst(mask, scores)
    if reads == "best_and_worst":
        return best | worst
    if reads == "best":
        return best
    raise ValueError(f"reads must be all, best_and_worst or best, got {reads!r}")


def preference_pairs(mask: Tensor, scores: Tensor | None = None) -> Tensor:
    """``[B, m, m]`` bool: True where candidate i should rank above candidate j.

    Without scores the row order is the ranking (``i < j``); with scores only strict preferences count
    (``scores[i] > scores[j]``), so tied candidates form no pair.
    """
    both_real = mask.unsqueeze(2) & mask.unsqueeze(1)  # (B, m, m)
    if scores is None:
        size = mask.shape[1]
        above = torch.ones(size, size, dtype=torch.bool, device=mask.device).triu(diagonal=1)
        return both_real & above
    zero = scores.new_zeros(())
    safe = torch.where(mask, scores, zero)
    return both_real & (safe.unsqueeze(2) > safe.unsqueeze(1))


def pairwise_logistic_losses(rewards: Tensor) -> Tensor:
    """``[B, m, m]`` Bradley-Terry losses ``-log sigmoid(g_i - g_j)`` of ranking candidate i above j,
    for every ordered pair (weight or mask them to choose the pairs)."""
    return -F.logsigmoid(rewards.unsqueeze(2) - rewards.unsqueeze(1))


def best_and_worst(mask: Tensor, scores: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``[B, m]`` bool masks of the best and the worst candidates of each row.

    Without scores: candidate 0 and the last real one. With scores: every real candidate whose score
    equals the row's highest (lowest) score.
    """
    positions = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)
    if scores is None:
        return positions == 0, positions == last_valid_index(mask).unsqueeze(1)
    high = torch.where(mask, scores, scores.new_full((), float("-inf"))).amax(dim=1, keepdim=True)
    low = torch.where(mask, scores, scores.new_full((), float("inf"))).amin(dim=1, keepdim=True)
    return mask & (scores == high), mask & (scores == low)


def masked_logsumexp(values: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """``log(sum(exp(values)))`` over the entries where ``mask`` is True, reduced over ``dim``.

    Masked entries never enter arithmetic and receive zero gradient. A slice with no True entry
    gives ``-inf`` (with zero, not NaN, gradient).
    """
    zero = values.new_zeros(())
    shift = torch.where(mask, values, values.new_full((), float("-inf"))).amax(dim, keepdim=True).detach()
    shift = torch.where(torch.isfinite(shift), shift, zero)
    centred = torch.where(mask, values - shift, zero)
    total = torch.where(mask, centred.exp(), zero).sum(dim)
    nonempty = mask.any(dim)
    log_total = torch.where(nonempty, total, values.new_ones(())).log()
    return torch.where(nonempty, log_total + shift.squeeze(dim), values.new_full((), float("-inf")))


def last_valid_index(mask: Tensor) -> Tensor:
    """``[B]`` index of the last real candidate of each row (padding only at row ends)."""
    return mask.sum(dim=1) - 1


def best_vs_worst_pairs(lists: RankedLists) -> tuple[Tensor, Tensor]:
    """``[B, m, m]`` weights over (best, worst) pairs summing to 1 per row, and ``[B]`` active rows.

    Without scores this is the single pair (candidate 0, last candidate); with tied best or worst
    candidates, every (best, worst) pair shares the row's weight equally. A row whose best and worst tie
    has no pair.
    """
    chosen = lists.best.unsqueeze(2) & lists.worst.unsqueeze(1) & lists.pairs  # (B, m, m)
    counts = chosen.sum(dim=(1, 2))
    weights = chosen / counts.clamp_min(1).view(-1, 1, 1).to(lists.rewards.dtype)
    return weights, counts > 0


def mean_nll_of_best(lists: RankedLists) -> Tensor:
    """``[B]`` negative log-likelihood of the best candidate(s), per token when lengths are known
    (averaged over candidates tied for best)."""
    nll = -lists.policy_logps
    if lists.lengths is not None:
        nll = nll / lists.lengths
    best = lists.best.to(nll.dtype)
    return (torch.where(lists.best, nll, nll.new_zeros(())) * best).sum(dim=1) / best.sum(dim=1)


def reduce_rows(
    row_loss: Tensor, row_active: Tensor, lists: RankedLists, nll_weight: float, reduction: str
) -> Tensor:
    """Combine per-row ranking losses with the optional NLL term and reduce.

    Args:
        row_loss: ``[B]`` ranking loss of each row (any value where ``row_active`` is False).
        row_active: ``[B]`` bool, rows with at least one preference pair.
        nll_weight: weight of the per-token NLL of the best candidate (RPO, Pang et al. 2024), on the
            rows of ``lists.imitated`` (0 on the others).
        reduction: ``"mean"`` (ranking term averaged over active rows, NLL over all rows), ``"sum"`` or
            ``"none"`` (``[B]`` per-row values).
    """
    ranking = torch.where(row_active, row_loss, row_loss.new_zeros(()))
    nll = None
    if nll_weight:
        nll = mean_nll_of_best(lists)
        nll = torch.where(lists.imitated, nll, nll.new_zeros(()))
    if reduction == "none":
        return ranking if nll is None else ranking + nll_weight * nll
    if reduction == "sum":
        total = ranking.sum()
        return total if nll is None else total + nll_weight * nll.sum()
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    mean = ranking.sum() / row_active.sum().clamp_min(1)
    return mean if nll is None else mean + nll_weight * nll.mean()


def _check_same_shape(policy_logps: Tensor, **others: Tensor | None) -> None:
    for name, tensor in others.items():
        if tensor is not None and tensor.shape != policy_logps.shape:
            raise ValueError(
                f"{name} must have the shape of policy_logps {tuple(policy_logps.shape)}, "
                f"got {tuple(tensor.shape)}"
            )


def _check_mask(mask: Tensor) -> None:
    counts = mask.sum(dim=1)
    if bool((counts < 2).any()):
        raise ValueError("every row of mask needs at least 2 real candidates")
    positions = torch.arange(mask.shape[1], device=mask.device)
    if bool((mask != (positions < counts.unsqueeze(1))).any()):
        raise ValueError("mask must hold real candidates first and padding only at row ends")
