"""Micro-benchmark: objective forward+backward time against list size, and the trainer step.

Run: python benchmarks/bench_losses.py [--repeats 50]
Writes docs/benchmarks/losses.md. Times are medians on this machine; the tables also give ratios
against a baseline measured in the same run (pairwise at the same m; the trainer at m = 2), since
shared machines are noisy.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchutil import write_markdown  # noqa: E402
from larpo.data import tokenize_list  # noqa: E402
from larpo.losses import OBJECTIVES  # noqa: E402
from larpo.tiny import char_tokenizer, tiny_llama  # noqa: E402
from larpo.trainer import (
    ListwiseConfig,  # noqa: E402
    ListwiseTrainer,  # noqa: E402
)

SIZES = (2, 4, 8, 16)


def median_seconds(step, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_objectives(repeats: int, batch: int = 64) -> list[str]:
    gen = torch.Generator().manual_seed(0)
    rows = [
        "| objective | "
        + " | ".join(f"m={m} (us)" for m in SIZES)
        + " | "
        + " | ".join(f"m={m} / pairwise" for m in SIZES)
        + " |",
        "|---" * (1 + 2 * len(SIZES)) + "|",
    ]
    results: dict[str, dict[int, float]] = {}
    for name, objective in OBJECTIVES.items():
        results[name] = {}
        for m in SIZES:
            policy = (-20 * torch.rand(batch, m, generator=gen)).requires_grad_()
            reference = -20 * torch.rand(batch, m, generator=gen)
            lengths = torch.randint(1, 30, (batch, m), generator=gen).float()
            scores = torch.randn(batch, m, generator=gen).sort(dim=1, descending=True).values

            def step(policy=policy, reference=reference, lengths=lengths, scores=scores, objective=objective):
                policy.grad = None
                objective(policy, reference, 0.1, None, scores=scores, lengths=lengths).backward()

            results[name][m] = median_seconds(step, repeats)
    for name, by_size in results.items():
        times = " | ".join(f"{by_size[m] * 1e6:.0f}" for m in SIZES)
        ratios = " | ".join(f"{by_size[m] / results['pairwise'][m]:.2f}" for m in SIZES)
        rows.append(f"| {name} | {times} | {ratios} |")
    return rows


def bench_trainer(repeats: int, lists: int = 8, answer_digits: int = 8) -> list[str]:
    tokenizer = char_tokenizer("0123456789+=")
    rows = [
        "| m | step (ms) | candidate tokens | us per candidate token | step / step at m=2 | per token / at m=2 |",
        "|---|---|---|---|---|---|",
    ]
    base = None
    for m in SIZES:
        model = tiny_llama(len(tokenizer), hidden_size=128, num_layers=2, num_heads=2)
        gen = torch.Generator().manual_seed(m)
        examples = []
        for i in range(lists):
            answers = [
                "".join(str(d) for d in torch.randint(0, 10, (answer_digits,), generator=gen).tolist())
                for _ in range(m)
            ]
            examples.append(
                tokenize_list(tokenizer, f"{1000 + i}+{2000 + i}=", answers, list(range(m, 0, -1)))
            )
        args = ListwiseConfig(
            output_dir=str(Path(tempfile.gettempdir()) / "larpo-bench"),
            objective="listmle",
            use_cpu=True,
            report_to="none",
            disable_tqdm=True,
            per_device_train_batch_size=lists,
        )
        trainer = ListwiseTrainer(model, args, examples)
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(lists)])
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        model.train()

        def step(model=model, batch=batch, trainer=trainer, optimizer=optimizer):
            optimizer.zero_grad()
            trainer.compute_loss(model, batch).backward()
            optimizer.step()

        seconds = median_seconds(step, max(5, repeats // 5))
        tokens = int(batch["attention_mask"].sum())
        per_token = seconds / tokens
        base = base or (seconds, per_token)
        rows.append(
            f"| {m} | {seconds * 1e3:.1f} | {tokens} | {per_token * 1e6:.1f} | "
            f"{seconds / base[0]:.2f} | {per_token / base[1]:.2f} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--output", type=Path, default=Path("docs/benchmarks/losses.md"))
    args = parser.parse_args()
    torch.manual_seed(0)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    lines = [
        "# Objective and trainer micro-benchmark",
        "",
        f"Command: `python benchmarks/bench_losses.py --repeats {args.repeats}`. Machine: {machine}. "
        "Medians over repeats; fp32 on CPU.",
        "",
        "## Objective forward+backward, 64 lists of m candidates",
        "",
        *bench_objectives(args.repeats),
        "",
        "## Trainer step (log-probs, objective, backward, AdamW) against list size",
        "",
        "8 lists per step, tiny Llama (hidden 128, 2 layers), responses of 8 digits + EOS, ListMLE.",
        "",
        *bench_trainer(args.repeats),
        "",
    ]
    write_markdown(args.output, lines)


if __name__ == "__main__":
    main()
