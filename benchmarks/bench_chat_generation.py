"""Generation speed and greedy accuracy of a real chat model with its chat template (transformers backend).

    python benchmarks/bench_chat_generation.py runs/smollm2

64 prompts ``What is A + B? Reply with the number only.`` (two-digit A, B; seed 0) x 4 samples at
temperature 1, ``max_new_tokens`` 24, at prompt batch sizes 32 and 128, after greedy accuracy on the same
64 prompts (the last number in the answer must equal A + B). Prints the results as JSON after each phase.
"""

from __future__ import annotations

import json
import platform
import random
import re
import sys
import time

import torch

from larpo.chat import ChatFormat
from larpo.generation import SamplingParams, TransformersGenerator
from larpo.model_io import load_policy


def problems(n: int, seed: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [(rng.randint(10, 99), rng.randint(10, 99)) for _ in range(n)]


def correct(response: str, target: int) -> bool:
    numbers = re.findall(r"-?\d+", response)
    return bool(numbers) and int(numbers[-1]) == target


def main(model_dir: str, threads: int = 2) -> None:
    torch.set_num_threads(threads)
    model, tokenizer = load_policy(model_dir)
    pairs = problems(64, seed=0)
    chat = ChatFormat(tokenizer)
    prompts = [chat.render(f"What is {a} + {b}? Reply with the number only.") for a, b in pairs]
    result: dict = {
        "model": model_dir,
        "threads": threads,
        "machine": platform.processor() or platform.machine(),
    }
    start = time.perf_counter()
    greedy = TransformersGenerator(model, tokenizer, batch_size=64).greedy(prompts, 24)
    result["greedy_seconds"] = round(time.perf_counter() - start, 1)
    result["greedy_accuracy"] = sum(correct(r, a + b) for r, (a, b) in zip(greedy, pairs, strict=True)) / len(
        pairs
    )
    result["greedy_examples"] = greedy[:4]
    print(json.dumps(result), flush=True)
    params = SamplingParams(num_samples=4, temperature=1.0, max_new_tokens=24, seed=0)
    for batch_size in (32, 128):
        generator = TransformersGenerator(
            model, tokenizer, batch_size=batch_size, stop_ids=chat.stop_token_ids(model)
        )
        start = time.perf_counter()
        out = generator.generate(prompts, params)
        seconds = time.perf_counter() - start
        tokens = sum(len(ids) for row in out.token_ids for ids in row)
        result[f"batch_{batch_size}"] = {
            "seconds": round(seconds, 1),
            "samples_per_s": round(256 / seconds, 2),
            "finished_fraction": round(sum(map(sum, out.finished)) / sum(map(len, out.finished)), 3),
            "distinct_tokens_per_s": round(tokens / seconds, 1),
        }
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
