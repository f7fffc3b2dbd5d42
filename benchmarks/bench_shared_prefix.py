"""Trainer step with each list's prompt encoded once (``shared_prefix``) against once per candidate.

Run: python benchmarks/bench_shared_prefix.py [--quick]
Writes docs/benchmarks/shared_prefix.md.

B prompts of P tokens, each with m candidates of R tokens. Without sharing a step runs B * m * (P + R)
token positions through the model; with it B * (P - 1) + B * m * (R + 1). Both variants are built in one
process and timed round-robin (bench_scaling.time_grid), so they see the same machine load; the table
gives the ratio and checks that both give the same loss.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench_scaling import build, time_grid
from benchutil import machine_info

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def same_loss(specs: list[dict]) -> float:
    """Largest absolute difference between the first-batch losses of ``specs``."""
    import torch

    losses = []
    for spec in specs:
        trainer, batch = build(spec)
        with torch.no_grad():
            losses.append(float(trainer.compute_loss(trainer.model.eval(), batch)))
    return max(losses) - min(losses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="P in {16, 128}, m in {2, 8}")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path("docs/benchmarks/shared_prefix.md"))
    args = parser.parse_args()
    prompts = (16, 128) if args.quick else (16, 128, 512)
    sizes = (2, 8)
    base = dict(hidden=256, layers=2, response=64, batch=2, objective="contrastive", threads=args.threads, steps=1)
    rows = [
        "| P | m | once per candidate (s/step) | shared prefix (s/step) | speed-up | loss difference |",
        "|---|---|---|---|---|---|",
    ]
    for prompt in prompts:
        for m in sizes:
            specs = [{**base, "prompt": prompt, "m": m, "shared_prefix": shared} for shared in (False, True)]
            plain, shared = time_grid(specs, args.rounds)
            diff = same_loss(specs)
            rows.append(f"| {prompt} | {m} | {plain:.3f} | {shared:.3f} | {plain / shared:.2f}x | {diff:.1e} |")
            print(rows[-1], flush=True)
    command = "python benchmarks/bench_shared_prefix.py" + (" --quick" if args.quick else "")
    lines = [
        "# Shared-prefix log-probs: the prompt once per list",
        "",
        f"Command: `{command}`. Machine: {machine_info(args.threads)}.",
        "",
        f"ListwiseTrainer step (log-probs, contrastive loss, backward, AdamW), Llama hidden {base['hidden']}, "
        f"{base['layers']} layers, fp32, B = {base['batch']} prompts of P tokens, m candidates of R = "
        f"{base['response']} tokens; median of {args.rounds} round-robin steps per variant.",
        "",
        *rows,
        "",
    ]
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
