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
import contextlib
import hashlib
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
ARMS = ("larpo", "trl")
# --larpo-variants: larpo arm of each ListwiseConfig.shared_prefix setting
LARPO_VARIANTS = {"shared": "larpo", "plain": "larpo_plain", "auto": "larpo_auto"}
# (shared_prefix, logprob_chunk_size) of each larpo arm
ARM_SETTINGS = {"larpo": (True, 0), "larpo_plain": (False, 0), "larpo_auto": ("auto", "auto")}
ARM_LABELS = {"larpo": "larpo", "larpo_plain": "larpo, shared_prefix=False", "larpo_auto": "larpo, auto",
              "trl": "TRL DPO"}  # fmt: skip
BETA = 0.1
LR = 1e-5


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


# ----------------------------------------------------------------------------- one arm (subprocess)
def synthetic_text(spec: dict, alphabet: str) -> list[tuple[str, str, str]]:
    """(prompt, chosen, rejected) of fixed lengths; responses are one token short of R (EOS is added)."""
    rng = random.Random(1234)

    def text(length: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(length))

    count = spec["batch"] * spec["steps"]
    return [
        (text(spec["prompt"]), text(spec["response"] - 1), text(spec["response"] - 1)) for _ in range(count)
    ]


def ids_digest(rows: list[tuple[list[int], list[int], list[int]]]) -> str:
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def run_arm(spec: dict) -> dict:
    """Build the trainer of ``spec["arm"]``, check its first-batch loss, train, and report cost."""
    import torch

    device = spec.get("device", "cpu")
    cuda = device == "cuda"
    try:
        import trl  # noqa: F401  (both arms import both libraries, so their baseline RSS is the same)
    except ImportError:
        if not cuda or spec["arm"] == "trl":  # on a GPU image without trl the larpo arms still run
            raise

    import larpo  # noqa: F401
    from benchutil import DIGITS, PeakRSS, StepTimer, bench_llama, max_rss_bytes, rss_bytes, wide_alphabet
    from larpo.tiny import char_tokenizer

    torch.set_num_threads(spec["threads"])
    bf16 = spec.get("dtype", "float32") == "bfloat16"
    if cuda and not torch.cuda.is_available():
        raise RuntimeError("--device cuda but torch.cuda.is_available() is False")

    def autocast():
        """The forward's precision regime in training (accelerate's bf16 autocast with bf16=True)."""
        return torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    alphabet = wide_alphabet(spec["vocab"]) if spec["vocab"] else DIGITS
    tokenizer = char_tokenizer(alphabet)
    model = bench_llama(len(tokenizer), spec["hidden"], spec["layers"], spec["prompt"] + spec["response"] + 8)
    if cuda:  # before the trainer is built: larpo precomputes reference log-probs in its constructor
        model = model.to(device)
    data = synthetic_text(spec, alphabet)
    out_dir = tempfile.mkdtemp(prefix="larpo-bench-")
    common = dict(
        output_dir=out_dir,
        beta=BETA,
        learning_rate=LR,
        per_device_train_batch_size=spec["batch"],
        per_device_eval_batch_size=spec["batch"],
        max_steps=spec["steps"],
        use_cpu=not cuda,
        bf16=bf16,
        gradient_checkpointing=False,
        report_to="none",
        disable_tqdm=True,
        logging_strategy="no",
        save_strategy="no",
        dataloader_num_workers=0,
        seed=0,
    )
    rss_start = rss_bytes()
    larpo_arm = spec["arm"] in LARPO_VARIANTS.values()
    if larpo_arm:
        from larpo.data import tokenize_list
        from larpo.trainer import ListwiseConfig, ListwiseTrainer

        examples = [tokenize_list(tokenizer, p, [c, r]) for p, c, r in data]
        shared, chunk = ARM_SETTINGS[spec["arm"]]
        args = ListwiseConfig(objective="pairwise", shared_prefix=shared, logprob_chunk_size=chunk, **common)
        # The reference pass runs in the constructor, before accelerate wraps the model: run it under the
        # training autocast, as TRL's precompute does (accelerator.autocast()).
        with autocast():
            trainer = ListwiseTrainer(model, args, examples, processing_class=tokenizer)
        rows = trainer.train_dataset
        settings = trainer.logprob_settings.describe()  # auto decided
        token_rows = [(e["prompt_ids"], *e["response_ids"]) for e in rows]
        reference = [list(e["reference_logps"]) for e in rows]
    else:
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer

        settings = None

        dataset = Dataset.from_dict(
            {
                "prompt": [p for p, _, _ in data],
                "chosen": [c for _, c, _ in data],
                "rejected": [r for *_, r in data],
            }
        )
        args = DPOConfig(
            loss_type=["sigmoid"],
            precompute_ref_log_probs=True,
            precompute_ref_batch_size=spec["batch"],
            padding_free=False,
            max_length=None,
            **common,
        )
        trainer = DPOTrainer(model, args=args, train_dataset=dataset, processing_class=tokenizer)
        rows = trainer.train_dataset
        token_rows = [(e["prompt_ids"], e["chosen_ids"], e["rejected_ids"]) for e in rows]
        reference = [[e["ref_chosen_logps"], e["ref_rejected_logps"]] for e in rows]

    # Equivalence: the loss of the first batch before any update (policy == reference, so log 2).
    batch = trainer.data_collator([rows[i] for i in range(spec["batch"])])
    tokens_per_step = int(batch["attention_mask"].sum())
    if cuda:
        batch = {k: v.to(trainer.args.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    with torch.no_grad(), autocast():
        first_loss = float(trainer.compute_loss(trainer.model, batch))
    if larpo_arm:
        trainer._stored_metrics.clear()
    else:
        trainer._metrics["train"].clear()

    timer = StepTimer()
    trainer.add_callback(timer)
    gpu: dict = {}
    if cuda:
        torch.cuda.synchronize()
        gpu["gpu_peak_before_train"] = torch.cuda.max_memory_allocated()  # model, reference pass, first loss
        gpu["gpu_before_train"] = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    rss_before_train = rss_bytes()
    with PeakRSS() as peak:
        result = trainer.train()
    if cuda:
        torch.cuda.synchronize()
        gpu["gpu_peak_train"] = torch.cuda.max_memory_allocated()
        gpu["device_name"] = torch.cuda.get_device_name()
        gpu["torch"] = f"{torch.__version__} (CUDA {torch.version.cuda})"
    seconds, steps = timer.seconds_after(spec["warmup"])
    return {
        "arm": spec["arm"],
        "name": spec["name"],
        "first_loss": first_loss,
        "train_loss": result.training_loss,
        "tokens_per_step": tokens_per_step,
        "tokens_per_s": tokens_per_step * steps / seconds,
        "step_s": seconds / steps,
        "ids": ids_digest(token_rows),
        "reference": reference[: spec["batch"]],
        "rss_start": rss_start,
        "rss_before_train": rss_before_train,
        "peak_train": peak.peak,
        "max_rss": max_rss_bytes(),
        "logprob_settings": settings,
        **gpu,
    }


# ----------------------------------------------------------------------------- driver
def spawn(spec: dict) -> dict:
    from benchutil import run_worker

    return run_worker(__file__, spec, f"{spec['arm']} / {spec['name']}")


def summarise(results: list[dict], setting: dict, larpo_arm: str = "larpo") -> dict:
    """Medians and per-repeat ratios of ``larpo_arm`` against TRL (keys ``larpo`` and ``trl``)."""
    slots = {"larpo": larpo_arm, "trl": "trl"}
    by_slot = {slot: [r for r in results if r["arm"] == arm] for slot, arm in slots.items()}
    pairs = list(zip(by_slot["larpo"], by_slot["trl"], strict=True))

    def med(slot: str, key: str) -> float:
        return statistics.median(r[key] for r in by_slot[slot])

    def ratio(key: str, fn=lambda r, k: r[k]) -> float:
        return statistics.median(fn(a, key) / fn(b, key) for a, b in pairs)

    def growth(r: dict, _key: str) -> float:
        return r["peak_train"] - r["rss_before_train"]

    def gpu_growth(r: dict, _key: str) -> float:
        return r["gpu_peak_train"] - r["gpu_before_train"]

    ref_diff = max(
        abs(x - y)
        for a, b in pairs
        for row_a, row_b in zip(a["reference"], b["reference"], strict=True)
        for x, y in zip(row_a, row_b, strict=True)
    )
    summary = {
        "setting": setting,
        "repeats": len(pairs),
        "same_ids": all(a["ids"] == b["ids"] for a, b in pairs),
        "tokens_per_step": by_slot["larpo"][0]["tokens_per_step"],
        "first_loss": {slot: by_slot[slot][0]["first_loss"] for slot in slots},
        "train_loss": {slot: med(slot, "train_loss") for slot in slots},
        "ref_max_abs_diff": ref_diff,
        "tokens_per_s": {slot: med(slot, "tokens_per_s") for slot in slots},
        "peak_train": {slot: med(slot, "peak_train") for slot in slots},
        "max_rss": {slot: med(slot, "max_rss") for slot in slots},
        "growth": {slot: statistics.median(growth(r, "") for r in by_slot[slot]) for slot in slots},
        "ratio_tokens_per_s": ratio("tokens_per_s"),
        "ratio_max_rss": ratio("max_rss"),
        "ratio_peak_train": ratio("peak_train"),
        "ratio_growth": ratio("", growth),
        "all_ratios_tokens_per_s": [a["tokens_per_s"] / b["tokens_per_s"] for a, b in pairs],
    }
    if larpo_arm != "larpo":
        summary["larpo_arm"] = larpo_arm
    summary["larpo_settings"] = by_slot["larpo"][0].get("logprob_settings")
    if "gpu_peak_train" in results[0]:
        summary.update(
            device_name=results[0]["device_name"],
            torch=results[0]["torch"],
            step_s={slot: med(slot, "step_s") for slot in slots},
            gpu_peak_train={slot: med(slot, "gpu_peak_train") for slot in slots},
            gpu_before_train={slot: med(slot, "gpu_before_train") for slot in slots},
            gpu_peak_before_train={slot: med(slot, "gpu_peak_before_train") for slot in slots},
            gpu_growth={slot: statistics.median(gpu_growth(r, "") for r in by_slot[slot]) for slot in slots},
            ratio_gpu_peak_train=ratio("gpu_peak_train"),
            ratio_gpu_growth=ratio("", gpu_growth),
        )
    return summary


def shared_prefix_speedup(results: list[dict]) -> list[float]:
    """Per-repeat tokens/s ratios larpo (shared_prefix=True) / larpo_plain (False) of one setting."""
    shared = [r for r in results if r["arm"] == "larpo"]
    plain = [r for r in results if r["arm"] == "larpo_plain"]
    return [a["tokens_per_s"] / b["tokens_per_s"] for a, b in zip(shared, plain, strict=False)]


def setting_label(s: dict) -> str:
    """The setting column; a larpo arm other than ``larpo`` is named first."""
    arm = s.get("larpo_arm", "larpo")
    return s["setting"]["name"] if arm == "larpo" else f"{arm}: {s['setting']['name']}"


def table(summaries: list[dict]) -> list[str]:
    rows = [
        "| setting | tokens/step | larpo tok/s | TRL tok/s | **tok/s larpo/TRL** | per-repeat ratios | "
        "larpo peak RSS (MiB) | TRL peak RSS (MiB) | **peak RSS larpo/TRL** | larpo train growth (MiB) | "
        "TRL train growth (MiB) | growth larpo/TRL |",
        "|---" * 12 + "|",
    ]
    for s in summaries:
        st = s["setting"]
        rows.append(
            f"| {setting_label(s)} (V={st['vocab'] + 4 if st['vocab'] else 16}, B={st['batch']} pairs, "
            f"P={st['prompt']}) | {s['tokens_per_step']} | {s['tokens_per_s']['larpo']:.0f} | "
            f"{s['tokens_per_s']['trl']:.0f} | **{s['ratio_tokens_per_s']:.2f}** | "
            f"{', '.join(f'{r:.2f}' for r in s['all_ratios_tokens_per_s'])} | "
            f"{mib(s['max_rss']['larpo'])} | {mib(s['max_rss']['trl'])} | **{s['ratio_max_rss']:.2f}** | "
            f"{mib(s['growth']['larpo'])} | {mib(s['growth']['trl'])} | {s['ratio_growth']:.2f} |"
        )
    return rows


def gpu_table(summaries: list[dict]) -> list[str]:
    """The CUDA table: speed, step time and GPU memory (max_memory_allocated) of each larpo arm vs TRL."""
    rows = [
        "| setting | larpo arm | tokens/step | larpo tok/s | TRL tok/s | **tok/s larpo/TRL** | per-repeat ratios | "
        "larpo step (ms) | TRL step (ms) | larpo peak GPU (MiB) | TRL peak GPU (MiB) | **peak GPU larpo/TRL** | "
        "larpo train growth (MiB) | TRL train growth (MiB) | growth larpo/TRL |",
        "|---" * 15 + "|",
    ]
    for s in summaries:
        st = s["setting"]
        arm = s.get("larpo_arm", "larpo")
        settings = s.get("larpo_settings") or f"shared_prefix={arm == 'larpo'}"
        rows.append(
            f"| {st['name']} (V={st['vocab'] + 4 if st['vocab'] else 16}, B={st['batch']} pairs, "
            f"P={st['prompt']}) | {arm} ({settings}) | {s['tokens_per_step']} | "
            f"{s['tokens_per_s']['larpo']:,.0f} | {s['tokens_per_s']['trl']:,.0f} | "
            f"**{s['ratio_tokens_per_s']:.2f}** | {', '.join(f'{r:.2f}' for r in s['all_ratios_tokens_per_s'])} | "
            f"{1000 * s['step_s']['larpo']:.1f} | {1000 * s['step_s']['trl']:.1f} | "
            f"{mib(s['gpu_peak_train']['larpo'])} | {mib(s['gpu_peak_train']['trl'])} | "
            f"**{s['ratio_gpu_peak_train']:.2f}** | {mib(s['gpu_growth']['larpo'])} | "
            f"{mib(s['gpu_growth']['trl'])} | {s['ratio_gpu_growth']:.2f} |"
        )
    return rows


def equivalence_table(summaries: list[dict]) -> list[str]:
    rows = [
        "| setting | same token ids | first-batch loss larpo | first-batch loss TRL | "
        "max abs diff of reference log-probs | mean training loss larpo | mean training loss TRL |",
        "|---" * 7 + "|",
    ]
    for s in summaries:
        rows.append(
            f"| {setting_label(s)} | {s['same_ids']} | {s['first_loss']['larpo']:.6f} | "
            f"{s['first_loss']['trl']:.6f} | {s['ref_max_abs_diff']:.2e} | {s['train_loss']['larpo']:.6f} | "
            f"{s['train_loss']['trl']:.6f} |"
        )
    return rows


def plot(
    chosen: list[dict], results: dict[str, list[dict]], arms: tuple[str, ...], path: Path, title: str
) -> bool:
    """Bars of tokens/s and peak memory per setting and arm (medians over repeats); False without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot", flush=True)
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gpu = "gpu_peak_train" in next(iter(results.values()))[0]
    memory_key, memory_label = (
        ("gpu_peak_train", "peak GPU memory in train(), MiB (lower is better)")
        if gpu
        else ("max_rss", "peak RSS, MiB (lower is better)")
    )
    names = [s["name"] for s in chosen]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=120)
    width = 0.38 if len(arms) == 2 else 0.8 / len(arms)
    xs = range(len(names))
    for ax, key, label in (
        (axes[0], "tokens_per_s", "training tokens/s (higher is better)"),
        (axes[1], memory_key, memory_label),
    ):
        for index, arm in enumerate(arms):
            offset = (index - (len(arms) - 1) / 2) * width
            values = [
                statistics.median(r[key] for r in results[name] if r["arm"] == arm)
                / (2**20 if key == memory_key else 1)
                for name in names
            ]
            ax.bar([x + offset for x in xs], values, width, label=ARM_LABELS[arm])
        ax.set_xticks(list(xs), names, rotation=15, fontsize=8)
        ax.set_title(label, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend()
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
    return True


def gpu_machine_info(result: dict, threads: int) -> str:
    """One line for a CUDA run: the GPU, torch/CUDA and library versions."""
    import platform
    from importlib import metadata

    versions = []
    for name in ("transformers", "trl", "datasets", "accelerate"):
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return (
        f"{result['device_name']}, torch {result['torch']}, {os.cpu_count()} host cores, {threads} torch "
        f"thread per process, Python {platform.python_version()}; {', '.join(versions)}"
    )


def main() -> None:
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
    if args.worker:
        print("RESULT " + json.dumps(run_arm(json.loads(args.worker))), flush=True)
        return

    from benchutil import machine_info

    cuda = args.device == "cuda"
    dtype = args.dtype or ("bfloat16" if cuda else "float32")
    variants = (args.larpo_variants or ("shared,plain" if cuda else "shared")).split(",")
    unknown = [v for v in variants if v not in LARPO_VARIANTS]
    if unknown or not variants:
        parser.error(f"--larpo-variants: unknown {unknown}, choose from {sorted(LARPO_VARIANTS)}")
    arms = arms_of(variants)
    output = args.output or Path("docs/benchmarks/trl_cost_gpu.md" if cuda else "docs/benchmarks/trl_cost.md")
    repeats = args.repeats or (2 if args.quick else 3)
    names = args.settings or (["gpu"] if cuda else ["char"] if args.quick else ["char", "8k"])
    chosen = settings(names, args.quick, args.steps, args.warmup)
    extra = {} if args.device == "cpu" and dtype == "float32" else {"device": args.device, "dtype": dtype}
    results: dict[str, list[dict]] = {s["name"]: [] for s in chosen}
    start = time.monotonic()
    done = 0
    for repeat in range(repeats):
        repeat_start = time.monotonic()
        for setting in chosen:
            order = arms if repeat % 2 == 0 else arms[::-1]
            for arm in order:
                result = spawn({**setting, "arm": arm, "threads": args.threads, **extra})
                results[setting["name"]].append(result)
                memory = (
                    f"peak GPU {mib(result['gpu_peak_train'])} MiB in train()"
                    if "gpu_peak_train" in result
                    else f"max RSS {mib(result['max_rss'])} MiB"
                )
                print(
                    f"repeat {repeat} {setting['name']:>20} {arm:>5}: first loss {result['first_loss']:.6f} "
                    f"{result['tokens_per_s']:.0f} tok/s, {memory}",
                    flush=True,
                )
        done += 1
        now = time.monotonic()
        if (
            args.max_seconds
            and repeat + 1 < repeats
            and now + (now - repeat_start) - start > args.max_seconds
        ):
            print(
                f"stopping after {done} of {repeats} repeats (--max-seconds {args.max_seconds:g})", flush=True
            )
            break
    summaries = [summarise(results[s["name"]], s, arm) for s in chosen for arm in arms[:-1]]
    png = output.with_suffix(".png")
    first = next(iter(results.values()))[0]
    title = "larpo ListwiseTrainer (pairwise) vs TRL DPOTrainer, m = 2, " + (
        f"{dtype} ({'bf16 autocast, ' if dtype == 'bfloat16' else ''}{first['device_name']})"
        if cuda
        else "fp32 CPU" if dtype == "float32" else f"{dtype} autocast, CPU"
    )  # fmt: skip
    plotted = plot(chosen, results, arms, png, title)
    command = "python benchmarks/bench_trl_cost.py" + (" --quick" if args.quick else "")
    command += f" --repeats {args.repeats}" if args.repeats else ""
    command += f" --settings {' '.join(args.settings)}" if args.settings else ""
    command += " --device cuda" if cuda else ""
    command += f" --dtype {args.dtype}" if args.dtype else ""
    command += f" --larpo-variants {args.larpo_variants}" if args.larpo_variants else ""
    command += f" --steps {args.steps}" if args.steps is not None else ""
    command += f" --warmup {args.warmup}" if args.warmup is not None else ""
    steps = chosen[0]["steps"]
    machine = gpu_machine_info(first, args.threads) if cuda else machine_info(args.threads)
    precision = "random init, fp32" if dtype == "float32" else "random init, fp32 weights, bf16=True"
    lines = [
        "# Training cost: larpo ListwiseTrainer vs TRL DPOTrainer (m = 2)",
        "",
        f"Command: `{command}`. Machine: {machine}.",
        "",
        f"Same model (Llama, hidden {chosen[0]['hidden']}, {chosen[0]['layers']} layers, {precision}), "
        f"same pairs, batch, lr {LR}, beta {BETA}, {steps} optimizer steps per run of which the first "
        f"{chosen[0]['warmup']} are warm-up and not timed; {done} repeats, each arm in its own subprocess, "
        "arm order alternating. Prompts (P tokens) and responses (R tokens incl. EOS) have fixed lengths, so no "
        "padding: tokens/step counts prompt+response tokens of both sequences of every pair. Ratios are medians "
        "of per-repeat ratios larpo/TRL.",
        "",
    ]
    if cuda:
        lines += [
            f"Device {args.device}: the model's fp32 weights sit on the GPU before either trainer is built "
            f"(`use_cpu=False`), `bf16={dtype == 'bfloat16'}` in both configs, i.e. "
            + (
                "accelerate's bf16 autocast around the forward, fp32 master weights, gradients and AdamW state "
                "(neither trainer casts a model passed as an instance). "
                if dtype == "bfloat16"
                else "fp32 throughout. "
            )
            + "Reference log-probs are precomputed before `train()` in both arms: TRL under "
            "`accelerator.autocast()`, larpo in `ListwiseTrainer.__init__`, which this benchmark runs under the "
            "same `torch.autocast` (larpo itself runs that pass in the weights' dtype). larpo arms: "
            "`larpo` = `shared_prefix=True` (each pair's prompt is encoded once and its KV "
            "cache reused for both candidates; TRL has no such path), `larpo_plain` = `shared_prefix=False` "
            "(prompt encoded once per candidate, as TRL does), `larpo_auto` = the defaults (`auto`; the "
            "settings column names what they resolved to). TRL scores only completion positions through "
            "its fused, chunked Triton LM head; larpo materialises the response positions' logits.",
            "",
            "Step time is synchronised (`torch.cuda.synchronize()` at the end of every step). Peak GPU is "
            "`torch.cuda.max_memory_allocated()` during `train()` (peak stats reset right before it; the model "
            "and reference column already allocated); train growth is that peak minus "
            "`torch.cuda.memory_allocated()` just before `train()` (gradients, AdamW state, activations, "
            "logits).",
            "",
            *gpu_table(summaries),
            "",
        ]
        if "larpo_plain" in arms and "larpo" in arms:
            for s in chosen:
                speedups = shared_prefix_speedup(results[s["name"]])
                lines.append(
                    f"shared_prefix speed-up in larpo, {s['name']}: tok/s larpo / larpo_plain = "
                    f"**{statistics.median(speedups):.2f}** (per repeat: "
                    f"{', '.join(f'{r:.2f}' for r in speedups)})."
                )
            lines.append("")
    else:
        lines += [
            "Peak RSS is the whole process (`ru_maxrss`: imports, model, data, reference pass, training); "
            "train growth is the RSS peak sampled during `train()` minus RSS just before it (gradients, AdamW "
            "state, activations, logits).",
            "",
            *table(summaries),
            "",
        ]
    lines += [
        "## Equivalence checks",
        "",
        "First-batch loss is `compute_loss` on the first B pairs before any update (policy == reference, so "
        "log 2 = 0.693147). Reference log-probs: larpo's `reference_logps` column vs TRL's "
        "`ref_chosen_logps`/`ref_rejected_logps` for the first batch. Mean training loss: "
        "`TrainOutput.training_loss` (same data order in both trainers).",
        "",
        *equivalence_table(summaries),
        "",
    ]
    if plotted:
        lines += [f"![cost]({png.name})", ""]
    write_markdown(output, lines)
    output.with_suffix(".json").write_text(json.dumps(summaries, indent=1))


if __name__ == "__main__":
    main()
