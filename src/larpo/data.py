"""Candidate lists as training data: tokenization and the list collator.

A *list example* is one prompt with its candidates sorted best-first by the reranker::

    {"prompt_ids": [int], "response_ids": [[int]], "scores": [float], "reference_logps": [float]}

``scores`` and ``reference_logps`` are optional. The collator flattens the ``N`` real candidates of a
batch into ``[N, T]`` prompt+response sequences for one forward pass and keeps ``[B, m]`` masks to put
the per-sequence log-probs back into lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from larpo.chat import ChatFormat, PromptInput


def encode_texts(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str]) -> dict[str, list[int]]:
    """Token ids (``add_special_tokens=False``) of each distinct text, from one batched tokenizer call:
    the ``encoded`` of :func:`tokenize_list` for many lists at once."""
    distinct = list(dict.fromkeys(texts))
    if not distinct:
        return {}
    return dict(zip(distinct, tokenizer(distinct, add_special_tokens=False)["input_ids"], strict=True))


def untokenized_texts(
    prompt: str, responses: Sequence[str], response_ids: Sequence[Sequence[int] | None] | None = None
) -> list[str]:
    """The texts :func:`tokenize_list` tokenizes for one list: the prompt, and the responses without
    sampled ids."""
    ids = response_ids or [None] * len(responses)
    return [prompt, *(text for text, sampled in zip(responses, ids, strict=True) if sampled is None)]


def tokenize_list(
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    responses: Sequence[str],
    scores: Sequence[float] | None = None,
    *,
    append_eos: bool = True,
    response_ids: Sequence[Sequence[int] | None] | None = None,
    finished: Sequence[bool | None] | None = None,
    end_token_id: int | None = None,
    encoded: Mapping[str, list[int]] | None = None,
) -> dict[str, Any]:
    """One list example. Candidates are sorted best-first by ``scores`` when given (stable).

    ``prompt`` is the text the model sees (rendered by :mod:`larpo.chat`); it and each response are
    tokenized separately, so prompt tokens are identical across the list.

    Args:
        response_ids: parallel to ``responses``: the sampled token ids of each candidate (None for a
            candidate known only as text). Ids are used as they are, so log-probs are of exactly the
            sampled tokens (a finished sample's ids already end with its stop token).
        finished: parallel to ``responses``: False for a sample cut at ``max_new_tokens`` (None: unknown,
            taken as finished). A text response gets ``end_token_id`` appended unless it is unfinished or
            ``append_eos`` is False, so the model learns where answers stop but not that a cut one ended.
        end_token_id: the token a finished answer ends with: the chat template's end-of-turn token
            (:attr:`larpo.chat.ChatFormat.end_token_id`); default the tokenizer's EOS.
        encoded: token ids of texts already tokenized (:func:`encode_texts`); other texts are tokenized
            here, one call each.
    """
    count = len(responses)
    for name, values in (("scores", scores), ("response_ids", response_ids), ("finished", finished)):
        if values is not None and len(values) != count:
            raise ValueError(f"{count} responses but {len(values)} {name}")
    end = [tokenizer.eos_token_id if end_token_id is None else end_token_id] if append_eos else []
    encoded = encoded or {}

    def encode(text: str) -> list[int]:
        known = encoded.get(text)
        return list(known) if known is not None else tokenizer(text, add_special_tokens=False)["input_ids"]

    ids = []
    for text, sampled, done in zip(
        responses, response_ids or [None] * count, finished or [None] * count, strict=True
    ):
        if sampled is not None:
            ids.append(list(sampled))
        else:
            ids.append(encode(text) + (end if done is not False else []))
    order = sorted(range(count), key=lambda i: -scores[i]) if scores is not None else range(count)
    example: dict[str, Any] = {
        "prompt_ids": encode(prompt),
        "response_ids": [ids[i] for i in order],
    }
    if scores is not None:
        example["scores"] = [float(scores[i]) for i in order]
    return example


def tokenize_chat_list(
    chat: ChatFormat,
    prompt: PromptInput,
    responses: Sequence[str],
    scores: Sequence[float] | None = None,
    *,
    response_ids: Sequence[Sequence[int] | None] | None = None,
    finished: Sequence[bool | None] | None = None,
) -> dict[str, Any]:
    """:func:`tokenize_list` of ``prompt`` rendered by ``chat`` (a stored, already rendered prompt stays as
    it is), with finished text responses ending in the template's end-of-turn token (EOS without one)."""
    return tokenize_list(
        chat.tokenizer,
        chat.render(prompt),
        responses,
        scores,
        response_ids=response_ids,
        finished=finished,
        end_token_id=chat.end_token_id,
    )


PER_LIST = frozenset({"list_mask", "scores", "reference_logps"})
"""The keys of a collated batch that hold one ``[B, m]`` row per list; the others one row per sequence."""


@dataclass
class ListCollator:
    """Pad a batch of list examples.

    Returns a dict of tensors:
        input_ids, attention_mask: ``[N, T]`` prompt+response of every real candidate, right-padded.
        response_mask: ``[N, T]`` bool, True on response tokens (the ones that are scored).
        list_mask: ``[B, m]`` bool, True for real candidates (row-major order matches the N axis).
        scores: ``[B, m]`` when every example carries them.
        reference_logps: ``[B, m]`` when any example carries them; the row of an example without them
            holds zeros. :class:`~larpo.trainer.ListwiseTrainer` leaves them out only for lists that
            cannot change a step, whose loss is zero whatever their log-probs, and checks that.

    Args:
        pad_token_id: id used for padding.
        max_length: truncate each response so prompt+response fits; a prompt that alone fills
            ``max_length`` is an error.
    """

    pad_token_id: int
    max_length: int | None = None

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        sequences, response_starts = [], []
        for example in examples:
            prompt = list(example["prompt_ids"])
            if self.max_length is not None and len(prompt) >= self.max_length:
                raise ValueError(
                    f"a prompt of {len(prompt)} tokens does not fit max_length={self.max_length}"
                )
            for response in example["response_ids"]:
                sequence = prompt + list(response)
                sequences.append(sequence[: self.max_length] if self.max_length else sequence)
                response_starts.append(len(prompt))

        width = max(len(s) for s in sequences)
        input_ids = torch.tensor(
            [s + [self.pad_token_id] * (width - len(s)) for s in sequences], dtype=torch.long
        )
        positions = torch.arange(width).unsqueeze(0)
        in_sequence = positions < torch.tensor([len(s) for s in sequences]).unsqueeze(1)
        attention_mask = in_sequence.long()
        response_mask = in_sequence & (positions >= torch.tensor(response_starts).unsqueeze(1))

        list_mask = list_mask_of([len(e["response_ids"]) for e in examples])  # (B, m)
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "response_mask": response_mask,
            "list_mask": list_mask,
        }
        if all(e.get("scores") is not None for e in examples):
            batch["scores"] = pad_lists([e["scores"] for e in examples], list_mask)
        reference = [e.get("reference_logps") for e in examples]
        if any(values is not None for values in reference):
            batch["reference_logps"] = pad_lists(
                [
                    [0.0] * len(e["response_ids"]) if values is None else values
                    for e, values in zip(examples, reference, strict=True)
                ],
                list_mask,
            )
        return batch


