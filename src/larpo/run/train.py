"""The ``train`` stage: the policy of iteration s-1 trained on iteration s's lists -> ``iter_<s>/model``.

Every process trains (the Trainer shards the lists); the main process saves the model. With a
``peft`` section, iteration 0 adds fresh LoRA adapters to the base model and later iterations load
the previous adapter; only adapter weights train and only they are saved.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback

from larpo.adapters import add_lora
from larpo.data import encode_texts, tokenize_list, untokenized_texts
from larpo.faults import fault_point
from larpo.model_io import resolve_dtype
from larpo.run.context import RunContext
from larpo.seeding import hash_seed
from larpo.trainer import ListwiseTrainer


def stage(ctx: RunContext, s: int) -> dict[str, Any]:
    """Train the policy of iteration s-1 on iteration ``s``'s lists; save it as ``iter_<s>/model``."""
    if (stats := ctx.finished_checkpoint(s)) is not None:
        return stats
    lists = read_lists(ctx, s)
    model, tokenizer = load_trainable(ctx, s)
    if ctx.lora and s == 0:
        model = add_lora(model, ctx.lora, seed=hash_seed(ctx.config.seed, "lora") % (2**31))
    stats = train_on_lists(ctx, s, model, tokenizer, lists)
    if not ctx.is_main:
        return stats  # the main process saves the model (the weights are the same on every process)
    if ctx.lora:
        stats["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    ctx.save_checkpoint(s, model, tokenizer, stats)
    return stats


def read_lists(ctx: RunContext, s: int) -> list[dict[str, Any]]:
    """Iteration ``s``'s lists as the lists stage wrote them."""
    text = (ctx.iteration_dir(s) / "lists.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def load_trainable(ctx: RunContext, s: int):
    """(model, tokenizer) of the policy of iteration s-1, to train: with mixed precision, fp32 master
    weights (trained under bf16/fp16 autocast and saved back in the run's dtype)."""
    ctx.release_policies()  # training changes the weights: never reuse a kept copy
    mixed = ctx.config.mixed_precision and resolve_dtype(ctx.config.dtype) != torch.float32
    return ctx.load(ctx.model_path(s - 1), trainable=True, dtype="float32" if mixed else None)


def train_on_lists(ctx: RunContext, s: int, model, tokenizer, lists: list[dict[str, Any]]) -> dict[str, Any]:
    """Train ``model`` in place with :class:`~larpo.trainer.ListwiseTrainer` on ``lists``; its stats."""
    if not lists:
        return {"lists": 0, "steps": 0, "loss": None, "ranking_accuracy": None}
    examples = list_examples(ctx, tokenizer, lists)
    output_dir = str(ctx.iteration_dir(s) / "trainer")
    args = ctx.config.listwise_config(s, output_dir, disable_tqdm=not ctx.console.is_terminal)
    trainer = ListwiseTrainer(model, args, examples, processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)  # the summary line reports the iteration
    trainer.add_callback(_FaultCallback())
    for callback in ctx.train_callbacks(s):
        trainer.add_callback(callback)
    trainer.train()
    steps = [h for h in trainer.state.log_history if "loss" in h]
    return {
        "lists": len(lists),
        "steps": trainer.state.global_step,
        "loss": _mean_over_steps(steps, "loss"),
        "ranking_accuracy": _mean_over_steps(steps, "ranking_accuracy"),
        "margin": _mean_over_steps(steps, "margin"),
        "final_loss": steps[-1]["loss"],
        # the log-prob settings used (``auto`` decided for this device and these lists)
        "shared_prefix": trainer.logprob_settings.shared_prefix,
        "logprob_chunk_size": trainer.logprob_settings.chunk_size,
    }


def list_examples(ctx: RunContext, tokenizer, lists: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trainer's examples of an iteration's ``lists``: tokenized, with their scores and reference
    log-probs (None where the lists stage computed none)."""
    examples = []
    texts = (untokenized_texts(x["prompt"], x["responses"], x.get("response_ids")) for x in lists)
    encoded = encode_texts(tokenizer, itertools.chain.from_iterable(texts))
    for item in lists:  # the stored prompt is already rendered; sampled candidates train on their ids
        example = tokenize_list(tokenizer, item["prompt"], item["responses"], response_ids=item.get("response_ids"),
                                finished=item.get("finished"), end_token_id=ctx.chat.end_token_id,
                                encoded=encoded)  # fmt: skip
        example["scores"] = item["scores"]
        # null for a list that training does not read them for (the lists stage computed none)
        reference = item["reference_logps"]
        example["reference_logps"] = None if None in reference else reference
        examples.append(example)
    return examples


def _mean_over_steps(steps: list[dict[str, float]], key: str) -> float | None:
    """The mean of ``key`` over the logged steps that hold it (a step on lists that cannot train, every
    reply tied, logs no ranking metrics); None when none does."""
    values = [step[key] for step in steps if key in step]
    return sum(values) / len(values) if values else None


class _FaultCallback(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        fault_point("train.step")
