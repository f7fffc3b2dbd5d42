"""Cost of a larpo trainer step against list size m and response length R.

Run: python benchmarks/bench_scaling.py [--quick]
Writes docs/benchmarks/scaling.md and docs/benchmarks/scaling.png.

A fixed batch of B prompts, each with m candidates of exactly R tokens (EOS included), so nothing is padded
and a step processes B * m * (P + R) tokens. Each (m, R) runs in its own subprocess (peak RSS is per
configuration): ListwiseTrainer with reference log-probs precomputed, a few optimizer steps of which the
first is warm-up; the table gives the median step time and the time per processed token, which should
stay flat as m grows since the candidates are one flat batch of sequences.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from benchutil import mib, save_figure, write_markdown

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

HERE = Path(__file__).resolve().parent
SIZES = (2, 4, 8, 16)
LENGTHS = (16, 64, 256)


def build(spec: dict):
    """A ListwiseTrainer at one (m, R) with reference log-probs precomputed, and its first batch."""
    from benchutil import DIGITS, bench_llama
    from larpo.data import tokenize_list
    from larpo.tiny import char_tokenizer
    from larpo.trainer import ListwiseConfig, ListwiseTrainer

    tokenizer = char_tokenizer(DIGITS)
    m, length, prompt = spec["m"], spec["response"], spec["prompt"]
    model = bench_llama(len(tokenizer), spec["hidden"], spec["layers"], prompt + length + 8)
    rng = random.Random(0)

    def text(size: int) -> str:
        return "".join(rng.choice(DIGITS) for _ in range(size))

    examples = [
        tokenize_list(tokenizer, text(prompt), [text(length - 1) for _ in range(m)])
        for _ in range(spec["batch"] * spec["steps"])
    ]
    args = ListwiseConfig(
        output_dir=tempfile.mkdtemp(prefix="larpo-scaling-"),
        objective=spec["objective"],
        per_device_train_batch_size=spec["batch"],
        per_device_eval_batch_size=spec["batch"],
        max_steps=spec["steps"],
        learning_rate=1e-5,
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        logging_strategy="no",
        save_strategy="no",
        shared_prefix=spec.get("shared_prefix", True),
        seed=0,
    )
    trainer = ListwiseTrainer(model, args, examples, processing_class=tokenizer)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(spec["batch"])])
    return trainer, batch


def run_config(spec: dict) -> dict:
    """Memory of one (m, R), in its own subprocess: RSS growth over ``trainer.train()`` and peak RSS."""
    import torch

    from benchutil import PeakRSS, max_rss_bytes, rss_bytes

    torch.set_num_threads(spec["threads"])
    trainer, batch = build(spec)
    before = rss_bytes()
    with PeakRSS() as peak:
        trainer.train()
    return {
        "m": spec["m"],
        "response": spec["response"],
        "tokens": int(batch["attention_mask"].sum()),
        "response_tokens": int(batch["response_mask"].sum()),
        "growth": peak.peak - before,
        "max_rss": max_rss_bytes(),
    }


def time_grid(specs: list[dict], rounds: int) -> list[float]:
    """Median seconds of one optimizer step (log-probs, objective, backward, AdamW) per spec, in this
    process, with the specs interleaved round-robin (order reversed every other round) so that all of
    them see the same load on a shared machine."""
    import torch

    torch.set_num_threads(specs[0]["threads"])
    runs = []
    for spec in specs:
        trainer, batch = build(spec)
        model = trainer.model.train()
        runs.append((model, trainer, batch, torch.optim.AdamW(model.parameters(), lr=1e-5)))

    def step(run) -> float:
        model, trainer, batch, optimizer = run
        start = time.perf_counter()
        optimizer.zero_grad()
        trainer.compute_loss(model, batch).backward()
        optimizer.step()
        return time.perf_counter() - start

    for run in runs:  # warm-up
        step(run)
    times: list[list[float]] = [[] for _ in runs]
    for round_ in range(rounds):
        order = range(len(runs)) if round_ % 2 == 0 else reversed(range(len(runs)))
        for index in order:
            times[index].append(step(runs[index]))
    return [statistics.median(t) for t in times]


def spawn(spec: dict) -> dict:
    from benchutil import run_worker

    return run_worker(__file__, spec, f"m={spec['m']} R={spec['response']}")


def table(results: list[dict], sizes: tuple[int, ...]) -> list[str]:
    rows = [
        "| R | m | tokens/step | step (s) | us per token | per token / at m=2 | us per response token | "
        "peak RSS (MiB) | train growth (MiB) | growth / at m=2 |",
        "|---" * 10 + "|",
    ]
    for r in results:
        base = next(b for b in results if b["response"] == r["response"] and b["m"] == sizes[0])
        per_token = r["step_s"] / r["tokens"]
        rows.append(
            f"| {r['response']} | {r['m']} | {r['tokens']} | {r['step_s']:.3f} | {per_token * 1e6:.0f} | "
            f"{per_token / (base['step_s'] / base['tokens']):.2f} | "
            f"{r['step_s'] / r['response_tokens'] * 1e6:.0f} | {mib(r['max_rss'])} | {mib(r['growth'])} | "
            f"{r['growth'] / base['growth']:.2f} |"
        )
    return rows


def plot(results: list[dict], lengths: tuple[int, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=120)
    for length in lengths:
        rows = [r for r in results if r["response"] == length]
        ms = [r["m"] for r in rows]
        axes[0].plot(ms, [r["step_s"] / r["tokens"] * 1e6 for r in rows], marker="o", label=f"R = {length}")
        axes[1].plot(ms, [r["growth"] / 2**20 for r in rows], marker="o", label=f"R = {length}")
    for ax, title in (
        (axes[0], "time per processed token (us)"),
        (axes[1], "RSS growth during train() (MiB)"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["m"] for r in results}), [str(m) for m in sorted({r["m"] for r in results})])
        ax.set_xlabel("list size m")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[1].set_yscale("log")
    fig.suptitle("larpo ListwiseTrainer step against list size, fp32 CPU", fontsize=10)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="m in {2, 8}, R in {16, 64}, fewer steps")
    parser.add_argument("--objective", default="contrastive")
    parser.add_argument("--batch", type=int, default=2, help="prompts per step")
    parser.add_argument(
        "--rounds", type=int, default=None, help="timed steps per configuration (default 5, quick 3)"
    )
    parser.add_argument("--output", type=Path, default=Path("docs/benchmarks/scaling.md"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads per subprocess")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(run_config(json.loads(args.worker))), flush=True)
        return

    from benchutil import machine_info

    args.rounds = args.rounds or (3 if args.quick else 5)
    sizes = (2, 8) if args.quick else SIZES
    lengths = (16, 64) if args.quick else LENGTHS
    base = dict(
        hidden=256,
        layers=2,
        prompt=16,
        batch=args.batch,
        objective=args.objective,
        threads=args.threads,
        steps=2,
    )
    specs = [{**base, "m": m, "response": length} for length in lengths for m in sizes]
    results = []
    for spec in specs:
        result = spawn(spec)
        results.append(result)
        print(f"R={spec['response']:>3} m={spec['m']:>2}: growth {mib(result['growth'])} MiB", flush=True)
    for result, seconds in zip(results, time_grid(specs, args.rounds), strict=True):
        result["step_s"] = seconds
        print(f"R={result['response']:>3} m={result['m']:>2}: {seconds:.3f} s/step", flush=True)
    png = args.output.with_suffix(".png")
    plot(results, lengths, png)
    command = "python benchmarks/bench_scaling.py" + (" --quick" if args.quick else "")
    command += f" --objective {args.objective}" if args.objective != "contrastive" else ""
    command += f" --batch {args.batch}" if args.batch != 2 else ""
    command += f" --rounds {args.rounds}" if args.rounds != (3 if args.quick else 5) else ""
    lines = [
        "# Trainer step against list size m and response length R",
        "",
        f"Command: `{command}`. Machine: {machine_info(args.threads)}.",
        "",
        f"ListwiseTrainer, objective `{args.objective}`, reference log-probs precomputed; Llama hidden "
        f"{base['hidden']}, {base['layers']} layers, char vocabulary (16 tokens), fp32. B = {args.batch} prompts "
        f"of P = {base['prompt']} tokens per step, m candidates of exactly R tokens each (no padding); "
        f"Step time: all configurations built in one process, one warm-up step each, then {args.rounds} rounds "
        "of one step per configuration, round-robin (order reversed every other round) so that every "
        "configuration sees the same machine load; median per configuration. Memory: each configuration "
        f"trains {base['steps']} steps with `trainer.train()` in its own subprocess. Tokens = B * m * (P + R) sequence tokens (with the "
        "default `shared_prefix` the prompt is encoded once per list, see bench_shared_prefix.py); response tokens = B * m * R. Peak RSS is the whole process; train "
        "growth is the RSS peak during `train()` minus RSS just before it.",
        "",
        *table(results, sizes),
        "",
        f"![scaling]({png.name})",
        "",
    ]
    write_markdown(args.output, lines)


if __name__ == "__main__":
    main()
