"""Training cost of larpo's ListwiseTrainer against TRL's DPOTrainer on identical pairwise data.

Run: python benchmarks/bench_trl_cost.py [--quick] [--repeats 3]
Writes docs/benchmarks/trl_cost.md and docs/benchmarks/trl_cost.png.

Both arms train the same randomly initialised Llama (fp32, CPU) on the same pairs (m = 2): synthetic
prompts and responses of fixed length, so no sequence is padded and both trainers see exactly the same
tokens. larpo runs objective ``pairwise`` (DPO: -logsigmoid(beta * margin)) with reference log-probs
precomputed before training; TRL runs ``loss_type=["sigmoid"]`` with ``precompute_ref_log_probs=True``.
Every arm runs in its own subprocess so that peak RSS is per arm; the order of the arms alternates across
repeats, and ratios are taken between the two arms of the same repeat (the machine is shared).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import tempfile
from pathlib import Path

from benchutil import mib, save_figure, write_markdown

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

HERE = Path(__file__).resolve().parent
ARMS = ("larpo", "trl")
BETA = 0.1
LR = 1e-5


SETTINGS = {
    "char": dict(name="char vocab, R=48", vocab=0, batch=4, prompt=16, response=48),
    "8k": dict(name="8k vocab, R=48", vocab=8000, batch=4, prompt=16, response=48),
    "32k": dict(name="32k vocab, R=48", vocab=32000, batch=4, prompt=16, response=48),
    "long": dict(name="char vocab, R=240", vocab=0, batch=2, prompt=16, response=240),
    "longprompt": dict(name="32k vocab, P=240, R=16", vocab=32000, batch=2, prompt=240, response=16),
}


def settings(names: list[str], quick: bool) -> list[dict]:
    """The measured settings: vocabulary, batch of pairs, prompt and response lengths (tokens)."""
    base = dict(hidden=256, layers=4, steps=5 if quick else 6, warmup=2)
    return [{**base, **SETTINGS[name]} for name in names]


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
    import trl  # noqa: F401  (both arms import both libraries, so their baseline RSS is the same)

    import larpo  # noqa: F401
    from benchutil import DIGITS, PeakRSS, StepTimer, bench_llama, max_rss_bytes, rss_bytes, wide_alphabet
    from larpo.tiny import char_tokenizer

    torch.set_num_threads(spec["threads"])

    alphabet = wide_alphabet(spec["vocab"]) if spec["vocab"] else DIGITS
    tokenizer = char_tokenizer(alphabet)
    model = bench_llama(len(tokenizer), spec["hidden"], spec["layers"], spec["prompt"] + spec["response"] + 8)
    data = synthetic_text(spec, alphabet)
    out_dir = tempfile.mkdtemp(prefix="larpo-bench-")
    common = dict(
        output_dir=out_dir,
        beta=BETA,
        learning_rate=LR,
        per_device_train_batch_size=spec["batch"],
        per_device_eval_batch_size=spec["batch"],
        max_steps=spec["steps"],
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        report_to="none",
        disable_tqdm=True,
        logging_strategy="no",
        save_strategy="no",
        dataloader_num_workers=0,
        seed=0,
    )
    rss_start = rss_bytes()
    if spec["arm"] == "larpo":
        from larpo.config import ListwiseConfig
        from larpo.data import tokenize_list
        from larpo.trainer import ListwiseTrainer

        examples = [tokenize_list(tokenizer, p, [c, r]) for p, c, r in data]
        args = ListwiseConfig(objective="pairwise", **common)
        trainer = ListwiseTrainer(model, args, examples, processing_class=tokenizer)
        rows = trainer.train_dataset
        token_rows = [(e["prompt_ids"], *e["response_ids"]) for e in rows]
        reference = [list(e["reference_logps"]) for e in rows]
    else:
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer

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
    with torch.no_grad():
        first_loss = float(trainer.compute_loss(trainer.model, batch))
    if spec["arm"] == "larpo":
        trainer._stored_metrics.clear()
    else:
        trainer._metrics["train"].clear()

    timer = StepTimer()
    trainer.add_callback(timer)
    rss_before_train = rss_bytes()
    with PeakRSS() as peak:
        result = trainer.train()
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
    }


# ----------------------------------------------------------------------------- driver
def spawn(spec: dict) -> dict:
    from benchutil import run_worker

    return run_worker(__file__, spec, f"{spec['arm']} / {spec['name']}")


def summarise(results: list[dict], setting: dict) -> dict:
    by_arm = {arm: [r for r in results if r["arm"] == arm] for arm in ARMS}
    pairs = list(zip(by_arm["larpo"], by_arm["trl"], strict=True))

    def med(arm: str, key: str) -> float:
        return statistics.median(r[key] for r in by_arm[arm])

    def ratio(key: str, fn=lambda r, k: r[k]) -> float:
        return statistics.median(fn(a, key) / fn(b, key) for a, b in pairs)

    def growth(r: dict, _key: str) -> float:
        return r["peak_train"] - r["rss_before_train"]

    ref_diff = max(
        abs(x - y)
        for a, b in pairs
        for row_a, row_b in zip(a["reference"], b["reference"], strict=True)
        for x, y in zip(row_a, row_b, strict=True)
    )
    return {
        "setting": setting,
        "repeats": len(pairs),
        "same_ids": all(a["ids"] == b["ids"] for a, b in pairs),
        "tokens_per_step": by_arm["larpo"][0]["tokens_per_step"],
        "first_loss": {arm: by_arm[arm][0]["first_loss"] for arm in ARMS},
        "train_loss": {arm: med(arm, "train_loss") for arm in ARMS},
        "ref_max_abs_diff": ref_diff,
        "tokens_per_s": {arm: med(arm, "tokens_per_s") for arm in ARMS},
        "peak_train": {arm: med(arm, "peak_train") for arm in ARMS},
        "max_rss": {arm: med(arm, "max_rss") for arm in ARMS},
        "growth": {arm: statistics.median(growth(r, "") for r in by_arm[arm]) for arm in ARMS},
        "ratio_tokens_per_s": ratio("tokens_per_s"),
        "ratio_max_rss": ratio("max_rss"),
        "ratio_peak_train": ratio("peak_train"),
        "ratio_growth": ratio("", growth),
        "all_ratios_tokens_per_s": [a["tokens_per_s"] / b["tokens_per_s"] for a, b in pairs],
    }


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
            f"| {st['name']} (V={st['vocab'] + 4 if st['vocab'] else 16}, B={st['batch']} pairs, "
            f"P={st['prompt']}) | {s['tokens_per_step']} | {s['tokens_per_s']['larpo']:.0f} | "
            f"{s['tokens_per_s']['trl']:.0f} | **{s['ratio_tokens_per_s']:.2f}** | "
            f"{', '.join(f'{r:.2f}' for r in s['all_ratios_tokens_per_s'])} | "
            f"{mib(s['max_rss']['larpo'])} | {mib(s['max_rss']['trl'])} | **{s['ratio_max_rss']:.2f}** | "
            f"{mib(s['growth']['larpo'])} | {mib(s['growth']['trl'])} | {s['ratio_growth']:.2f} |"
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
            f"| {s['setting']['name']} | {s['same_ids']} | {s['first_loss']['larpo']:.6f} | "
            f"{s['first_loss']['trl']:.6f} | {s['ref_max_abs_diff']:.2e} | {s['train_loss']['larpo']:.6f} | "
            f"{s['train_loss']['trl']:.6f} |"
        )
    return rows


def plot(summaries: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s["setting"]["name"] for s in summaries]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=120)
    width = 0.38
    xs = range(len(names))
    for ax, key, label in (
        (axes[0], "tokens_per_s", "training tokens/s (higher is better)"),
        (axes[1], "max_rss", "peak RSS, MiB (lower is better)"),
    ):
        for offset, arm in ((-width / 2, "larpo"), (width / 2, "trl")):
            values = [s[key][arm] / (2**20 if key == "max_rss" else 1) for s in summaries]
            ax.bar([x + offset for x in xs], values, width, label="larpo" if arm == "larpo" else "TRL DPO")
        ax.set_xticks(list(xs), names, rotation=15, fontsize=8)
        ax.set_title(label, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend()
    fig.suptitle("larpo ListwiseTrainer (pairwise) vs TRL DPOTrainer, m = 2, fp32 CPU", fontsize=10)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the char setting only, fewer steps, 2 repeats")
    parser.add_argument(
        "--settings", nargs="+", choices=sorted(SETTINGS), default=None, help="default: char 8k (quick: char)"
    )
    parser.add_argument("--repeats", type=int, default=None, help="subprocess pairs per setting (default 3)")
    parser.add_argument("--output", type=Path, default=Path("docs/benchmarks/trl_cost.md"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads per subprocess")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(run_arm(json.loads(args.worker))), flush=True)
        return

    from benchutil import machine_info

    repeats = args.repeats or (2 if args.quick else 3)
    names = args.settings or (["char"] if args.quick else ["char", "8k"])
    chosen = settings(names, args.quick)
    results: dict[str, list[dict]] = {s["name"]: [] for s in chosen}
    for repeat in range(repeats):
        for setting in chosen:
            order = ARMS if repeat % 2 == 0 else ARMS[::-1]
            for arm in order:
                result = spawn({**setting, "arm": arm, "threads": args.threads})
                results[setting["name"]].append(result)
                print(
                    f"repeat {repeat} {setting['name']:>20} {arm:>5}: first loss {result['first_loss']:.6f} "
                    f"{result['tokens_per_s']:.0f} tok/s, max RSS {mib(result['max_rss'])} MiB",
                    flush=True,
                )
    summaries = [summarise(results[s["name"]], s) for s in chosen]
    png = args.output.with_suffix(".png")
    plot(summaries, png)
    command = "python benchmarks/bench_trl_cost.py" + (" --quick" if args.quick else "")
    command += f" --repeats {args.repeats}" if args.repeats else ""
    command += f" --settings {' '.join(args.settings)}" if args.settings else ""
    steps = chosen[0]["steps"]
    lines = [
        "# Training cost: larpo ListwiseTrainer vs TRL DPOTrainer (m = 2)",
        "",
        f"Command: `{command}`. Machine: {machine_info(args.threads)}.",
        "",
        f"Same model (Llama, hidden {chosen[0]['hidden']}, {chosen[0]['layers']} layers, random init, fp32), "
        f"same pairs, batch, lr {LR}, beta {BETA}, {steps} optimizer steps per run of which the first "
        f"{chosen[0]['warmup']} are warm-up and not timed; {repeats} repeats, each arm in its own subprocess, "
        "arm order alternating. Prompts (P tokens) and responses (R tokens incl. EOS) have fixed lengths, so no "
        "padding: tokens/step counts prompt+response tokens of both sequences of every pair. Ratios are medians "
        "of per-repeat ratios larpo/TRL.",
        "",
        "Peak RSS is the whole process (`ru_maxrss`: imports, model, data, reference pass, training); "
        "train growth is the RSS peak sampled during `train()` minus RSS just before it (gradients, AdamW "
        "state, activations, logits).",
        "",
        *table(summaries),
        "",
        "## Equivalence checks",
        "",
        "First-batch loss is `compute_loss` on the first B pairs before any update (policy == reference, so "
        "log 2 = 0.693147). Reference log-probs: larpo's `reference_logps` column vs TRL's "
        "`ref_chosen_logps`/`ref_rejected_logps` for the first batch. Mean training loss: "
        "`TrainOutput.training_loss` (same data order in both trainers).",
        "",
        *equivalence_table(summaries),
        "",
        f"![cost]({png.name})",
        "",
    ]
    write_markdown(args.output, lines)
    args.output.with_suffix(".json").write_text(json.dumps(summaries, indent=1))


if __name__ == "__main__":
    main()
