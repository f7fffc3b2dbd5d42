"""One ``larpo run`` iteration of a real chat model on CPU: seconds and share of each stage, and its rates.

    python benchmarks/bench_real_iteration.py runs/smollm2 \\
        --prompts runs/chat_arithmetic/train.jsonl --prompts-per-iteration 32 [--generator vllm]

Runs ``larpo.run.run`` on examples/chat/smollm2_arithmetic.yaml with the model, prompts, one iteration,
``--prompts-per-iteration`` prompts, no evaluation and a temporary run directory (``--keep DIR`` keeps
it). Stage seconds are the run's own (``log.jsonl``); ``setup`` is the rest of the wall time (loading the
model, checking the prompts). Rates:

- generation: samples (prompts x k, before duplicates are removed) per second of the generate stage;
- reference log-probs: tokens per second of the lists stage, counting each list's prompt once and every
  candidate's response ids (the prompt is encoded once per list);
- training: the same list tokens times ``epochs`` per second of the train stage (which also loads the
  trainable model and saves the checkpoint).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer

from benchutil import run_header
from larpo.run import run
from larpo.run.config import load_run_config

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "chat" / "smollm2_arithmetic.yaml"


def list_tokens(run_dir: Path, tokenizer) -> int:
    """Tokens of iteration 0's lists: each prompt once plus the response ids of every candidate."""
    total = 0
    for line in (run_dir / "iter_0" / "lists.jsonl").read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        total += len(tokenizer(item["prompt"], add_special_tokens=False)["input_ids"])
        ids = item.get("response_ids") or [
            tokenizer(r, add_special_tokens=False)["input_ids"] for r in item["responses"]
        ]
        total += sum(len(response) for response in ids)
    return total


def profile(run_dir: Path, config, wall: float) -> dict:
    """Stage seconds and shares from ``log.jsonl``, and the rates of the module docstring."""
    stages = {}
    for line in (run_dir / "log.jsonl").read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if entry.get("iteration") == 0 and "stage" in entry:
            stages[entry["stage"]] = entry["seconds"]
    stages = {"setup": round(wall - sum(stages.values()), 2), **stages}
    tokens = list_tokens(run_dir, AutoTokenizer.from_pretrained(config.model))
    samples = config.prompts_per_iteration * config.num_candidates
    return {
        "stage_seconds": stages,
        "stage_share": {name: round(seconds / wall, 3) for name, seconds in stages.items()},
        "wall_seconds": round(wall, 2),
        "generation_samples_per_s": round(samples / stages["generate"], 3),
        "reference_tokens_per_s": round(tokens / stages["lists"], 1),
        "training_tokens_per_s": round(tokens * config.epochs / stages["train"], 1),
        "samples": samples,
        "list_tokens": tokens,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument(
        "--prompts", required=True, help="chat prompts JSONL (python -m larpo.tasks.arithmetic.chat)"
    )
    parser.add_argument("--prompts-per-iteration", type=int, default=32)
    parser.add_argument("--generator", default="transformers", help="transformers or vllm")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--keep", type=Path, help="run directory to keep (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(run_header(args.threads, {"": "MODEL_DIR"})), flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = args.keep or Path(scratch) / "run"
        overrides = [
            f"model={args.model}", f"prompts={args.prompts}", f"output_dir={run_dir}", "iterations=1",
            f"prompts_per_iteration={args.prompts_per_iteration}", "eval_prompts=null",
            f"generator={args.generator}",
        ]  # fmt: skip
        config = load_run_config(EXAMPLE, overrides)
        start = time.perf_counter()
        run(config)
        result = profile(run_dir, config, time.perf_counter() - start)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
