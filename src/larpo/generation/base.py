"""The sampling interface: prompts in, ``k`` distinct responses per prompt out (backend-neutral)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from larpo.checks import check_int
from larpo.errors import InputError


def _check_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SamplingParams:
    """How to sample: ``num_samples`` responses per prompt.

    Attributes:
        num_samples: ``k`` samples per prompt (>= 1), counted before duplicates are removed.
        temperature: softmax temperature (>= 0); 0 means greedy decoding, which allows one sample only.
        top_p: nucleus truncation in (0, 1]; 1 keeps the whole vocabulary. No top-k truncation is applied.
        max_new_tokens: cap on generated tokens per sample (>= 1).
        seed: with the same prompts and params a backend returns the same samples.
    """

    num_samples: int
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("num_samples", self.num_samples, 1)
        check_int("max_new_tokens", self.max_new_tokens, 1)
        check_int("seed", self.seed, None)
        if _check_real("temperature", self.temperature) < 0:
            raise InputError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < _check_real("top_p", self.top_p) <= 1:
            raise InputError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.temperature == 0 and self.num_samples > 1:
            raise InputError(
                f"temperature 0 gives one distinct sample; use num_samples 1 or a positive temperature "
                f"(got num_samples {self.num_samples})"
            )

    @property
    def greedy(self) -> bool:
        """True when decoding is deterministic argmax (temperature 0)."""
        return self.temperature == 0


@dataclass
class Generations:
    """Sampled responses, one list per prompt.

    Attributes:
        responses: per prompt, the distinct responses in first-seen sampling order (exact duplicates removed).
        finished: parallel to ``responses``: True when the sample ended with a stop token, False when it was
            cut at ``max_new_tokens``.
        duplicates: total number of exact duplicate samples removed over all prompts, so
            ``sum(map(len, responses)) + duplicates == num_samples * len(prompts)``.
        counts: parallel to ``responses``: how many of the raw samples were this response (for
            unbiased pass@k, which counts duplicates).
        token_ids: parallel to ``responses`` (None when the backend did not give them): the generated ids of
            the kept sample, without padding and with its stop token when it finished.
    """

    responses: list[list[str]]
    finished: list[list[bool]]
    duplicates: int
    counts: list[list[int]]
    token_ids: list[list[list[int]]] | None = None


def deduplicate(
    samples: list[list[str]], finished: list[list[bool]], token_ids: list[list[list[int]]] | None = None
) -> Generations:
    """Drop exact duplicate responses per prompt, keeping the first occurrence, its ``finished`` flag and
    its token ids (two samples with the same text but different ids count as duplicates)."""
    rows_ids = token_ids if token_ids is not None else [[None] * len(row) for row in samples]
    kept_responses, kept_finished, kept_counts, kept_ids, duplicates = [], [], [], [], 0
    for row, flags, ids in zip(samples, finished, rows_ids, strict=True):
        first: dict[str, tuple[bool, list[int] | None]] = {}
        counts: dict[str, int] = {}
        for response, flag, sample_ids in zip(row, flags, ids, strict=True):
            first.setdefault(response, (flag, sample_ids))
            counts[response] = counts.get(response, 0) + 1
        kept_responses.append(list(first))
        kept_finished.append([flag for flag, _ in first.values()])
        kept_ids.append([sample_ids for _, sample_ids in first.values()])
        kept_counts.append([counts[r] for r in first])
        duplicates += len(row) - len(first)
    return Generations(
        kept_responses, kept_finished, duplicates, kept_counts, kept_ids if token_ids is not None else None
    )


def tokenize_prompts(tokenizer: PreTrainedTokenizerBase, prompts: list[str]) -> list[list[int]]:
    """Token ids of each prompt with ``add_special_tokens=False`` (the prompt carries any BOS itself).

    Raises:
        InputError: a prompt has no tokens.
    """
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"] if prompts else []
    for i, ids in enumerate(prompt_ids):
        if not ids:
            raise InputError(
                f"prompt {i + 1} ({prompts[i]!r}) has no tokens; generation needs a non-empty prompt"
            )
    return prompt_ids


def decode_response(
    tokenizer: PreTrainedTokenizerBase, tokens: list[int], stop_ids: Sequence[int]
) -> tuple[str, bool, list[int]]:
    """The text of generated ``tokens`` up to the first stop id (excluded, special tokens skipped),
    whether a stop id was reached (False: the sample was cut at ``max_new_tokens``), and the sample's ids
    up to and including that stop id (what follows it is padding)."""
    stops = set(stop_ids)
    end = next((i for i, token in enumerate(tokens) if token in stops), len(tokens))
    finished = end < len(tokens)
    text = tokenizer.decode(tokens[:end], skip_special_tokens=True)
    return text, finished, list(tokens[: end + 1] if finished else tokens)


def group(values: list, size: int) -> list[list]:
    """``values`` in consecutive groups of ``size`` (a flat ``[B * k]`` list as ``[B][k]``)."""
    return [values[i : i + size] for i in range(0, len(values), size)]


class Generator(ABC):
    """Samples responses from a policy; one implementation per inference backend.

    A generator is a context manager: leaving the ``with`` block calls :meth:`close`, which frees what
    the backend holds (a no-op for backends that borrow their model).
    """

    on_progress: Callable[[int], None] | None = None
    """Called with the number of prompts done after each batch, by backends that generate in batches."""

    @abstractmethod
    def generate(self, prompts: list[str], params: SamplingParams) -> Generations:
        """``params.num_samples`` samples per prompt, deduplicated per prompt; responses exclude the prompt."""

    def greedy(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        """One greedy (temperature 0) response per prompt, e.g. for evaluation."""
        params = SamplingParams(num_samples=1, temperature=0.0, max_new_tokens=max_new_tokens)
        return [responses[0] for responses in self.generate(prompts, params).responses]

    def close(self) -> None:
        """Release the backend's resources (an inference engine, its memory); the default does nothing."""
        return None

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
