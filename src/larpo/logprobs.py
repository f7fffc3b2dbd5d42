"""Sequence log-probabilities of candidate lists under a causal LM.

The retriever score of the paper (Section 2): ``log p(y | x) = sum_t log p(y_t | x, y_<t)``, computed
for all ``N`` candidates of a batch in one forward pass, with prompt and padding tokens masked out.
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor, nn


def sequence_logps(
    model: nn.Module, input_ids: Tensor, attention_mask: Tensor, response_mask: Tensor
) -> tuple[Tensor, Tensor]:
    """Summed log-probs of the response tokens of each sequence.

    Logits are only computed from the position before the batch's earliest response token on (via the
    model's ``logits_to_keep`` where it has one): prompt positions would cost LM-head compute and
    ``[N, T, V]`` memory and are never scored.

    Args:
        model: a causal LM returning ``.logits`` of shape ``[N, T, V]``.
        input_ids, attention_mask: ``[N, T]`` right-padded prompt+response sequences.
        response_mask: ``[N, T]`` bool, True on response tokens.

    Returns:
        ``([N] summed log-probs, [N] response token counts)``.
    """
    scored = response_mask[:, 1:].bool()  # (N, T-1): position t predicts token t+1
    first = _first_scored_position(model, scored)
    kwargs = {"logits_to_keep": input_ids.shape[1] - first} if first else {}
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs).logits
    logits = logits[:, -(input_ids.shape[1] - first) : -1].float()  # (N, T-1-first, V): positions first..T-2
    targets = input_ids[:, first + 1 :].unsqueeze(-1)  # (N, T-1-first, 1)
    scored = scored[:, first:]
    token_logps = logits.gather(-1, targets).squeeze(-1) - logits.logsumexp(dim=-1)  # (N, T-1-first)
    token_logps = torch.where(scored, token_logps, token_logps.new_zeros(()))
    return token_logps.sum(dim=-1), scored.sum(dim=-1).to(token_logps.dtype)


def _first_scored_position(model: nn.Module, scored: Tensor) -> int:
    """First column of ``scored`` with a scored token when ``model`` takes ``logits_to_keep``, else 0."""
    inner = model
    while hasattr(inner, "module"):  # DDP, DataParallel, DeepSpeed engines
        inner = inner.module
    if hasattr(inner, "get_base_model"):  # PEFT passes extra keyword arguments to the base model
        inner = inner.get_base_model()
    if "logits_to_keep" not in inspect.signature(inner.forward).parameters:
        return 0
    columns = scored.any(dim=0).nonzero()
    return int(columns[0]) if len(columns) else 0


def list_logps(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Log-probs of a collated batch of lists (see :class:`larpo.data.ListCollator`).

    Returns:
        ``([B, m] summed log-probs, [B, m] response token counts)``, 0 in padded slots.
    """
    logps, lengths = sequence_logps(
        model, batch["input_ids"], batch["attention_mask"], batch["response_mask"]
    )
    mask = batch["list_mask"].to(logps.device)
    return (
        logps.new_zeros(mask.shape).masked_scatter(mask, logps),
        lengths.new_zeros(mask.shape).masked_scatter(mask, lengths),
    )
