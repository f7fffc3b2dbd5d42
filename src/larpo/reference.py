"""Log-probabilities of stored (prompt, response) pairs under a reference policy, in batches."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence

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
    batch_size: int = 256,
    max_length: int | None = None,
    chunk_size: int = 0,
    on_progress: Callable[[int], None] | None = None,
) -> list[float]:
    """Summed log-prob of each response (plus EOS, as trained) given its prompt, in input order.

    Consecutive pairs with the same prompt form one list, so the prompt is encoded once for all of them
    (:func:`larpo.logprobs.shared_prefix_logps`); a batch holds about ``batch_size`` responses.
    ``chunk_size`` > 0 runs the LM head on that many positions at a time (large vocabularies).
    ``on_progress(n)`` is called after each batch with the number of responses it held.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    collator = ListCollator(pad_token_id=tokenizer.pad_token_id, max_length=max_length)
    out: list[float] = []
    for examples in _batches(tokenizer, pairs, batch_size):
        batch = {k: v.to(device) for k, v in collator(examples).items()}
        logps, _ = list_logps(model, batch, shared_prefix=True, chunk_size=chunk_size)  # (B, m)
        values = logps[batch["list_mask"]].tolist()
        out.extend(values)
        if on_progress is not None:
            on_progress(len(values))
    model.train(was_training)
    return out


def _batches(
    tokenizer: PreTrainedTokenizerBase, pairs: Sequence[tuple[str, str]], batch_size: int
) -> Iterator[list[dict]]:
    """List examples of consecutive same-prompt pairs, gathered into batches of about ``batch_size``
    responses (a list is never split across batches unless it alone exceeds ``batch_size``)."""
    batch: list[dict] = []
    size = 0
    for prompt, group in itertools.groupby(pairs, key=lambda pair: pair[0]):
        responses = [response for _, response in group]
        for start in range(0, len(responses), batch_size):
            chunk = responses[start : start + batch_size]
            if batch and size + len(chunk) > batch_size:
                yield batch
                batch, size = [], 0
            batch.append(tokenize_list(tokenizer, prompt, chunk))
            size += len(chunk)
    if batch:
        yield batch
