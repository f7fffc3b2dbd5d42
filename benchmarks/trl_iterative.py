"""Iterative DPO built from TRL's DPOTrainer against larpo's ``dpo2`` arm: same SFT start, same samples.

Run: python benchmarks/trl_iterative.py [--seeds 0 1 2] [--output runs/bench_demo] [--docs docs/benchmarks]
Writes <docs>/trl_iterative.md, .json and .png. ``--quick`` is a smoke run with tiny settings (its own
output folder, larpo's dpo2 arm run beside it, the report in <output>/report).

The ``trl_dpo2`` arm is ``listwise_search.py``'s ``dpo2`` config (pairwise, 2 samples per prompt, k/2 times
the prompts, evaluated on the validation split; the search's ``--test`` evaluates it on the test split) run by ``larpo.run.run`` with its ``train`` stage alone replaced: TRL's DPOTrainer on (first, last)
response of each list, loss sigmoid + nll_weight * sft (larpo's RPO term), reference = the SFT start.
Sampling, scoring, list building, evaluation and resumption are larpo's, so only the trainer differs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from transformers.trainer_callback import PrinterCallback

from benchutil import machine_info, save_figure, write_markdown
from larpo.data import tokenize_list
from larpo.run import RunContext, run
from larpo.run.lists import preference_pairs
from larpo.run.manifest import ADDED_SETTINGS
from larpo.run.train import load_trainable, read_lists
from larpo.tasks.arithmetic.demo import prepare_start
from listwise_search import BASE, variant_config
from studyutil import accuracy_by_iteration, is_finished, run_seconds

RUNS = {"trl_dpo2": "run_trl_dpo2", "dpo2": "search_dpo2"}  # arm -> run folder in <output>/seed<N>
QUICK = dict(iterations=2, prompts_per_iteration=100, train_prompts=2000, heldout_prompts=200, sft_steps=100,
             eval_samples=4)  # fmt: skip


def trl_train(ctx: RunContext, s: int) -> dict[str, Any]:
    """The train stage with TRL's DPOTrainer: the policy of iteration s-1 trained on the (first, last) pair of
    each of iteration ``s``'s lists, saved as ``iter_<s>/model`` (larpo's checkpoint saving and stats)."""
    if ctx.lora or ctx.state.num_processes > 1:
        raise ValueError("the TRL arm trains all weights, in one process")
    if (stats := ctx.finished_checkpoint(s)) is not None:
        return stats
    lists = read_lists(ctx, s)
    pairs = preference_pairs(lists)
    model, tokenizer = load_trainable(ctx, s)
    stats = {"lists": len(lists), "pairs": len(pairs), "steps": 0, "loss": None, "ranking_accuracy": None}
    if pairs:
        stats.update(dpo(ctx, s, model, tokenizer, pairs))
    ctx.save_checkpoint(s, model, tokenizer, stats)
    return stats


def dpo(ctx: RunContext, s: int, model, tokenizer, pairs: list[dict]) -> dict[str, Any]:
    """Train ``model`` in place with DPOTrainer on ``pairs``; its stats, checks included."""
    from datasets import Dataset  # the bench extra: imported here so the pure helpers need neither
    from trl import DPOConfig, DPOTrainer

    config = ctx.config
    reference_path = config.model if config.reference == "initial" else ctx.model_path(s - 1)
    losses = [("sigmoid", 1.0)] + ([("sft", config.nll_weight)] if config.nll_weight else [])
    args = DPOConfig(
        output_dir=str(ctx.iteration_dir(s) / "trainer"),
        loss_type=[name for name, _ in losses], loss_weights=[weight for _, weight in losses],
        beta=config.beta, precompute_ref_log_probs=True, padding_free=False, gradient_checkpointing=False,
        use_cpu=not torch.cuda.is_available(), disable_tqdm=not ctx.console.is_terminal,
        **config.training_arguments(s),
    )  # fmt: skip
    dataset = Dataset.from_dict({key: [p[key] for p in pairs] for key in ("prompt", "chosen", "rejected")})
    reference = ctx.load(reference_path)[0]
    trainer = DPOTrainer(
        model, ref_model=reference, args=args, train_dataset=dataset, processing_class=tokenizer
    )
    trainer.remove_callback(PrinterCallback)
    rows = trainer.train_dataset
    differing = differing_pairs(tokenizer, pairs, rows)
    if differing and not ctx.records_ids:  # plain text: TRL must see exactly larpo's ids
        raise RuntimeError(f"pairs {differing[:5]}: TRL's token ids differ from larpo's tokenize_list ids")
    first = rows[0]
    ctx.console.print(f"iter {s}: pair 0 token ids, TRL = larpo: prompt {first['prompt_ids']} chosen "
                      f"{first['chosen_ids']} rejected {first['rejected_ids']}", highlight=False)  # fmt: skip
    trl_reference = zip(rows["ref_chosen_logps"], rows["ref_rejected_logps"], strict=True)
    difference = max(
        (abs(a - b) for p, ref in zip(pairs, trl_reference, strict=True) if p["reference"]
         for a, b in zip(p["reference"], ref, strict=True)), default=None,
    )  # fmt: skip
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]

    def mean(key: str) -> float:
        return sum(h[key] for h in logs) / len(logs)

    return {
        "steps": trainer.state.global_step,
        "loss": mean("loss"),
        "ranking_accuracy": mean("rewards/accuracies"),
        "margin": mean("rewards/margins"),
        "final_loss": logs[-1]["loss"],
        "reference_max_abs_diff": difference,  # TRL's reference log-probs vs the lists' (larpo's)
        "pairs_retokenized_differently": len(differing),  # chat runs: sampled ids vs TRL's re-tokenization
    }


def differing_pairs(tokenizer, pairs: list[dict], rows) -> list[int]:
    """Indices of the pairs whose TRL prompt/chosen/rejected ids (columns of the datasets.Dataset ``rows``)
    are not larpo's ``tokenize_list`` ids of the same texts (EOS appended once). A chat run trains on the
    sampled ids, which a re-tokenization of their text can split differently."""
    columns = zip(rows["prompt_ids"], rows["chosen_ids"], rows["rejected_ids"], strict=True)
    return [
        index
        for index, (pair, (prompt, chosen, rejected)) in enumerate(zip(pairs, columns, strict=True))
        if tokenize_list(tokenizer, pair["prompt"], [pair["chosen"], pair["rejected"]])
        != {"prompt_ids": prompt, "response_ids": [chosen, rejected]}
    ]


def arm_result(run_dir: Path, iterations: int) -> dict[str, Any]:
    """A finished run's accuracy curve, seconds (all stages, train stages) and samples per iteration."""
    config = json.loads((run_dir / "manifest.json").read_text())["config"]
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    stats = [json.loads(p.read_text()) for p in sorted(run_dir.glob("iter_*/train_stats.json"))]
    return {
        "curve": accuracy_by_iteration(run_dir, iterations),
        "seconds": run_seconds(run_dir),
        "train_seconds": sum(e.get("seconds", 0.0) for e in log if e.get("stage") == "train"),
        "samples_per_iteration": config["num_candidates"] * config["prompts_per_iteration"],
        "reference_max_abs_diff": max((d for x in stats if (d := x.get("reference_max_abs_diff")) is not None),
                                      default=None),
    }  # fmt: skip


