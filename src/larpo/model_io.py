"""Loading Hugging Face model directories with errors a user can act on."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from larpo.errors import InputError, first_line

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(name: str = "auto") -> torch.dtype:
    """``auto`` is float32 on CPU (bf16 is ~20x slower there) and bfloat16 on a CUDA GPU that has it."""
    if name == "auto":
        cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    if name not in DTYPES:
        raise InputError(f"unknown dtype {name!r}; valid: auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def load_policy(path: str | Path, dtype: str = "auto") -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal LM and its tokenizer from a local directory.

    The tokenizer gets a pad token (its EOS, with a warning) when it has none, and the model config
    the same id.

    Raises:
        InputError: the path is missing, is not a model directory, or has no tokenizer.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: model directory not found")
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: not a Hugging Face model directory (no config.json)")
    try:
        json.loads((path / "config.json").read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path / 'config.json'}: not valid JSON ({error})") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError, TypeError) as error:
        raise InputError(f"{path}: no usable tokenizer ({first_line(error)})") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=resolve_dtype(dtype))
    except (OSError, ValueError, KeyError) as error:
        raise InputError(f"{path}: cannot load the model ({first_line(error)})") from None
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise InputError(f"{path}: the tokenizer has neither a pad nor an eos token")
        logger.warning(
            "%s: the tokenizer has no pad token; padding with its EOS token %r", path, tokenizer.eos_token
        )
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def check_prompt_lengths(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Iterable[tuple[str, str]],
    *,
    max_new_tokens: int = 0,
    max_length: int | None = None,
    where: str = "",
) -> None:
    """Refuse prompts the model cannot take, before any work: a prompt whose tokens plus
    ``max_new_tokens`` exceed the model's context (``max_position_embeddings``), or a prompt that alone
    fills ``max_length`` (training truncates responses, never prompts).

    Args:
        prompts: ``(label, text)`` pairs; the label names the prompt in the error.
        where: prefix of the error (e.g. the prompt file).
    """
    context = getattr(model.config, "max_position_embeddings", None)
    for label, text in prompts:
        count = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        if context is not None and count + max_new_tokens > context:
            raise InputError(
                f"{where}prompt {label} has {count} tokens; with max_new_tokens={max_new_tokens} it needs "
                f"{count + max_new_tokens} positions, more than the model's context of {context} "
                "(max_position_embeddings)"
            )
        if max_length is not None and count >= max_length:
            raise InputError(
                f"{where}prompt {label} has {count} tokens, which does not fit max_length={max_length}"
            )


def fitting_max_new_tokens(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Iterable[str], cap: int = 64
) -> int:
    """The longest response budget, at most ``cap``, that every prompt of ``texts`` leaves in the model's
    context (``cap`` when the context is unknown or too short even for one token: the check reports it)."""
    context = getattr(model.config, "max_position_embeddings", None)
    if context is None:
        return cap
    longest = max((len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts), default=0)
    return min(cap, context - longest) if context - longest >= 1 else cap
