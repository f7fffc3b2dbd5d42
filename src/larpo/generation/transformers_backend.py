"""Sampling with Hugging Face ``model.generate``: batched over prompts, left-padded, seeded."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from larpo.chat import stop_token_ids
from larpo.errors import InputError
from larpo.generation.base import (
    Generations,
    Generator,
    SamplingParams,
    decode_response,
    deduplicate,
    group,
    tokenize_prompts,
)
from larpo.logprobs import takes_logits_to_keep


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the RNGs sampling on ``device`` draws from (CPU, and that accelerator); restore them on exit.

    Only the CPU generator and the generator of ``device`` are touched, so the caller's RNG streams
    (and those of other accelerators) continue as if nothing had run.
    """
    if device.type == "cpu":
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            yield
        return
    module = torch.get_device_module(device.type)
    index = device.index if device.index is not None else module.current_device()
    # ``manual_seed`` seeds the current device; single-device backends (MPS) have no device switch.
    select = module.device(index) if hasattr(module, "device") else nullcontext()
    with torch.random.fork_rng(devices=[index], device_type=device.type):
        torch.default_generator.manual_seed(seed)
        with select:
            module.manual_seed(seed)
        yield


def _left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, P]`` input ids padded on the left with ``pad_id`` and the matching ``[B, P]`` attention mask."""
    width = max(map(len, sequences))
    ids = torch.tensor([[pad_id] * (width - len(s)) + s for s in sequences], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences], dtype=torch.long)
    return ids, mask


class TransformersGenerator(Generator):
    """Samples with ``model.generate`` on the model's own device.

    Prompts are tokenized with ``add_special_tokens=False``, the convention larpo uses for training
    (:func:`larpo.data.tokenize_list` tokenizes prompt and response separately), so a prompt carries any
    BOS or chat template itself (:mod:`larpo.chat` renders it). Batches are padded on the left by hand;
    the tokenizer is not modified. A sample stops at any of ``stop_ids``, which is not part of the returned
    text but is the last of its token ids.

    Output is reproducible for the same prompts, params and ``batch_size``: sampling is seeded with
    ``params.seed`` inside a forked RNG, so the caller's global RNG state is left unchanged.

    Args:
        model: a causal LM; it is put in eval mode while generating and its training flag restored after.
        tokenizer: the model's tokenizer; must have an EOS token. Padding uses its pad token, else EOS.
        batch_size: prompts per ``generate`` call (each call yields ``batch_size * num_samples`` sequences).
        device: where input tensors are placed; defaults to the device of the model's parameters.
        stop_ids: the ids that end a sample; default :func:`larpo.chat.stop_token_ids` (the model's
            generation-config EOS ids, the tokenizer's EOS and the chat template's end-of-turn token).
        share_prompt_cache: with several samples per prompt, encode each prompt once and repeat its KV cache
            for its samples (the same samples; turned off by itself for a model whose cache cannot be
            repeated). False: ``generate`` with ``num_return_sequences``, which encodes it once per sample.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        batch_size: int = 32,
        device: str | torch.device | None = None,
        stop_ids: Sequence[int] | None = None,
        share_prompt_cache: bool = True,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if tokenizer.eos_token_id is None:
            raise InputError("the tokenizer has no EOS token, so generated responses could never finish")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.eos_id: int = tokenizer.eos_token_id
        self.stop_ids: list[int] = list(stop_ids) if stop_ids else stop_token_ids(model, tokenizer)
        self.pad_id: int = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        self.share_prompt_cache = share_prompt_cache

    def generate(self, prompts: list[str], params: SamplingParams) -> Generations:
        """``params.num_samples`` samples per prompt, deduplicated per prompt (see :class:`Generations`)."""
        prompt_ids = tokenize_prompts(self.tokenizer, prompts)
        samples: list[list[str]] = []
        finished: list[list[bool]] = []
        token_ids: list[list[list[int]]] = []
        training = self.model.training
        self.model.eval()
        try:
            with _seeded(params.seed, self.device), torch.inference_mode():
                for start in range(0, len(prompt_ids), self.batch_size):
                    texts, done, ids = self._generate_batch(
                        prompt_ids[start : start + self.batch_size], params
                    )
                    samples += texts
                    finished += done
                    token_ids += ids
                    if self.on_progress is not None:
                        self.on_progress(len(texts))
        finally:
            self.model.train(training)
        return deduplicate(samples, finished, token_ids)

    def _generate_batch(
        self, prompt_ids: list[list[int]], params: SamplingParams
    ) -> tuple[list[list[str]], list[list[bool]], list[list[list[int]]]]:
        """Decoded new text, stop flags and generated ids, ``[B][k]`` each, for one batch of ``B`` prompts."""
        input_ids, attention_mask = (t.to(self.device) for t in _left_pad(prompt_ids, self.pad_id))
        options = {
            "do_sample": not params.greedy,
            "max_new_tokens": params.max_new_tokens,
            "pad_token_id": self.pad_id,
            "eos_token_id": self.stop_ids if len(self.stop_ids) > 1 else self.stop_ids[0],
        }
        if not params.greedy:
            options |= {"temperature": params.temperature, "top_p": params.top_p, "top_k": 0}
        k = params.num_samples
        prompt_cache = (
            self._prompt_cache(input_ids, attention_mask) if k > 1 and self.share_prompt_cache else None
        )
        if prompt_cache is not None:
            cache_key, cache = prompt_cache
            cache.batch_repeat_interleave(k)
            repeated = {"input_ids": input_ids, "attention_mask": attention_mask}
            repeated = {name: value.repeat_interleave(k, dim=0) for name, value in repeated.items()}
            output = self.model.generate(**repeated, **{cache_key: cache}, **options)
        else:
            output = self.model.generate(
                input_ids=input_ids, attention_mask=attention_mask, num_return_sequences=k, **options
            )  # [B * k, P + new], rows grouped by prompt
        decoded = [
            decode_response(self.tokenizer, tokens, self.stop_ids)
            for tokens in output[:, input_ids.shape[1] :].tolist()
        ]
        return tuple(group([sample[part] for sample in decoded], k) for part in range(3))

    def _prompt_cache(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[str, Any] | None:
        """The KV cache of all but the last token of each prompt, and the keyword ``generate`` takes it by;
        None where it cannot be shared (see :func:`shareable_cache`).

        Sampling ``k`` answers per prompt, ``generate`` would encode each prompt ``k`` times. Encoded once
        here and repeated ``k`` times, the cache leaves ``generate`` only the last prompt token of each row
        to encode. Positions follow ``generate``'s own rule (the running count of unpadded tokens), so the
        samples are the plain call's up to float rounding, drawn from the same random stream.
        """
        generation_config = getattr(self.model, "generation_config", None)
        if input_ids.shape[1] < 2 or getattr(generation_config, "cache_implementation", None) is not None:
            return None
        positions = (attention_mask.cumsum(-1) - 1).clamp_min(0)
        only_cache = {"logits_to_keep": 1} if takes_logits_to_keep(self.model) else {}  # logits unused
        prefix = self.model(
            input_ids=input_ids[:, :-1],
            attention_mask=attention_mask[:, :-1],
            position_ids=positions[:, :-1],
            use_cache=True,
            **only_cache,
        )
        cache_key = "cache" if "cache" in prefix else "past_key_values"
        cache = prefix.get(cache_key)
        if not shareable_cache(cache):
            self.share_prompt_cache = (
                False  # the model's cache type does not change: don't encode twice again
            )
            return None
        return cache_key, cache


def shareable_cache(cache: Any) -> bool:
    """Whether ``cache`` can be repeated per sample and continued by ``generate``: a plain ``DynamicCache``
    whose layers are full or sliding-window attention (not static, quantized, offloaded or recurrent)."""
    if type(cache) is not DynamicCache:
        return False
    return all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in cache.layers)
