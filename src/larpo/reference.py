"""Log-probabilities of stored (prompt, response) pairs under a reference policy, in batches."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from larpo.data import ListCollator, tokenize_list
from larpo.logprobs import list_logps


@torch.no_grad()
def response_logps(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
    *,
    batch_size: int = 32,
    max_length: int | None = None,
) -> list[float]:
    """Summed log-prob of each response (plus EOS, as trained) given its prompt, in input order."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    collator = ListCollator(pad_token_id=tokenizer.pad_token_id, max_length=max_length)
    out: list[float] = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        examples = [tokenize_list(tokenizer, prompt, [response]) for prompt, response in chunk]
        batch = {k: v.to(device) for k, v in collator(examples).items()}
        logps, _ = list_logps(model, batch)  # (B, 1)
        out.extend(logps[:, 0].tolist())
    model.train(was_training)
    return out
