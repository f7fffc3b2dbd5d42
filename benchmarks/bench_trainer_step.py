"""Trainer micro-benchmark: ListwiseTrainer steps on a Llama-style model, tokens/s and peak memory.

Run: python benchmarks/bench_trainer_step.py [--device cuda --dtype bfloat16] [--sizes 2 8 16] [--no-shared-prefix] [--logprob-chunk 4096] [--auto]
Prints one markdown row per list size m: optimizer steps/s, real (non-pad) training tokens/s, and peak
memory (CUDA: torch.cuda.max_memory_allocated; CPU: the process's max RSS). Used by
scripts/gpu_check.sh; the model is random (no download), with fixed-length responses so padding is zero.
"""

from __future__ import annotations

import argparse
import gc
import resource
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from larpo.tiny import tiny_llama
from larpo.trainer import ListwiseConfig, ListwiseTrainer


class _StepTimer(TrainerCallback):
    """Wall-clock time of each optimizer step (synchronised on CUDA)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._start)


def lists(m: int, count: int, prompt_len: int, response_len: int, vocab: int, seed: int) -> list[dict]:
    """``count`` synthetic list examples of ``m`` fixed-length candidates with random scores."""
    generator = torch.Generator().manual_seed(seed)

    def ids(n: int) -> list[int]:
        return torch.randint(3, vocab, (n,), generator=generator).tolist()

    return [
        {
            "prompt_ids": ids(prompt_len),
            "response_ids": [ids(response_len) for _ in range(m)],
            "scores": sorted(torch.rand(m, generator=generator).tolist(), reverse=True),
        }
        for _ in range(count)
    ]


def measure(args: argparse.Namespace, m: int) -> dict[str, float]:
    gc.collect()  # the previous size's trainer (model, AdamW state) must not count in this size's peak
    if args.device == "cuda":
        torch.cuda.empty_cache()
    model = tiny_llama(
        args.vocab, hidden_size=args.hidden, num_layers=args.layers, num_heads=args.hidden // 64,
        max_positions=args.prompt_len + args.response_len, seed=0,
    ).to(args.device)  # fmt: skip
    steps = args.warmup + args.steps
    data = lists(m, steps * args.batch, args.prompt_len, args.response_len, args.vocab, seed=m)
    config = ListwiseConfig(
        output_dir=str(Path(tempfile.gettempdir()) / "larpo_bench_trainer_step"),
        objective=args.objective,
        learning_rate=1e-5,
        per_device_train_batch_size=args.batch,
        per_device_eval_batch_size=args.batch,  # the (untimed) reference pass
        max_steps=steps,
        precompute_reference_logps=True,
        shared_prefix="auto" if args.auto else not args.no_shared_prefix,
        logprob_chunk_size="auto" if args.auto else args.logprob_chunk,
        bf16=args.dtype == "bfloat16",
        use_cpu=args.device == "cpu",
        logging_strategy="no",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=False,
    )
    timer = _StepTimer()
    trainer = ListwiseTrainer(model, config, data, callbacks=[timer])
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if args.profile:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if args.device == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as profiler:
            trainer.train()
        sort = "self_cuda_time_total" if args.device == "cuda" else "self_cpu_time_total"
        print(f"profile, m = {m}, {steps} steps:")
        print(profiler.key_averages().table(sort_by=sort, row_limit=args.profile))
    else:
        trainer.train()
    timed = timer.times[args.warmup :]
    seconds = sorted(timed)[len(timed) // 2]
    tokens = args.batch * m * (args.prompt_len + args.response_len)
    if args.device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"m": m, "step_s": seconds, "tokens_per_s": tokens / seconds, "peak_mib": peak,
            "settings": trainer.logprob_settings.describe()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16" if torch.cuda.is_available() else "float32")
    parser.add_argument("--objective", default="contrastive")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 8, 16])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--response-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--no-shared-prefix",
        action="store_true",
        help="shared_prefix=False: encode the prompt once per candidate",
    )
    parser.add_argument("--profile", type=int, default=0, help="print the N most expensive operators per m")
    parser.add_argument(
        "--logprob-chunk",
        type=int,
        default=0,
        help="logprob_chunk_size (0: the LM head on all positions at once)",
    )
    parser.add_argument(
        "--auto",
        action="store_true",
        help="shared_prefix and logprob_chunk_size at their defaults (auto), instead of the two flags above",
    )
    args = parser.parse_args()
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    settings = (
        "log-prob settings auto"
        if args.auto
        else f"shared_prefix {not args.no_shared_prefix}, logprob_chunk_size {args.logprob_chunk}"
    )
    print(f"device {name}, dtype {args.dtype}, objective {args.objective}, hidden {args.hidden}, "
          f"layers {args.layers}, vocab {args.vocab}, batch {args.batch} lists, prompt {args.prompt_len} + response "
          f"{args.response_len} tokens, {settings}, torch {torch.__version__}")  # fmt: skip
    print("| m | step (s) | tokens/s | cost per token vs first m | peak MiB | log-prob settings |")
    print("|---|---|---|---|---|---|")
    first = None
    for m in args.sizes:
        row = measure(args, m)
        first = first or row["tokens_per_s"]
        print(f"| {m} | {row['step_s']:.4f} | {row['tokens_per_s']:,.0f} | "
              f"{first / row['tokens_per_s']:.2f} | {row['peak_mib']:,.0f} | {row['settings']} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
