"""benchmarks/bench_trl_cost.py's report: medians and per-repeat ratios of each larpo arm against TRL, the
markdown tables, the plot and the page around them."""

from __future__ import annotations

import os
import statistics
from pathlib import Path

from benchutil import mib, save_figure
from trl_cost_arm import BETA, LR

ARM_LABELS = {"larpo": "larpo", "larpo_plain": "larpo, shared_prefix=False", "larpo_auto": "larpo, auto",
              "trl": "TRL DPO"}  # fmt: skip


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


def setting_shape(setting: dict) -> str:
    """Vocabulary (with the tokenizer's 4 special tokens), pairs per batch and prompt length of a setting."""
    vocab = setting["vocab"] + 4 if setting["vocab"] else 16
    return f"(V={vocab}, B={setting['batch']} pairs, P={setting['prompt']})"


def ratios_cell(summary: dict) -> str:
    """The per-repeat tokens/s ratios larpo/TRL of a summary."""
    return ", ".join(f"{r:.2f}" for r in summary["all_ratios_tokens_per_s"])


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
            f"| {setting_label(s)} {setting_shape(st)} | {s['tokens_per_step']} | {s['tokens_per_s']['larpo']:.0f} | "
            f"{s['tokens_per_s']['trl']:.0f} | **{s['ratio_tokens_per_s']:.2f}** | "
            f"{ratios_cell(s)} | "
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
            f"| {st['name']} {setting_shape(st)} | {arm} ({settings}) | {s['tokens_per_step']} | "
            f"{s['tokens_per_s']['larpo']:,.0f} | {s['tokens_per_s']['trl']:,.0f} | "
            f"**{s['ratio_tokens_per_s']:.2f}** | {ratios_cell(s)} | "
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


def cuda_section(
    summaries: list[dict], results: dict[str, list[dict]], arms: tuple[str, ...], dtype: str
) -> list[str]:
    """What a CUDA run measured and how, its table, and larpo's shared_prefix speed-up per setting."""
    lines = [
        "Device cuda: the model's fp32 weights sit on the GPU before either trainer is built "
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
        for name, setting_results in results.items():
            speedups = shared_prefix_speedup(setting_results)
            lines.append(
                f"shared_prefix speed-up in larpo, {name}: tok/s larpo / larpo_plain = "
                f"**{statistics.median(speedups):.2f}** (per repeat: {', '.join(f'{r:.2f}' for r in speedups)})."
            )
        lines.append("")
    return lines


def cpu_section(summaries: list[dict]) -> list[str]:
    """How a CPU run measured memory, and its table."""
    return [
        "Peak RSS is the whole process (`ru_maxrss`: imports, model, data, reference pass, training); "
        "train growth is the RSS peak sampled during `train()` minus RSS just before it (gradients, AdamW "
        "state, activations, logits).",
        "",
        *table(summaries),
        "",
    ]


def page(
    summaries: list[dict], results: dict[str, list[dict]], arms: tuple[str, ...], chosen: list[dict],
    dtype: str, repeats: int, command: str, machine: str, png: Path | None,
) -> list[str]:  # fmt: skip
    """The whole markdown page; ``png``: the plot's file, when there is one."""
    cuda = "gpu_peak_train" in next(iter(results.values()))[0]
    precision = "random init, fp32" if dtype == "float32" else "random init, fp32 weights, bf16=True"
    first = chosen[0]
    lines = [
        "# Training cost: larpo ListwiseTrainer vs TRL DPOTrainer (m = 2)",
        "",
        f"Command: `{command}`. Machine: {machine}.",
        "",
        f"Same model (Llama, hidden {first['hidden']}, {first['layers']} layers, {precision}), "
        f"same pairs, batch, lr {LR}, beta {BETA}, {first['steps']} optimizer steps per run of which the first "
        f"{first['warmup']} are warm-up and not timed; {repeats} repeats, each arm in its own subprocess, "
        "arm order alternating. Prompts (P tokens) and responses (R tokens incl. EOS) have fixed lengths, so no "
        "padding: tokens/step counts prompt+response tokens of both sequences of every pair. Ratios are medians "
        "of per-repeat ratios larpo/TRL.",
        "",
        *(cuda_section(summaries, results, arms, dtype) if cuda else cpu_section(summaries)),
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
    return lines + ([f"![cost]({png.name})", ""] if png is not None else [])
