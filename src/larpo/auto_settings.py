"""``shared_prefix: auto`` and ``logprob_chunk_size: auto``: the concrete values, from measured crossovers.

The decisions are pure functions of what can be measured before training: the device, the candidates per
list ``m``, the prompt and response lengths ``P`` and ``R`` in tokens, the vocabulary ``V``, the LM-head
positions of one batch ``N`` and the bytes the model already holds. Callers measure those
(:func:`larpo.trainer.trainer.resolve_logprob_settings`, :func:`larpo.logprobs.auto_chunk_size`); nothing
here imports torch.

The shared prefix skips the fraction ``(m - 1) P / (m (P + R))`` of the tokens a step runs (the prompt of
all but one candidate per list) for a second, smaller forward pass (prefix, then suffix). Chunking holds
``chunk x V`` logits instead of ``N x V`` for one more LM-head matmul per chunk in backward.

Measured rows behind each rule ("saves": the token fraction above; "state": the model's weights,
gradients and AdamW moments; steps of ``ListwiseTrainer``; all in docs/benchmarks.md):

=====  ============  ========================================  ========================================
rows   device        workload                                  measured
=====  ============  ========================================  ========================================
[1]    CPU, 2 cores  shared prefix, P=16, R=64, m=2: saves     step 1.07x faster (the smallest win
                     0.100                                     measured)
[1]    CPU, 2 cores  shared prefix, P=16..512, R=64, m=2 and   steps 1.24x-5.47x faster
                     8: saves 0.18-0.78
[2]    H200          shared prefix, P=128, R=256, m=2: saves   step 0.58x as fast; 0.57x TRL's
                     0.167                                     tokens/s (plain path: 1.00x TRL's)
[2]    H200          shared prefix, P=128, R=256, m=8: saves   step 1.02x (0.108 vs 0.110 s); peak
                     0.292                                     19,793 vs 23,217 MiB
[3]    H200          chunks of 4,096, V=32,000, N=4,096 (one   peak 7,046 vs 7,032 MiB: none saved
                     chunk; logits 0.20 x state)
[3]    H200          N=16,384 (4 chunks; logits 0.78 x state)  peak -27%, step +6%
[3]    H200          N=32,768 (8 chunks; logits 1.57 x state)  peak -32%, step -1%
=====  ============  ========================================  ========================================

[1] docs/benchmarks/shared_prefix.md: Llama hidden 256 x 2 layers, fp32, 2 lists per step.
[2] docs/gpu/h200_trainer_step_r256.log, h200_trainer_step_r256_plain.log, trl_cost_gpu.md: random Llama
    hidden 1024 x 8 layers (167M parameters, state 2,672 MB), V = 32,000, bf16 autocast, 8 lists per step.
[3] docs/gpu/h200_trainer_step_r256_chunk.log against h200_trainer_step_r256.log (m = 2, 8, 16), model [2].

The rules:

- ``shared_prefix`` on a CPU: on when it saves at least 0.10 of the tokens (the smallest measured win);
  below that it has little to save and a second pass to pay for. m = 1 saves nothing.
- ``shared_prefix`` on a GPU (any device but the CPU; only CUDA was measured): on when m >= 8 and it saves
  at least 0.29 of the tokens (the measured tie, with 15% less memory); off otherwise. A small model's
  step there is bound by launching kernels and the shared path launches about twice as many, so it lost
  at m = 2. Larger models were not measured: the rule does not use the model's size.
- ``logprob_chunk_size``: chunks of ``CHUNK_LOGIT_BYTES`` (4,096 positions at V = 32,000, the measured
  chunk), when the batch's fp32 logits ``N x V x 4`` bytes fill at least two chunks (one chunk saves
  nothing) and at least half the bytes of the model (weights, plus gradients and optimizer moments when
  training). That half lies between the measured rows 0.20 (one chunk, nothing saved) and 0.78 (27% saved);
  it is not itself a measured crossover.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from larpo.errors import InputError

AUTO = "auto"

CPU_MIN_SAVING = 0.10
"""Token fraction the shared prefix must save on a CPU: P=16, R=64, m=2 saves 0.100 and stepped 1.07x."""
GPU_MIN_LIST_SIZE = 8
"""Candidates per list below which the shared prefix stays off on a GPU (m=2: 0.58x; m=8: 1.02x)."""
GPU_MIN_SAVING = 0.29
"""Token fraction the shared prefix must save on a GPU: P=128, R=256, m=8 saves 0.292, the measured tie."""
CHUNK_LOGIT_BYTES = 4096 * 32000 * 4
"""fp32 logits of one chunk: the measured 4,096 positions at V = 32,000 (at most 6% longer steps)."""
MIN_CHUNKS = 2
"""Chunking pays only when the logits fill this many chunks (one chunk is the unchunked path)."""
MIN_LOGITS_SHARE = 0.5
"""Chunking pays only when the logits are at least this share of the model's own bytes."""
CHUNK_ALIGNMENT = 256
"""Chunk sizes are multiples of this many positions."""


