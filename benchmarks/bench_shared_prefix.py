"""Trainer step with each list's prompt encoded once (``shared_prefix``) against once per candidate.

Run: python benchmarks/bench_shared_prefix.py [--quick]
Writes docs/benchmarks/shared_prefix.md.

B prompts of P tokens, each with m candidates of R tokens. Without sharing a step runs B * m * (P + R)
token positions through the model; with it B * (P - 1) + B * m * (R + 1). Both variants are built in one
process and timed round-robin (bench_scaling.time_grid), so they see the same machine load; the table
gives the ratio and the largest difference between the two paths' log-probs (float rounding).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench_scaling import build, time_grid
from benchutil import machine_info, write_markdown

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def logp_difference(spec: dict) -> float:
    """Largest absolute difference between the two paths' candidate log-probs on the first batch."""
    import torch

    from larpo.logprobs import list_logps

    trainer, batch = build(spec)
    with torch.no_grad():
        plain, shared = (list_logps(trainer.model.eval(), batch, shared_prefix=s)[0] for s in (False, True))
    return float((plain - shared).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="P in {16, 128}, m in {2, 8}")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--output", type=Path, default=Path("docs/benchmarks/shared_prefix.md"))
    args = parser.parse_args()
    prompts = (16, 128) if args.quick else (16, 128, 512)
    sizes = (2, 8)
    base = dict(
        hidden=256, layers=2, response=64, batch=2, objective="contrastive", threads=args.threads, steps=1
    )
    rows = [
        "| P | m | once per candidate (s/step) | shared prefix (s/step) | speed-up | max log-prob difference |",
        "|---|---|---|---|---|---|",
    ]
    for prompt in prompts:
        for m in sizes:
            specs = [{**base, "prompt": prompt, "m": m, "shared_prefix": shared} for shared in (False, True)]
            plain, shared = time_grid(specs, args.rounds)
            diff = logp_difference(specs[0])
            rows.append(
                f"| {prompt} | {m} | {plain:.3f} | {shared:.3f} | {plain / shared:.2f}x | {diff:.1e} |"
            )
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
    write_markdown(args.output, lines)


if __name__ == "__main__":
    main()
