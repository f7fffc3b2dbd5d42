"""Sequence log-probabilities of candidate lists under a causal LM.

The retriever score of the paper (Section 2): ``log p(y | x) = sum_t log p(y_t | x, y_<t)``, computed
for all ``N`` candidates of a batch in one forward pass, with prompt and padding tokens masked out.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def sequence_logps(
    model: nn.Module, input_ids: Tensor, attention_mask: Tensor, response_mask: Tensor
) -> tuple[Tensor, Tensor]:
    """Summed log-probs of the response tokens of each sequence.

    Args:
        model: a causal LM returning ``.logits`` of shape ``[N, T, V]``.
        input_ids, attention_mask: ``[N, T]`` right-padded prompt+response sequences.
        response_mask: ``[N, T]`` bool, True on response tokens.

    Returns:
        ``([N] summed log-probs, [N] response token counts)``.
    """
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    logits = logits[:, :-1].float()  # (N, T-1, V): position t predicts token t+1
    targets = input_ids[:, 1:].unsqueeze(-1)  # (N, T-1, 1)
    scored = response_mask[:, 1:].bool()  # (N, T-1)
    token_logps = logits.gather(-1, targets).squeeze(-1) - logits.logsumexp(dim=-1)  # (N, T-1)
    token_logps = torch.where(scored, token_logps, token_logps.new_zeros(()))
    return token_logps.sum(dim=-1), scored.sum(dim=-1).to(token_logps.dtype)


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