def run_seed(seed: int, output: Path, quick: bool, console: Console) -> list[str]:
    """Run (or resume) the TRL arm of one seed (and, with ``quick``, larpo's dpo2); the config keys in
    which it differs from the finished dpo2 run besides output_dir."""
    settings = dataclasses.replace(BASE, seed=seed, **(QUICK if quick else {}))
    max_new_tokens = prepare_start(output, settings, console)
    dpo2 = variant_config("dpo2", seed, output, max_new_tokens, settings)
    if quick:
        run(dpo2, console=console)
    trl_config = dataclasses.replace(dpo2, output_dir=str(output / RUNS["trl_dpo2"]))
    run(trl_config, stages={"train": trl_train}, console=console)
    manifest = Path(dpo2.output_dir) / "manifest.json"
    if not manifest.exists():
        return []
    finished = ADDED_SETTINGS | json.loads(manifest.read_text())["config"]  # added settings: their default
    return sorted(k for k, v in trl_config.to_dict().items() if k != "output_dir" and finished.get(k) != v)


def report(results: dict, differences: dict, iterations: int, command: str, docs: Path) -> None:
    """The per-seed and per-arm tables, the figure and the JSON."""
    lines = [
        "# Iterative DPO: TRL's DPOTrainer vs larpo, same SFT start and samples",
        "",
        f"Command: `{command}`. Machine: {machine_info(torch.get_num_threads())}.",
        "",
        "trl_dpo2 is larpo's dpo2 run (pairwise, 2 samples per prompt) with only its train stage replaced by "
        "TRL's DPOTrainer (sigmoid + nll_weight * sft, reference = the SFT start, precomputed). Validation "
        "greedy accuracy (exact match; the test split is reported by listwise_search.py --test); iteration -1 "
        "is the SFT start. "
        "Seconds: all stages of the run (SFT excluded) / train stages only, from each run's log.jsonl, measured "
        "when it ran on a shared machine (compare loosely). The one difference in the objective: TRL's sft term "
        "averages the NLL over all chosen tokens of a batch, larpo's per answer and then over the batch.",
        "",
        "| arm | seed | " + " | ".join(f"iter {s}" for s in range(-1, iterations))
        + " | gain | samples/iter | seconds | train seconds |",
        "|---" * (iterations + 7) + "|",
    ]  # fmt: skip
    for name, entries in results.items():
        for r in entries:
            cells = " | ".join(f"{a:.3f}" for a in r["curve"])
            lines.append(f"| {name} | {r['seed']} | {cells} | {r['curve'][-1] - r['curve'][0]:+.3f} | "
                         f"{r['samples_per_iteration']} | {r['seconds']:.0f} | {r['train_seconds']:.0f} |")  # fmt: skip
    gains = {name: [r["curve"][-1] - r["curve"][0] for r in entries] for name, entries in results.items()}
    lines += ["", "| arm | seeds | mean gain | spread (min..max) | mean train seconds | gain / dpo2's |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    base = statistics.mean(gains["dpo2"]) if gains.get("dpo2") else None
    for name, values in gains.items():
        ratio = f"{statistics.mean(values) / base:.2f}" if base else "-"
        seconds = statistics.mean(r["train_seconds"] for r in results[name])
        lines.append(f"| {name} | {len(values)} | {statistics.mean(values):+.3f} | {min(values):+.3f}..{max(values):+.3f} "
                     f"| {seconds:.0f} | {ratio} |")  # fmt: skip
    budgets = sorted({r["samples_per_iteration"] for entries in results.values() for r in entries})
    diffs = [d for r in results.get("trl_dpo2", []) if (d := r["reference_max_abs_diff"]) is not None]
    lines += [
        "",
        f"Samples drawn per iteration: {', '.join(map(str, budgets))}"
        + (" (the same for every arm, so the ratio of gains is the ratio of gains per sample)." if len(budgets) == 1 else "."),
        "Checks in every trl_dpo2 train stage: TRL's prompt/chosen/rejected token ids equal larpo's "
        "`tokenize_list` ids (EOS once at the end); its precomputed reference log-probs differ from the lists' "
        f"(larpo's, initial model) by at most {max(diffs):.1e}." if diffs else "",
    ]  # fmt: skip
    for seed, keys in differences.items():
        if keys:
            lines.append(f"seed {seed}: trl_dpo2's config differs from the finished dpo2 run's in {keys}.")
    plot(results, iterations, docs / "trl_iterative.png")
    lines += [
        "",
        "![mean validation greedy accuracy per arm; band: min..max over seeds](trl_iterative.png)",
        "",
    ]
    write_markdown(docs / "trl_iterative.md", lines)
    (docs / "trl_iterative.json").write_text(json.dumps(results, indent=1))


def plot(results: dict, iterations: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    xs = list(range(-1, iterations))
    for name, entries in results.items():
        columns = list(zip(*(r["curve"] for r in entries), strict=True))
        ax.plot(xs, [statistics.mean(c) for c in columns], marker="o", label=f"{name} ({len(entries)} seeds)")
        ax.fill_between(xs, [min(c) for c in columns], [max(c) for c in columns], alpha=0.15)
    ax.set_xticks(xs)
    ax.set_xlabel("iteration (-1 = SFT start)")
    ax.set_ylabel("validation greedy accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--output", type=Path, default=None, help="default runs/bench_demo (quick: runs/trl_iter_quick)"
    )
    parser.add_argument(
        "--docs", type=Path, default=None, help="default docs/benchmarks (quick: <output>/report)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny settings, larpo's dpo2 run too")
    args = parser.parse_args()
    output = args.output or Path("runs/trl_iter_quick" if args.quick else "runs/bench_demo")
    docs = args.docs or (output / "report" if args.quick else Path("docs/benchmarks"))
    console = Console(stderr=True)
    iterations = QUICK["iterations"] if args.quick else BASE.iterations
    results: dict[str, list[dict]] = {name: [] for name in RUNS}
    differences = {}
    for seed in args.seeds:
        differences[seed] = run_seed(seed, output / f"seed{seed}", args.quick, console)
        for name, folder in RUNS.items():
            if is_finished(run_dir := output / f"seed{seed}" / folder, iterations):
                results[name].append({"seed": seed, **arm_result(run_dir, iterations)})
    command = f"python benchmarks/trl_iterative.py --seeds {' '.join(map(str, args.seeds))}"
    command += " --quick" if args.quick else ""
    report({k: v for k, v in results.items() if v}, differences, iterations, command, docs)


if __name__ == "__main__":
    main()
