"""Training cost of larpo's ListwiseTrainer against TRL's DPOTrainer on identical pairwise data.

Run: python benchmarks/bench_trl_cost.py [--quick] [--repeats 3]
Writes docs/benchmarks/trl_cost.md and docs/benchmarks/trl_cost.png.
GPU: python benchmarks/bench_trl_cost.py --device cuda [--dtype bfloat16] [--larpo-variants shared,plain]
(setting ``gpu``: hidden 1024 x 8 layers, 32k vocab, B=8 pairs, P=128, R=256; writes trl_cost_gpu.md).

Both arms train the same randomly initialised Llama (fp32, CPU) on the same pairs (m = 2): synthetic
prompts and responses of fixed length, so no sequence is padded and both trainers see exactly the same
tokens. larpo runs objective ``pairwise`` (DPO: -logsigmoid(beta * margin)) with reference log-probs
precomputed before training; TRL runs ``loss_type=["sigmoid"]`` with ``precompute_ref_log_probs=True``.
Every arm runs in its own subprocess so that peak RSS is per arm; the order of the arms alternates across
repeats, and ratios are taken between the two arms of the same repeat (the machine is shared).

On CUDA both trainers keep fp32 weights on the GPU with ``bf16=True`` (accelerate's bf16 autocast, fp32
master weights and AdamW state); memory is ``torch.cuda.max_memory_allocated()`` during ``train()``.
larpo runs as ``larpo`` (``shared_prefix=True``: the prompt is encoded once per pair) and, with
``--larpo-variants shared,plain,auto``, also as ``larpo_plain`` (``shared_prefix=False``: once per
candidate, as TRL does) and ``larpo_auto`` (both log-prob settings at their default, ``auto``: what
larpo.auto_settings picks for the device and pairs); the other arms set ``logprob_chunk_size=0``. Each larpo
arm is compared with the TRL arm of the same repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from benchutil import mib, write_markdown
from trl_cost_arm import LARPO_VARIANTS, run_arm
from trl_cost_report import gpu_machine_info, page, plot, summarise

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


SETTINGS = {
    "char": dict(name="char vocab, R=48", vocab=0, batch=4, prompt=16, response=48),
    "8k": dict(name="8k vocab, R=48", vocab=8000, batch=4, prompt=16, response=48),
    "32k": dict(name="32k vocab, R=48", vocab=32000, batch=4, prompt=16, response=48),
    "long": dict(name="char vocab, R=240", vocab=0, batch=2, prompt=16, response=240),
    "longprompt": dict(name="32k vocab, P=240, R=16", vocab=32000, batch=2, prompt=240, response=16),
    # the GPU setting (the size of benchmarks/bench_trainer_step.py's default model)
    "gpu": dict(
        name="32k vocab, P=128, R=256",
        vocab=32000,
        batch=8,
        prompt=128,
        response=256,
        hidden=1024,
        layers=8,
        steps=10,
        warmup=3,
    ),
}


def settings(
    names: list[str], quick: bool, steps: int | None = None, warmup: int | None = None
) -> list[dict]:
    """The measured settings: vocabulary, batch of pairs, prompt and response lengths (tokens), model size."""
    base = dict(hidden=256, layers=4, steps=5 if quick else 6, warmup=2)
    overrides = {k: v for k, v in (("steps", steps), ("warmup", warmup)) if v is not None}
    return [{**base, **SETTINGS[name], **overrides} for name in names]


def arms_of(variants: list[str]) -> tuple[str, ...]:
    """The arms of a run: one larpo arm per ``--larpo-variants`` entry, then TRL."""
    return (*(LARPO_VARIANTS[v] for v in variants), "trl")


def spawn(spec: dict) -> dict:
    from benchutil import run_worker

    return run_worker(__file__, spec, f"{spec['arm']} / {spec['name']}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the char setting only, fewer steps, 2 repeats")
    parser.add_argument(
        "--settings",
        nargs="+",
        choices=sorted(SETTINGS),
        default=None,
        help="default: char 8k (quick: char); with --device cuda: gpu",
    )
    parser.add_argument("--repeats", type=int, default=None, help="subprocess pairs per setting (default 3)")
    parser.add_argument("--output", type=Path, default=None, help="default docs/benchmarks/trl_cost.md "
                        "(--device cuda: docs/benchmarks/trl_cost_gpu.md)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="torch threads per subprocess")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default=None,
        help="bfloat16: bf16=True in both trainers (fp32 weights, bf16 autocast); default float32 on cpu, "
        "bfloat16 on cuda",
    )
    parser.add_argument(
        "--larpo-variants",
        default=None,
        help="comma-separated larpo arms: shared (shared_prefix=True, arm larpo), plain (shared_prefix=False, "
        "arm larpo_plain), auto (the defaults, arm larpo_auto); default shared on cpu, shared,plain on cuda",
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="optimizer steps per run (default: the setting's)"
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed first steps (default: the setting's)"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="start no further repeat when the last one would end past this many seconds (at least 1 repeat)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    variants = (args.larpo_variants or ("shared,plain" if args.device == "cuda" else "shared")).split(",")
    unknown = [v for v in variants if v not in LARPO_VARIANTS]
    if unknown or not variants:
        parser.error(f"--larpo-variants: unknown {unknown}, choose from {sorted(LARPO_VARIANTS)}")
    args.arms = arms_of(variants)
    return args


def print_result(repeat: int, result: dict) -> None:
    memory = (
        f"peak GPU {mib(result['gpu_peak_train'])} MiB in train()"
        if "gpu_peak_train" in result
        else f"max RSS {mib(result['max_rss'])} MiB"
    )
    print(
        f"repeat {repeat} {result['name']:>20} {result['arm']:>5}: first loss {result['first_loss']:.6f} "
        f"{result['tokens_per_s']:.0f} tok/s, {memory}",
        flush=True,
    )


def measure(
    chosen: list[dict], arms: tuple[str, ...], repeats: int, common: dict, max_seconds: float | None
) -> tuple[dict[str, list[dict]], int]:
    """Every arm of every setting, ``repeats`` times with the arm order alternating, unless the next repeat
    would end past ``max_seconds``; the results per setting and the repeats done."""
    results: dict[str, list[dict]] = {s["name"]: [] for s in chosen}
    start = time.monotonic()
    for repeat in range(repeats):
        repeat_start = time.monotonic()
        for setting in chosen:
            for arm in arms if repeat % 2 == 0 else arms[::-1]:
                result = spawn({**setting, "arm": arm, **common})
                results[setting["name"]].append(result)
                print_result(repeat, result)
        now = time.monotonic()
        if max_seconds and repeat + 1 < repeats and now + (now - repeat_start) - start > max_seconds:
            print(
                f"stopping after {repeat + 1} of {repeats} repeats (--max-seconds {max_seconds:g})",
                flush=True,
            )
            return results, repeat + 1
    return results, repeats


def command_of(args: argparse.Namespace) -> str:
    """The command line that reproduces this run, with the options given."""
    command = "python benchmarks/bench_trl_cost.py" + (" --quick" if args.quick else "")
    command += f" --repeats {args.repeats}" if args.repeats else ""
    command += f" --settings {' '.join(args.settings)}" if args.settings else ""
    command += " --device cuda" if args.device == "cuda" else ""
    command += f" --dtype {args.dtype}" if args.dtype else ""
    command += f" --larpo-variants {args.larpo_variants}" if args.larpo_variants else ""
    command += f" --steps {args.steps}" if args.steps is not None else ""
    command += f" --warmup {args.warmup}" if args.warmup is not None else ""
    return command


def main() -> None:
    args = parse_args()
    if args.worker:
        print("RESULT " + json.dumps(run_arm(json.loads(args.worker))), flush=True)
        return

    from benchutil import machine_info

    cuda = args.device == "cuda"
    dtype = args.dtype or ("bfloat16" if cuda else "float32")
    output = args.output or Path("docs/benchmarks/trl_cost_gpu.md" if cuda else "docs/benchmarks/trl_cost.md")
    repeats = args.repeats or (2 if args.quick else 3)
    names = args.settings or (["gpu"] if cuda else ["char"] if args.quick else ["char", "8k"])
    chosen = settings(names, args.quick, args.steps, args.warmup)
    common = {"threads": args.threads}
    if cuda or dtype != "float32":
        common.update(device=args.device, dtype=dtype)
    results, done = measure(chosen, args.arms, repeats, common, args.max_seconds)
    summaries = [summarise(results[s["name"]], s, arm) for s in chosen for arm in args.arms[:-1]]
    png = output.with_suffix(".png")
    first = next(iter(results.values()))[0]
    title = "larpo ListwiseTrainer (pairwise) vs TRL DPOTrainer, m = 2, " + (
        f"{dtype} ({'bf16 autocast, ' if dtype == 'bfloat16' else ''}{first['device_name']})"
        if cuda
        else "fp32 CPU" if dtype == "float32" else f"{dtype} autocast, CPU"
    )  # fmt: skip
    plotted = plot(chosen, results, args.arms, png, title)
    machine = gpu_machine_info(first, args.threads) if cuda else machine_info(args.threads)
    lines = page(summaries, results, args.arms, chosen, dtype, done, command_of(args), machine,
                 png if plotted else None)  # fmt: skip
    write_markdown(output, lines)
    output.with_suffix(".json").write_text(json.dumps(summaries, indent=1))


if __name__ == "__main__":
    main()
