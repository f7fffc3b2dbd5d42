"""The demo's character tokenizer and tiny Llama-style policy."""

from __future__ import annotations

from pathlib import Path

from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from larpo.tiny import char_tokenizer, tiny_llama

ALPHABET = "0123456789+-*="
"""Digits, the operators (``-`` also signs negative answers) and ``=``."""

HIDDEN_SIZE = 128
NUM_HEADS = 2  # head_dim 64, which vLLM's CPU attention kernels need
NUM_LAYERS = 2
MAX_POSITIONS = 32


def build_tokenizer(directory: str | Path | None = None) -> PreTrainedTokenizerFast:
    """One token per character of :data:`ALPHABET` plus pad/bos/eos/unk; saved when ``directory`` is given."""
    return char_tokenizer(ALPHABET, directory)


def build_model(tokenizer: PreTrainedTokenizerFast, seed: int) -> LlamaForCausalLM:
    """A randomly initialised tiny Llama (hidden 128, 2 heads of dim 64) sized to ``tokenizer``."""
    return tiny_llama(
        len(tokenizer),
        hidden_size=HIDDEN_SIZE,
        num_layers=NUM_LAYERS,
        num_heads=NUM_HEADS,
        max_positions=MAX_POSITIONS,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        seed=seed,
    )
