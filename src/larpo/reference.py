"""Log-probabilities of stored (prompt, response) pairs under a reference policy, in batches."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from larpo.auto_settings import AUTO
from larpo.data import ListCollator, encode_texts, tokenize_list, untokenized_texts
from larpo.logprobs import auto_chunk_size, list_logps


@torch.no_grad()
def response_logps(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
    *,
    batch_size: int = 256,
    max_length: int | None = None,
    chunk_size: int | str = "auto",
    response_ids: Sequence[Sequence[int] | None] | None = None,
    finished: Sequence[bool | None] | None = None,
    end_token_id: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> list[float]:
    """Summed log-prob of each response (plus its end token, as trained) given its prompt, in input order.

    ``response_ids``, ``finished`` and ``end_token_id`` are parallel to ``pairs`` and mean what they mean
    in :func:`larpo.data.tokenize_list`: a pair with sampled ids is scored on exactly those tokens.

    Consecutive pairs with the same prompt form one list, so the prompt is encoded once for all of them
    (:func:`larpo.logprobs.shared_prefix_logps`); a batch holds about ``batch_size`` responses.
    ``chunk_size`` > 0 runs the LM head on that many positions at a time (large vocabularies); ``auto``
    decides it per batch from its LM-head positions (:func:`larpo.logprobs.auto_chunk_size`).
    ``on_progress(n)`` is called after each batch with the number of responses it held.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    collator = ListCollator(pad_token_id=tokenizer.pad_token_id, max_length=max_length)
    out: list[float] = []
    count = len(pairs)
    tokens = {"response_ids": response_ids or [None] * count, "finished": finished or [None] * count}
    for name, values in tokens.items():
        if len(values) != count:
            raise ValueError(f"{count} pairs but {len(values)} {name}")
    items = [(p, r, ids, done) for (p, r), ids, done in zip(pairs, *tokens.values(), strict=True)]
    for examples in _batches(tokenizer, items, batch_size, end_token_id):
        batch = {k: v.to(device) for k, v in collator(examples).items()}
        chunk = _batch_chunk_size(model, batch) if chunk_size == AUTO else chunk_size
        logps, _ = list_logps(model, batch, shared_prefix=True, chunk_size=chunk)  # (B, m)
        values = logps[batch["list_mask"]].tolist()
        out.extend(values)
        if on_progress is not None:
            on_progress(len(values))
    model.train(was_training)
    return out


def _batch_chunk_size(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> int:
    """``logprob_chunk_size: auto`` of one batch: its sequences times its longest response, in
    LM-head positions."""
    response_mask = batch["response_mask"]  # (N, T)
    positions = response_mask.shape[0] * int(response_mask.sum(dim=1).max())
    return auto_chunk_size(model, positions, training=False)


def _batches(
    tokenizer: PreTrainedTokenizerBase, items: Sequence[tuple], batch_size: int, end_token_id: int | None
) -> Iterator[list[dict]]:
    """List examples of consecutive same-prompt ``(prompt, response, ids, finished)`` items, gathered into
    batches of about ``batch_size`` responses (a list is never split across batches unless it alone
    exceeds ``batch_size``)."""
    batch: list[dict] = []
    size = 0
    texts = (untokenized_texts(prompt, [response], [ids]) for prompt, response, ids, _ in items)
    encoded = encode_texts(tokenizer, itertools.chain.from_iterable(texts))
    for prompt, group in itertools.groupby(items, key=lambda item: item[0]):
        group = list(group)
        for start in range(0, len(group), batch_size):
            chunk = group[start : start + batch_size]
            if batch and size + len(chunk) > batch_size:
                yield batch
                batch, size = [], 0
            _, responses, ids, finished = zip(*chunk, strict=True)
            batch.append(
                tokenize_list(
                    tokenizer,
                    prompt,
                    responses,
                    response_ids=ids,
                    finished=finished,
                    end_token_id=end_token_id,
                    encoded=encoded,
                )
            )
            size += len(chunk)
    if batch:
        yield batch