def select_candidates(batch: dict[str, torch.Tensor], read: torch.Tensor) -> dict[str, torch.Tensor]:
    """The candidates of a collated ``batch`` (:class:`ListCollator`) where ``read`` (``[B, m]`` bool, within
    its ``list_mask``) is True: their sequences, and the lists that keep one, each packed to the front of
    its row in the same order; padding width unchanged."""
    kept = read[batch["list_mask"]]  # (N,): per sequence, in the collator's order
    rows = read.any(dim=1)
    list_mask = list_mask_of(read[rows].sum(dim=1).tolist()).to(read.device)
    selected = {key: value[kept] for key, value in batch.items() if key not in PER_LIST}
    selected["list_mask"] = list_mask
    for key in PER_LIST & batch.keys() - {"list_mask"}:
        selected[key] = batch[key].new_zeros(list_mask.shape).masked_scatter(list_mask, batch[key][read])
    return selected


def list_mask_of(sizes: Sequence[int]) -> torch.Tensor:
    """``[B, max(sizes)]`` bool: True in the first ``sizes[b]`` slots of row b (the real candidates)."""
    counts = torch.tensor(list(sizes))
    return torch.arange(int(counts.max())).unsqueeze(0) < counts.unsqueeze(1)


def pad_lists(values: Sequence[Sequence[float]], list_mask: torch.Tensor) -> torch.Tensor:
    """``[B, m]`` float tensor with ``values`` in the real slots and 0 in padded slots."""
    out = torch.zeros(list_mask.shape, dtype=torch.float32)
    out[list_mask] = torch.tensor([float(v) for row in values for v in row], dtype=torch.float32)
    return out
