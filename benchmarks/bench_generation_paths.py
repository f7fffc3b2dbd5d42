"""Samples/s of the transformers generation paths on a real chat model, as ratios measured in one process.

    python benchmarks/bench_generation_paths.py runs/smollm2 \\
        --prompts runs/chat_arithmetic/train.jsonl --count 32 --threads 1 --repeats 2

Each repeat runs every path once on the same prompts (the first ``--count`` of the file, rendered with the
model's chat template), ``--num-samples`` samples each at temperature 1, ``max_new_tokens`` 24, and a
path's ratio is its samples/s over the first path's within the same repeat, so machine load shared by
both cancels out; ``cpu_ratio`` is the same ratio of samples per CPU second of this process (with one
thread it hardly depends on what else runs on the machine; with more, waiting threads spin and count). Paths (``--paths``):

- ``generate``: the default, ``TransformersGenerator`` with ``model.generate`` (dynamic KV cache), each
  prompt encoded once and its KV cache repeated for its samples;
- ``generate-per-sample``: the former default, ``model.generate`` with ``num_return_sequences``, which
  encodes each prompt once per sample;
- ``generate-static``: ``cache_implementation="static"`` (which encodes each prompt once per sample);
- ``generate-compiled``: static cache with the model's forward under ``torch.compile`` (its first call,
  which compiles, is timed apart as ``compile_seconds``);

Each path runs at every ``--threads`` count (torch intra-op threads) and ``--batch-sizes`` (prompts per
call). Prints one JSON line per measurement, then a summary with the median ratio of each arm;
``--profile`` adds, per arm, torch's profiler table of one more call (not timed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import contextmanager

import torch

from benchutil import load_average, run_header
from larpo.chat import ChatFormat
from larpo.generation import SamplingParams, TransformersGenerator
from larpo.model_io import load_policy
from larpo.prompts import load_prompts, rendered

PATHS = ("generate", "generate-per-sample", "generate-static", "generate-compiled")


@contextmanager
def generate_options(model, path: str):
    """``model.generate`` as ``path`` runs it (a static cache, a compiled forward), restored after."""
    saved_cache, saved_forward = model.generation_config.cache_implementation, model.forward
    if path in ("generate-static", "generate-compiled"):
        model.generation_config.cache_implementation = "static"  # the generator then encodes per sample
    if path == "generate-compiled":
        model.forward = torch.compile(saved_forward, dynamic=False)
    try:
        yield
    finally:
        model.generation_config.cache_implementation, model.forward = saved_cache, saved_forward


def measure(generator: TransformersGenerator, prompts: list[str], params: SamplingParams) -> dict:
    start, cpu_start = time.perf_counter(), time.process_time()
    out = generator.generate(prompts, params)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    samples = params.num_samples * len(prompts)
    lengths = [len(ids) for row in out.token_ids for ids in row]
    return {
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu_seconds, 2),
        "samples_per_s": round(samples / seconds, 3),
        "samples_per_cpu_s": round(samples / cpu_seconds, 3),
        "finished_fraction": round(sum(map(sum, out.finished)) / len(lengths), 3),
        "mean_new_tokens": round(sum(lengths) / len(lengths), 2),
    }


def profiled(generator: TransformersGenerator, prompts: list[str], params: SamplingParams) -> str:
    """The operators taking most CPU time in one more call, as torch's profiler tabulates them."""
    with torch.profiler.profile() as profiler:
        generator.generate(prompts, params)
    return profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=8)


def arms(args) -> list[tuple[str, int, int]]:
    return [(p, b, t) for t in args.threads for b in args.batch_sizes for p in args.paths]


def run(args) -> dict:
    model, tokenizer = load_policy(args.model)
    chat = ChatFormat(tokenizer)
    prompts = [p.text for p in rendered(load_prompts(args.prompts), chat)[: args.count]]
    params = SamplingParams(num_samples=args.num_samples, temperature=1.0, max_new_tokens=24, seed=0)
    results: dict = {"arms": {}, "compile_seconds": {}}
    for repeat in range(args.repeats):
        baseline = None
        for path, batch_size, threads in arms(args):
            torch.set_num_threads(threads)
            generator = TransformersGenerator(
                model,
                tokenizer,
                batch_size=batch_size,
                stop_ids=chat.stop_token_ids(model),
                share_prompt_cache=path != "generate-per-sample",
            )
            name = f"{path} batch={batch_size} threads={threads}"
            with generate_options(model, path):
                if path == "generate-compiled" and repeat == 0:
                    start = time.perf_counter()
                    generator.generate(prompts[:batch_size], params)  # compiles for this batch shape
                    results["compile_seconds"][name] = round(time.perf_counter() - start, 1)
                row = measure(generator, prompts, params)
                if args.profile and repeat == args.repeats - 1:
                    print(f"torch profiler, {name}:\n{profiled(generator, prompts, params)}", flush=True)
            baseline = baseline or row
            row["ratio"] = round(row["samples_per_s"] / baseline["samples_per_s"], 3)
            row["cpu_ratio"] = round(row["samples_per_cpu_s"] / baseline["samples_per_cpu_s"], 3)
            results["arms"].setdefault(name, []).append(row)
            print(json.dumps({"repeat": repeat, "arm": name, **row}), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument(
        "--prompts", required=True, help="chat prompts JSONL (python -m larpo.tasks.arithmetic.chat)"
    )
    parser.add_argument("--count", type=int, default=32, help="prompts per measurement")
    parser.add_argument("--num-samples", type=int, default=4)
    parser.add_argument("--paths", type=lambda s: s.split(","), default=["generate-per-sample", "generate"])
    parser.add_argument(
        "--threads", type=lambda s: [int(x) for x in s.split(",")], default=[torch.get_num_threads()]
    )
    parser.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[64])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--profile", action="store_true", help="print each path's top operators (last repeat)"
    )
    args = parser.parse_args()
    unknown = set(args.paths) - set(PATHS)
    if unknown:
        parser.error(f"unknown paths {sorted(unknown)}; choose from {', '.join(PATHS)}")
    print(json.dumps(run_header(args.threads[0], {"": "MODEL_DIR"})), flush=True)
    results = run(args)
    summary = {
        name: {
            "samples_per_s": [row["samples_per_s"] for row in rows],
            "median_ratio": statistics.median(row["ratio"] for row in rows),
            "median_cpu_ratio": statistics.median(row["cpu_ratio"] for row in rows),
            "mean_new_tokens": rows[0]["mean_new_tokens"],
        }
        for name, rows in results["arms"].items()
    }
    load_after = load_average()
    print(
        json.dumps(
            {"summary": summary, "compile_seconds": results["compile_seconds"], "load_after": load_after}
        )
    )


if __name__ == "__main__":
    main()
