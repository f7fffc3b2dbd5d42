"""Supervised warm-up of the demo policy on prompt -> answer + EOS, with early stopping on accuracy."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from larpo.data import encode_texts, tokenize_list
from larpo.errors import InputError
from larpo.generation import TransformersGenerator
from larpo.tasks.arithmetic.problems import answer

GENERATION_BATCH_SIZE = 256
FUSED_ADAMW = ("cpu", "cuda")
"""Devices on which torch's AdamW has a fused kernel (``fused=True``)."""


@dataclass(frozen=True)
class SFTRecord:
    """One history entry: the mean training loss of the steps since the previous entry and, when
    evaluation prompts were given, the greedy exact-match accuracy on them after ``step`` steps."""

    step: int
    loss: float
    accuracy: float | None


def greedy_accuracy(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str], max_new_tokens: int
) -> float:
    """Fraction of ``prompts`` whose greedy completion is exactly the answer."""
    generator = TransformersGenerator(model, tokenizer, batch_size=GENERATION_BATCH_SIZE)
    completions = generator.greedy(prompts, max_new_tokens)
    return sum(c == answer(p) for p, c in zip(prompts, completions, strict=True)) / len(prompts)


def answer_budget(prompts: list[str]) -> int:
    """``max_new_tokens`` that fits the longest answer among ``prompts`` plus its EOS."""
    return max(len(answer(prompt)) for prompt in prompts) + 1


def sft(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_prompts: list[str],
    *,
    targets: list[str] | None = None,
    steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    eval_prompts: list[str] | None = None,
    target_accuracy: float | None = None,
    eval_every: int = 25,
    on_record: Callable[[SFTRecord], None] | None = None,
) -> list[SFTRecord]:
    """Train ``model`` in place with AdamW on ``prompt -> answer + EOS``, loss on the answer tokens only.

    ``targets`` (one per prompt, e.g. :func:`~larpo.tasks.arithmetic.demonstrations`) replace the exact
    answers as what is imitated; accuracy is always measured against the exact answers.

    Sequences use :func:`larpo.data.tokenize_list`'s layout, the one the preference stage sees. Batches
    are drawn from shuffled passes over ``train_prompts`` seeded by ``seed``. Every ``eval_every`` steps
    (and after the last) a history entry is recorded; with ``eval_prompts`` it carries their greedy
    accuracy, and training stops early once that reaches ``target_accuracy``; ``on_record`` (e.g. a
    progress printer) sees each entry as it is made. The model is left in eval mode. Returns the history.
    """
    if steps < 1 or batch_size < 1 or eval_every < 1:
        raise InputError(
            f"steps, batch_size and eval_every must be >= 1, got {steps}, {batch_size}, {eval_every}"
        )
    if not train_prompts:
        raise InputError("sft needs at least one training prompt")
    if target_accuracy is not None and not eval_prompts:
        raise InputError("target_accuracy needs eval_prompts to measure accuracy on")
    if targets is not None and len(targets) != len(train_prompts):
        raise InputError(f"{len(train_prompts)} training prompts but {len(targets)} targets")
    targets = targets if targets is not None else [answer(p) for p in train_prompts]
    encoded = encode_texts(tokenizer, [*train_prompts, *targets])
    examples = [
        _example(tokenizer, prompt, target, encoded)
        for prompt, target in zip(train_prompts, targets, strict=True)
    ]
    table = _collate(examples, tokenizer.pad_token_id)  # every example once; a batch takes its rows
    lengths = table["attention_mask"].sum(dim=1)
    max_new_tokens = answer_budget(eval_prompts) if eval_prompts else 0
    rng = random.Random(seed)
    order: list[int] = []
    # the fused kernel where torch has one (as transformers' Trainer defaults to); the same update rule
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=learning_rate, fused=model.device.type in FUSED_ADAMW
    )
    history: list[SFTRecord] = []
    losses: list[float] = []
    model.train()
    for step in range(1, steps + 1):
        while len(order) < batch_size:
            order += rng.sample(range(len(examples)), len(examples))
        batch, order = order[:batch_size], order[batch_size:]
        inputs = _rows(table, lengths, batch)
        loss = model(**{k: v.to(model.device) for k, v in inputs.items()}).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % eval_every and step != steps:
            continue
        accuracy = greedy_accuracy(model, tokenizer, eval_prompts, max_new_tokens) if eval_prompts else None
        history.append(SFTRecord(step, sum(losses) / len(losses), accuracy))
        if on_record is not None:
            on_record(history[-1])
        losses = []
        if target_accuracy is not None and accuracy is not None and accuracy >= target_accuracy:
            break
    model.eval()
    return history


def _example(
    tokenizer: PreTrainedTokenizerBase, prompt: str, target: str, encoded: dict[str, list[int]] | None = None
) -> tuple[list[int], list[int]]:
    """Prompt ids and target ids (EOS included), tokenized exactly as for the preference stage."""
    example = tokenize_list(tokenizer, prompt, [target], encoded=encoded)
    return example["prompt_ids"], example["response_ids"][0]


def _collate(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 on prompt and padding)."""
    width = max(len(p) + len(r) for p, r in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    labels = torch.full_like(input_ids, -100)
    for row, (prompt, response) in enumerate(examples):
        end = len(prompt) + len(response)
        input_ids[row, :end] = torch.tensor(prompt + response)
        attention_mask[row, :end] = 1
        labels[row, len(prompt) : end] = torch.tensor(response)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _rows(table: dict[str, torch.Tensor], lengths: torch.Tensor, rows: list[int]) -> dict[str, torch.Tensor]:
    """``rows`` of the collated ``table`` cut to their longest sequence: what :func:`_collate` gives for
    those examples alone."""
    index = torch.tensor(rows)
    width = int(lengths[index].max())
    return {name: values[index, :width] for name, values in table.items()}