@dataclass(frozen=True)
class LogprobSettings:
    """Concrete log-prob settings: the prompt encoded once per list or not, LM-head positions at a time."""

    shared_prefix: bool
    chunk_size: int

    def describe(self) -> str:
        return f"shared_prefix {str(self.shared_prefix).lower()}, logprob_chunk_size {self.chunk_size}"


def shared_prefix_setting(value: Any) -> bool | Literal["auto"]:
    """``shared_prefix`` as given: true, false or auto (the strings "true"/"false" of a flag read as
    booleans). Anything else is an InputError."""
    if isinstance(value, bool) or value == AUTO:
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InputError(f"'shared_prefix' must be true, false or auto, got {value!r}")


def chunk_size_setting(value: Any) -> int | Literal["auto"]:
    """``logprob_chunk_size`` as given: auto or a whole number >= 0 (0: all positions at once; a flag's
    digits read as the number). Anything else is an InputError."""
    if value == AUTO:
        return AUTO
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"'logprob_chunk_size' must be auto or an integer >= 0, got {value!r}")
    return value


def shared_prefix_saving(list_size: float, prompt_tokens: float, response_tokens: float) -> float:
    """Fraction of a step's tokens the shared prefix skips: ``(m - 1) P / (m (P + R))`` (0 for m <= 1)."""
    if list_size <= 1 or prompt_tokens + response_tokens <= 0:
        return 0.0
    return (list_size - 1) * prompt_tokens / (list_size * (prompt_tokens + response_tokens))


def choose_shared_prefix(device: str, list_size: float, prompt_tokens: float, response_tokens: float) -> bool:
    """Whether the shared prefix wins for this workload (the rules in the module docstring)."""
    saving = shared_prefix_saving(list_size, prompt_tokens, response_tokens)
    if device == "cpu":
        return saving >= CPU_MIN_SAVING
    return list_size >= GPU_MIN_LIST_SIZE and saving >= GPU_MIN_SAVING


def chunk_positions(vocab_size: int) -> int:
    """Positions per chunk: as many as fit ``CHUNK_LOGIT_BYTES`` of fp32 logits, a multiple of
    ``CHUNK_ALIGNMENT`` (at least one)."""
    fitting = CHUNK_LOGIT_BYTES // (4 * max(vocab_size, 1))
    return max(CHUNK_ALIGNMENT, fitting // CHUNK_ALIGNMENT * CHUNK_ALIGNMENT)


def choose_chunk_size(positions: int, vocab_size: int, model_bytes: int) -> int:
    """LM-head positions at a time for ``positions`` per batch (0: all at once), by the rules in the
    module docstring."""
    chunk = chunk_positions(vocab_size)
    logits_bytes = positions * vocab_size * 4
    if positions < MIN_CHUNKS * chunk or logits_bytes < MIN_LOGITS_SHARE * model_bytes:
        return 0
    return chunk


def model_bytes(model: Any, training: bool) -> int:
    """Bytes of ``model``'s parameters; when ``training``, with the gradient and two AdamW moments of each
    trainable parameter (in its dtype)."""
    total = 0
    for parameter in model.parameters():
        size = parameter.numel() * parameter.element_size()
        total += size * (4 if training and parameter.requires_grad else 1)
    return total
