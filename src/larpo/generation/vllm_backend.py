"""Sampling with a vLLM engine loaded from a saved Hugging Face model directory (``pip install larpo[vllm]``).

vLLM is imported only when a :class:`VLLMGenerator` is built, so larpo works without it.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer

from larpo.chat import stop_token_ids
from larpo.errors import InputError
from larpo.generation.base import (
    Generations,
    Generator,
    SamplingParams,
    decode_response,
    deduplicate,
    tokenize_prompts,
)
from larpo.seeding import hash_seed

RESERVED_ENGINE_KWARGS = ("model", "tokenizer", "seed", "generation_config")
"""Engine arguments :class:`VLLMGenerator` sets itself; ``engine_kwargs`` may not name them."""

_INSTALL_HINT = "install the extra with `pip install 'larpo[vllm]'` (or `pip install vllm`)"


def check_vllm_installed() -> None:
    """Raise :class:`InputError` when the ``vllm`` package cannot be imported (without importing it)."""
    if importlib.util.find_spec("vllm") is None:
        raise InputError(f"generator 'vllm' is selected but vLLM is not installed; {_INSTALL_HINT}")


def check_engine_kwargs(engine_kwargs: dict[str, Any]) -> None:
    """Raise :class:`InputError` when ``engine_kwargs`` is not a mapping of names or names a reserved key."""
    if not isinstance(engine_kwargs, dict) or not all(isinstance(key, str) for key in engine_kwargs):
        raise InputError(f"vllm_kwargs must be a mapping of vLLM engine arguments, got {engine_kwargs!r}")
    reserved = sorted(set(engine_kwargs) & set(RESERVED_ENGINE_KWARGS))
    if reserved:
        raise InputError(
            f"vllm_kwargs may not set {', '.join(reserved)}: larpo sets them (the model directory, "
            "per-request seeds and sampling settings)"
        )


def request_seed(seed: int, prompt_index: int) -> int:
    """The vLLM seed of prompt ``prompt_index`` under ``seed``: 62 bits, stable across processes.

    vLLM seeds the ``n`` samples of one request with ``seed + i``; hashed seeds keep those ranges of
    different prompts (and different ``seed`` values) apart.
    """
    return hash_seed(seed, prompt_index, bits=62)


class VLLMGenerator(Generator):
    """Samples with a vLLM engine; same outputs contract as :class:`TransformersGenerator`.

    Prompts are tokenized here with ``add_special_tokens=False`` and passed to vLLM as token ids; each
    sample stops at any of the stop ids (:func:`larpo.chat.stop_token_ids`: the directory's
    ``generation_config.json`` EOS ids, the tokenizer's EOS and the chat template's end-of-turn token), is
    cut there and decoded here with ``skip_special_tokens=True``, exactly as the transformers backend
    does, so ``responses``, ``finished``, ``token_ids`` and the duplicate counts mean the same.
    Sampling uses ``temperature`` and ``top_p`` with no top-k truncation; temperature 0 is greedy.
    The sampling settings of the model's ``generation_config.json`` are ignored (vLLM's
    ``generation_config="vllm"``), so only the requested settings apply.

    Every prompt is one request with ``n = num_samples`` and its own seed derived from ``params.seed``
    and the prompt's position (:func:`request_seed`), so output is reproducible for the same prompts and
    params regardless of how vLLM batches them (up to floating-point differences between batch shapes).

    The engine is started in the constructor (tens of seconds) and holds the accelerator memory until
    :meth:`close`; use the generator as a context manager so the memory is free again for training.

    Args:
        model_path: a saved Hugging Face model directory with its tokenizer.
        dtype: ``float32``, ``bfloat16``, ``float16`` or ``auto`` (vLLM reads the checkpoint's dtype).
        engine_kwargs: further ``vllm.LLM`` arguments, e.g. ``gpu_memory_utilization``,
            ``tensor_parallel_size``, ``max_model_len``, ``enforce_eager``; ``dtype`` here wins.
        chat_template: the run's setting, whose end-of-turn token is one of the stop ids.

    Raises:
        InputError: vLLM is not installed, the directory or its tokenizer is missing, ``engine_kwargs``
            names a reserved or unknown argument, or the engine rejects the model.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        dtype: str = "auto",
        engine_kwargs: dict[str, Any] | None = None,
        chat_template: str = "auto",
    ) -> None:
        check_vllm_installed()
        engine_kwargs = {} if engine_kwargs is None else engine_kwargs
        check_engine_kwargs(engine_kwargs)
        engine_kwargs = dict(engine_kwargs)
        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise InputError(f"{path}: not a Hugging Face model directory (no config.json)")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        except (OSError, ValueError, TypeError) as error:
            raise InputError(f"{path}: no usable tokenizer ({error})") from None
        if self.tokenizer.eos_token_id is None:
            raise InputError("the tokenizer has no EOS token, so generated responses could never finish")
        self.eos_id: int = self.tokenizer.eos_token_id
        self.stop_ids: list[int] = stop_token_ids(
            _saved_generation_config(path), self.tokenizer, chat_template
        )
        vllm = importlib.import_module("vllm")
        self._vllm = vllm
        engine_kwargs.setdefault("dtype", dtype)
        try:
            self._llm = vllm.LLM(
                model=str(path), tokenizer=str(path), generation_config="vllm", seed=0, **engine_kwargs
            )
        except (TypeError, ValueError) as error:  # unknown or invalid engine arguments, unsupported model
            raise InputError(f"{path}: vLLM cannot start on this model ({error})") from None

    def generate(self, prompts: list[str], params: SamplingParams) -> Generations:
        """``params.num_samples`` samples per prompt, deduplicated per prompt (see :class:`Generations`)."""
        if self._llm is None:
            raise RuntimeError("this VLLMGenerator is closed; build a new one")
        prompt_ids = tokenize_prompts(self.tokenizer, prompts)
        requests = [self._vllm.TokensPrompt(prompt_token_ids=ids) for ids in prompt_ids]
        sampling = [self._sampling_params(params, i) for i in range(len(prompts))]
        outputs = self._llm.generate(requests, sampling, use_tqdm=False)
        samples: list[list[str]] = []
        finished: list[list[bool]] = []
        token_ids: list[list[list[int]]] = []
        for output in outputs:  # in prompt order
            decoded = [
                decode_response(self.tokenizer, _with_stop_token(completion), self.stop_ids)
                for completion in sorted(output.outputs, key=lambda completion: completion.index)
            ]
            samples.append([text for text, _, _ in decoded])
            finished.append([done for _, done, _ in decoded])
            token_ids.append([ids for _, _, ids in decoded])
        return deduplicate(samples, finished, token_ids)

    def _sampling_params(self, params: SamplingParams, prompt_index: int) -> Any:
        """vLLM sampling settings of one prompt's request."""
        return self._vllm.SamplingParams(
            n=params.num_samples,
            temperature=params.temperature,
            top_p=1.0 if params.greedy else params.top_p,
            top_k=0,
            max_tokens=params.max_new_tokens,
            seed=None if params.greedy else request_seed(params.seed, prompt_index),
            stop_token_ids=list(self.stop_ids),
            detokenize=False,
        )

    def close(self) -> None:
        """Shut the engine down and free its memory (idempotent); the generator cannot be used after."""
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is None:
            return
        engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if engine_core is not None:
            engine_core.shutdown()
        del llm, engine_core
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _saved_generation_config(path: Path) -> Any:
    """An object whose ``generation_config`` is the directory's (None when it has none or it is unreadable)."""
    from types import SimpleNamespace

    from transformers import GenerationConfig

    try:
        config = GenerationConfig.from_pretrained(str(path))
    except (OSError, ValueError):
        config = None
    return SimpleNamespace(generation_config=config)


def _with_stop_token(completion: Any) -> list[int]:
    """A completion's token ids, with the stop token id appended when vLLM stopped at it but left it out."""
    ids = list(completion.token_ids)
    stop = getattr(completion, "stop_reason", None)
    if (
        getattr(completion, "finish_reason", None) == "stop"
        and isinstance(stop, int)
        and stop not in ids[-1:]
    ):
        ids.append(stop)
    return ids
