"""Samples/s of larpo's vLLM backend (CPU build) against its transformers backend on a real chat model,
as ratios measured in one run.

    python benchmarks/bench_vllm_cpu.py runs/smollm2 \\
        --prompts runs/chat_arithmetic/train.jsonl --vllm-python "$VLLM_VENV"/bin/python \\
        --threads 1 --repeats 3

Both backends sample the same prompts (the first ``--count`` of the file, rendered with the model's chat
template here), ``--num-samples`` each at temperature 1 and ``max_new_tokens`` 24, stopping at the chat
template's end-of-turn token (``<|im_end|>`` for ChatML) as larpo's runs do:

- ``transformers``: ``TransformersGenerator`` (``model.generate``, one call of ``--batch-size`` prompts)
  with this interpreter;
- ``vllm``: ``VLLMGenerator`` with ``--vllm-python``, an environment holding ``vllm`` (on a CPU machine,
  ``vllm-cpu``; it pins its own transformers, so it gets its own virtual environment, ``VLLM_VENV`` in
  docs/vllm.md's steps). This checkout's
  ``src`` is put first on its path. ``--vllm-kwargs`` go to ``vllm.LLM`` (default :data:`WHOLE_PREFILLS`).

Each backend runs in a fresh process per repeat, one after the other (the order alternates between
repeats), and a repeat's ratio is vLLM's samples/s over transformers' in that repeat, so load shared by
both cancels out. Start-up (loading the model; for vLLM, starting the engine) and one untimed warm-up
call on one prompt are outside samples/s; start-up is reported apart. ``samples_per_cpu_s`` counts the CPU
time of the worker and its child processes (vLLM runs its engine in child processes). Prints the run
header, one JSON line per measurement, then a summary with the median ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path

from benchutil import load_average, run_header, run_worker

BACKENDS = ("transformers", "vllm")
VLLM_CPU_ENV = {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "VLLM_CPU_KVCACHE_SPACE": "1"}
"""Added to each worker's environment: vLLM's CPU engine is not pinned to cores, so its worker runs the
``OMP_NUM_THREADS`` threads (``--threads``) wherever the OS puts them, like the transformers worker; 1 GiB
of KV cache."""
WHOLE_PREFILLS = {"enable_chunked_prefill": False, "max_model_len": 2048}
"""Default engine arguments: no prompt's prefill is split over engine steps (vllm-cpu 0.32 fails seeded
sampling with "CPU Generator does not use offset" when one is, e.g. 32 prompts x 4 samples of 47 tokens
under the default 4,096-token step budget); without chunked prefill vLLM needs ``max_model_len`` within
that budget (SmolLM2's is 8,192)."""


def tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process and its live child processes."""
    import psutil

    total = 0.0
    process = psutil.Process()
    for proc in [process, *process.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def build_generator(spec: dict):
    """The backend's generator on ``spec["model"]`` (the model or engine loaded here)."""
    if spec["backend"] == "vllm":
        from larpo.generation import VLLMGenerator

        return VLLMGenerator(spec["model"], dtype="float32", engine_kwargs=spec["vllm_kwargs"])
    import torch

    from larpo.chat import ChatFormat
    from larpo.generation import TransformersGenerator
    from larpo.model_io import load_policy

    torch.set_num_threads(spec["threads"])
    model, tokenizer = load_policy(spec["model"], dtype="float32")
    stop_ids = ChatFormat(tokenizer).stop_token_ids(model)
    return TransformersGenerator(model, tokenizer, batch_size=spec["batch_size"], stop_ids=stop_ids)


def measure(generator, prompts: list[str], params) -> dict:
    """Samples/s of one ``generate`` call, and what the samples were like (counting duplicates)."""
    start, cpu_start = time.perf_counter(), tree_cpu_seconds()
    out = generator.generate(prompts, params)
    seconds, cpu_seconds = time.perf_counter() - start, tree_cpu_seconds() - cpu_start
    samples = params.num_samples * len(prompts)
    weighted = [
        (count, len(ids), done)
        for counts, rows, flags in zip(out.counts, out.token_ids, out.finished, strict=True)
        for count, ids, done in zip(counts, rows, flags, strict=True)
    ]
    return {
        "seconds": round(seconds, 2),
        "samples_per_s": round(samples / seconds, 3),
        "samples_per_cpu_s": round(samples / cpu_seconds, 3),
        "mean_new_tokens": round(sum(c * n for c, n, _ in weighted) / samples, 2),
        "finished_fraction": round(sum(c for c, _, done in weighted if done) / samples, 3),
        "distinct_fraction": round(len(weighted) / samples, 3),
    }


def worker(spec: dict) -> dict:
    """One backend's start-up seconds and one timed ``generate`` of all prompts."""
    from larpo.generation import SamplingParams

    params = SamplingParams(
        num_samples=spec["num_samples"], temperature=1.0, max_new_tokens=spec["max_new_tokens"], seed=0
    )
    start = time.perf_counter()
    with build_generator(spec) as generator:
        startup_seconds = time.perf_counter() - start
        generator.generate(spec["prompts"][:1], params)  # warm-up, not timed
        row = measure(generator, spec["prompts"], params)
        row["stop_ids"] = sorted(generator.stop_ids)
    versions = {name: _version(name) for name in ("torch", "transformers", "vllm-cpu", "vllm")}
    return {"startup_seconds": round(startup_seconds, 1), **row, "versions": versions}


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def rendered_prompts(model: str, path: str, count: int) -> list[str]:
    from transformers import AutoTokenizer

    from larpo.chat import ChatFormat
    from larpo.prompts import load_prompts, rendered

    chat = ChatFormat(AutoTokenizer.from_pretrained(model))
    return [p.text for p in rendered(load_prompts(path), chat)[:count]]


def run(args) -> dict[str, list[dict]]:
    spec = {
        "model": str(Path(args.model).resolve()),
        "prompts": rendered_prompts(args.model, args.prompts, args.count),
        "num_samples": args.num_samples,
        "max_new_tokens": args.max_new_tokens,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "vllm_kwargs": json.loads(args.vllm_kwargs),
    }
    pythons = {"transformers": sys.executable, "vllm": args.vllm_python}
    rows: dict[str, list[dict]] = {name: [] for name in BACKENDS}
    for repeat in range(args.repeats):
        order = BACKENDS if repeat % 2 == 0 else BACKENDS[::-1]
        measured = {}
        for backend in order:
            measured[backend] = run_worker(
                __file__,
                {**spec, "backend": backend},
                f"{backend} (repeat {repeat})",
                python=pythons[backend],
                extra_env=VLLM_CPU_ENV,
            )
            print(json.dumps({"repeat": repeat, "backend": backend, **measured[backend]}), flush=True)
        ratio = measured["vllm"]["samples_per_s"] / measured["transformers"]["samples_per_s"]
        cpu_ratio = measured["vllm"]["samples_per_cpu_s"] / measured["transformers"]["samples_per_cpu_s"]
        measured["vllm"].update(ratio=round(ratio, 3), cpu_ratio=round(cpu_ratio, 3))
        ratios = {
            "vllm_over_transformers": measured["vllm"]["ratio"],
            "cpu_ratio": measured["vllm"]["cpu_ratio"],
        }
        print(json.dumps({"repeat": repeat, **ratios, "load": load_average()}), flush=True)
        for backend in BACKENDS:
            rows[backend].append(measured[backend])
    return rows


def summary(rows: dict[str, list[dict]]) -> dict:
    out = {
        backend: {
            key: [row[key] for row in rows[backend]]
            for key in ("samples_per_s", "startup_seconds", "mean_new_tokens", "finished_fraction")
        }
        | {"versions": rows[backend][0]["versions"]}
        for backend in BACKENDS
    }
    out["median_ratio_vllm_over_transformers"] = statistics.median(row["ratio"] for row in rows["vllm"])
    out["median_cpu_ratio"] = statistics.median(row["cpu_ratio"] for row in rows["vllm"])
    return out


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print("RESULT " + json.dumps(worker(json.loads(sys.argv[2]))), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="Hugging Face model directory")
    parser.add_argument(
        "--prompts", required=True, help="chat prompts JSONL (python -m larpo.tasks.arithmetic.chat)"
    )
    parser.add_argument(
        "--vllm-python", required=True, help="python of an environment with vllm (e.g. VLLM_VENV/bin/python)"
    )
    parser.add_argument("--count", type=int, default=32, help="prompts per measurement")
    parser.add_argument("--num-samples", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads of each backend")
    parser.add_argument("--batch-size", type=int, default=64, help="prompts per model.generate call")
    parser.add_argument(
        "--vllm-kwargs",
        default=json.dumps(WHOLE_PREFILLS),
        help="vllm.LLM arguments as JSON (default: %(default)s)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not os.access(args.vllm_python, os.X_OK):
        parser.error(f"--vllm-python {args.vllm_python}: not an executable")
    placeholders = {"": "MODEL_DIR", "--vllm-python": "VLLM_VENV/bin/python"}
    print(json.dumps(run_header(args.threads, placeholders)), flush=True)
    rows = run(args)
    print(json.dumps({"summary": summary(rows), "load_after": load_average()}), flush=True)


if __name__ == "__main__":
    main()
