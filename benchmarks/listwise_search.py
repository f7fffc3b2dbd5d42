"""Search for the demo's LarPO configuration on the validation split (never the test split).

Run: python benchmarks/listwise_search.py [--seeds 0] [--variants default exact ...] [--output runs/bench_demo]
Writes docs/benchmarks/listwise_search.md and .json (with ``--test``: listwise_test.md, .json and _arms.json).

Every variant is the demo's run config (``DemoSettings().run_config``, as it stood when the search was
designed: contrastive, graded reward, current + previous lists, ``nll_weight`` 0.5, beta 0.1, lr 1e-4,
batches of 16 lists, 2 epochs, 6 iterations) with the overrides of :data:`VARIANTS`, run from the same SFT start per seed
(``<output>/seed<N>/sft``, shared with ``grpo_arm.py`` and ``trl_iterative.py``) and evaluated after every iteration on
``validation_prompts.jsonl`` by greedy decoding only. The ``rft`` control is searched alongside, so the
bar a listwise variant has to clear is measured on the same samples and split. The table reports the
validation greedy accuracy after each iteration (a run with fewer iterations is a prefix of the same run:
the schedule is constant after each iteration's warmup), the gain over the SFT start, and the seconds of
the run's stages. Choose on this table; then ``--test`` evaluates every run of the chosen variants once on the
test split and reports them beside GRPO (``grpo_arm.py``), TRL's DPO (``trl_iterative.py``) and continued SFT,
with the mean and spread over seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from benchutil import machine_info, write_markdown
from larpo.run import run as run_larpo
from larpo.run.config import RunConfig
from larpo.tasks.arithmetic.demo import REWARDS, DemoSettings, prepare_start
from studyutil import (
    accuracy_by_iteration,
    continued_sft,
    evaluate_on_test,
    is_finished,
    rft_control,
    run_seconds,
    train_steps,
)

EXACT = REWARDS["exact"]
BASE = DemoSettings(
    objective="contrastive", reward="graded", memorization="previous", nll_weight=0.5, beta=0.1,
    learning_rate=1e-4, epochs=2.0, batch_size=16, iterations=6,
)  # fmt: skip
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "rft": {"rft": True},
    "dpo2": {"dpo2": True},
    "exact_nll1": {"reward": EXACT, "nll_weight": 1.0},
    "exact": {"reward": EXACT},
    "exact_nll1_current": {"reward": EXACT, "nll_weight": 1.0, "memorization": "current"},
    "lambdarank_ndcg": {"objective": "lambdarank", "objective_options": {"lambda_weights": True}},
    "listmle": {"objective": "listmle"},
    "exact_nll1_beta1": {"reward": EXACT, "nll_weight": 1.0, "beta": 1.0},
    "exact_nll1_beta0.02": {"reward": EXACT, "nll_weight": 1.0, "beta": 0.02},
    "exact_nll1_beta0.02_current": {
        "reward": EXACT,
        "nll_weight": 1.0,
        "beta": 0.02,
        "memorization": "current",
    },
    "exact_nll1_beta0.02_batch32": {"reward": EXACT, "nll_weight": 1.0, "beta": 0.02, "batch_size": 32},
    "exact_nll1_beta0.02_batch32_lr2e-4": {
        "reward": EXACT,
        "nll_weight": 1.0,
        "beta": 0.02,
        "batch_size": 32,
        "learning_rate": 2e-4,
    },
}
DESCRIPTIONS = {
    "default": "contrastive, graded reward, current + previous lists, nll 0.5 on the best, beta 0.1",
    "exact": "default with the exact reward (every verified-correct answer a positive, the rest negatives)",
    "exact_nll1": "exact, nll_weight 1.0 (the NLL term is then RFT's loss)",
    "exact_nll1_current": "exact_nll1 on the current iteration's lists only (half the training)",
    "exact_nll1_beta1": "exact_nll1 with beta 1.0 (the ranking term saturates after a smaller log-ratio change)",
    "exact_nll1_beta0.02": "exact_nll1 with beta 0.02 (a weaker push on the negatives)",
    "exact_nll1_beta0.02_current": "exact_nll1_beta0.02 on the current iteration's lists only (about half the training)",
    "exact_nll1_beta0.02_batch32": "exact_nll1_beta0.02 with batches of 32 lists (half the optimizer steps)",
    "exact_nll1_beta0.02_batch32_lr2e-4": "exact_nll1_beta0.02_batch32 at lr 2e-4 (twice the lr for twice the batch)",
    "lambdarank_ndcg": "LambdaRank with delta-NDCG pair weights (LiPO-lambda), graded reward, nll 0.5, beta 0.1",
    "listmle": "ListMLE, graded reward, nll 0.5, beta 0.1",
    "rft": "control: NLL of the verified-correct answers (exact reward), no ranking term",
    "dpo2": "baseline: pairwise (DPO + nll 0.5) on 2 samples per prompt for 4x the prompts",
}


def variant_config(
    name: str, seed: int, output: Path, max_new_tokens: int, settings: DemoSettings = BASE
) -> RunConfig:
    """Variant ``name``'s run config for seed ``seed`` (on ``settings``, :data:`BASE` unless a smoke
    test shrinks it): validation evaluation, greedy only."""
    base = dataclasses.replace(settings, seed=seed).run_config(output, max_new_tokens)
    overrides = dict(VARIANTS[name])
    if overrides.pop("rft", False):
        base = rft_control(base, output)
    if overrides.pop("dpo2", False):  # the same samples as 2 per prompt for k/2 times the prompts
        prompts = settings.prompts_per_iteration * settings.num_candidates // 2
        overrides.update(objective="pairwise", num_candidates=2,
                         prompts_per_iteration=min(settings.train_prompts, prompts))  # fmt: skip
    return dataclasses.replace(
        base,
        **overrides,
        output_dir=str(output / f"search_{name}"),
        eval_prompts=str(output / "validation_prompts.jsonl"),
        eval_samples=1,
        eval_samples_between=1,
        eval_ks=[1],
        eval_ranking_prompts=0,
    )


def run_variant(name: str, seed: int, output: Path, console: Console, test: bool) -> dict[str, Any]:
    """Run (or resume) one variant for one seed; its validation curve and stage seconds, and with
    ``test`` its test curve (the demo's evaluation settings, after the run, cached in the run folder)."""
    settings = dataclasses.replace(BASE, seed=seed)
    max_new_tokens = prepare_start(output, settings, console)
    config = variant_config(name, seed, output, max_new_tokens)
    run_larpo(config, console=console)
    run_dir = Path(config.output_dir)
    curve = accuracy_by_iteration(run_dir, config.iterations)
    row = {"variant": name, "seed": seed, "validation_curve": curve, "seconds": run_seconds(run_dir)}
    if test:
        evaluation = settings.run_config(output, max_new_tokens)
        results = evaluate_on_test(config, output, evaluation)
        row.update(test_curve=[r["greedy_accuracy"] for r in results], test_final=results[-1])
    return row


def test_rows(rows: list[dict[str, Any]], output: Path, sft_steps_from: str) -> list[dict[str, Any]]:
    """Per arm and seed: the test curve and seconds; the searched variants, then GRPO (``grpo_arm.py``'s
    ``grpo.json``, when present) and continued SFT for as many steps as ``sft_steps_from`` took."""
    arms = [{"arm": r["variant"], "seed": r["seed"], "curve": r["test_curve"], "seconds": r["seconds"]}
            for r in rows]  # fmt: skip
    for seed in sorted({r["seed"] for r in rows if r["variant"] == "dpo2"}):
        arms += trl_dpo2_rows(seed, output / f"seed{seed}")
    grpo = output / "grpo.json"
    if grpo.exists():
        for r in json.loads(grpo.read_text())["chosen"]:
            seconds = r["train_seconds"] + r["validation_eval_seconds"]
            arms.append({"arm": "grpo", "seed": r["seed"], "curve": r["test_curve"], "seconds": seconds})
    for seed in sorted({r["seed"] for r in rows if r["variant"] == sft_steps_from}):
        folder = output / f"seed{seed}"
        path = folder / f"continued_sft_{sft_steps_from}.json"
        if not path.exists():
            settings = dataclasses.replace(BASE, seed=seed)
            steps = train_steps(folder / f"search_{sft_steps_from}", settings.iterations)
            started = time.perf_counter()
            curve = continued_sft(folder, settings, steps)
            path.write_text(json.dumps({"curve": curve, "seconds": time.perf_counter() - started}))
        done = json.loads(path.read_text())
        arms.append({"arm": "sft", "seed": seed, "curve": done["curve"], "seconds": done["seconds"]})
    return arms


def trl_dpo2_rows(seed: int, folder: Path) -> list[dict[str, Any]]:
    """The test row of ``trl_iterative.py``'s run (the dpo2 config trained by TRL's DPOTrainer), if finished."""
    settings = dataclasses.replace(BASE, seed=seed)
    max_new_tokens = prepare_start(folder, settings, Console(stderr=True))
    config = dataclasses.replace(
        variant_config("dpo2", seed, folder, max_new_tokens), output_dir=str(folder / "run_trl_dpo2")
    )
    if not is_finished(Path(config.output_dir), config.iterations):
        return []
    results = evaluate_on_test(config, folder, settings.run_config(folder, max_new_tokens))
    curve = [r["greedy_accuracy"] for r in results]
    return [
        {"arm": "trl_dpo2", "seed": seed, "curve": curve, "seconds": run_seconds(Path(config.output_dir))}
    ]


def test_table(arms: list[dict[str, Any]]) -> list[str]:
    """Markdown: per arm, the test gain of every seed, their mean, min..max and standard deviation."""
    lines = [
        "| arm | start (SFT) per seed | final per seed | gain per seed | mean gain | min..max | std | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(a["arm"] for a in arms):
        runs = sorted((a for a in arms if a["arm"] == name), key=lambda a: a["seed"])
        gains = [(a["curve"][-1] - a["curve"][0]) * 100 for a in runs]
        spread = statistics.stdev(gains) if len(gains) > 1 else float("nan")
        starts = ", ".join(f"{a['curve'][0]:.3f}" for a in runs)
        finals = ", ".join(f"{a['curve'][-1]:.3f}" for a in runs)
        lines.append(
            f"| {name} | {starts} | {finals} | {', '.join(f'{g:+.1f}' for g in gains)} "
            f"| **{statistics.mean(gains):+.1f}** | {min(gains):+.1f}..{max(gains):+.1f} | {spread:.1f} "
            f"| {statistics.mean(a['seconds'] for a in runs):.0f} |"
        )
    return lines


def table(rows: list[dict[str, Any]], iterations: int) -> list[str]:
    """Markdown: per variant, mean validation accuracy after each iteration, final gain and its spread."""
    lines = [
        "| variant | what | seeds | "
        + " | ".join(f"iter {s}" for s in range(-1, iterations))
        + " | gain (min..max) | seconds |",
        "|---" * (iterations + 6) + "|",
    ]
    for name in dict.fromkeys(row["variant"] for row in rows):
        runs = [row for row in rows if row["variant"] == name]
        means = [statistics.mean(r["validation_curve"][s] for r in runs) for s in range(iterations + 1)]
        gains = [r["validation_curve"][-1] - r["validation_curve"][0] for r in runs]
        seconds = statistics.mean(r["seconds"] for r in runs)
        lines.append(
            f"| {name} | {DESCRIPTIONS[name]} | {len(runs)} | " + " | ".join(f"{a:.3f}" for a in means)
            + f" | {statistics.mean(gains) * 100:+.1f} ({min(gains) * 100:+.1f}..{max(gains) * 100:+.1f}) | {seconds:.0f} |"
        )  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--output", type=Path, default=Path("runs/bench_demo"))
    parser.add_argument("--docs", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument(
        "--test",
        action="store_true",
        help="also evaluate every run on the test split and write demo_test.md (after choosing)",
    )
    args = parser.parse_args()
    console = Console(stderr=True)
    rows = []
    for name in args.variants:
        for seed in args.seeds:
            rows.append(run_variant(name, seed, args.output / f"seed{seed}", console, args.test))
            console.print(f"{name} seed {seed}: validation {rows[-1]['validation_curve']}")
    lines = [
        "# Listwise configuration search on the validation split",
        "",
        f"Command: `python benchmarks/listwise_search.py --seeds {' '.join(map(str, args.seeds))} "
        f"--variants {' '.join(args.variants)}{' --test' if args.test else ''}`. "
        f"{machine_info(threads=torch.get_num_threads())}. Validation greedy accuracy (1,000 problems disjoint from the training and "
        "test problems), mean over the seeds; every variant draws 16,000 samples per iteration from the same "
        "SFT start per seed. Seconds: the run's stages, measured while other jobs shared the machine (compare "
        "loosely).",
        "",
        *table(rows, BASE.iterations),
    ]
    name = "listwise_test" if args.test else "listwise_search"
    if args.test:
        arms = test_rows(rows, args.output, sft_steps_from=args.variants[0])
        lines += [
            "",
            "## Test split (reported once, after choosing on validation)",
            "",
            f"Held-out greedy accuracy on the 1,000 test problems, SFT start and after {BASE.iterations} "
            "iterations; gains in points; seconds: the run's stages (generation, scoring, lists, training, "
            "validation evaluation), SFT excluded.",
            "",
            *test_table(arms),
        ]
    write_markdown(args.docs / f"{name}.md", lines)
    if args.test:
        (args.docs / f"{name}_arms.json").write_text(json.dumps(arms, indent=1))
    (args.docs / f"{name}.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
