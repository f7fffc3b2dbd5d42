"""GRPO (TRL's GRPOTrainer) on the demo task: larpo's SFT start, samples per iteration, reward and evaluation.

Run: python benchmarks/grpo_arm.py [--seeds 0 1 2] [--lrs 3e-5 1e-4 3e-4] [--sweep-seeds 0] [--output runs/bench_demo]
Writes <output>/grpo.json and prints a table. ``--quick``: a smoke run with tiny settings (runs/grpo_quick). ``listwise_search.py --test`` reports it beside the other arms.

Per seed, from the demo's SFT start ``<output>/seed<N>/sft`` (made when missing), each learning rate is a
:func:`larpo.baselines.grpo.run_grpo` in ``run_grpo_lr<lr>``: the demo's config (iterations, prompts per
iteration, k samples per prompt, reward, temperature, max_new_tokens, batch of prompts per step) with
GRPOTrainer as the trainer, evaluated after every iteration on the validation split only. The learning
rate is chosen by the mean final validation greedy accuracy over ``--sweep-seeds`` and run on the other
seeds; then the chosen run of every seed (its SFT start and every iteration) is evaluated once on the test
split (``heldout_prompts.jsonl``), with the settings a larpo run evaluates its held-out prompts with.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path
from typing import Any

from rich.console import Console

from larpo.baselines.grpo import run_grpo
from larpo.io import atomic_write_json
from larpo.run.config import RunConfig
from larpo.tasks.arithmetic.demo import DemoSettings, prepare_start
from studyutil import accuracy_by_iteration, evaluate_on_test

# The demo's sampling budget and schedule with the graded reward, GRPO's densest signal, kept fixed when the
# demo's own LarPO settings change so that finished GRPO runs stay resumable.
GRPO_SETTINGS = DemoSettings(
    reward="graded", iterations=6, prompts_per_iteration=2000, num_candidates=8, batch_size=16, warmup_ratio=0.1,
    lr_scheduler_type="constant", temperature=1.0, objective="contrastive", memorization="previous", beta=0.1,
    nll_weight=0.5, epochs=2.0, eval_samples=16, eval_samples_between=4,
)  # fmt: skip
DEFAULT_LRS = [3e-5, 1e-4, 3e-4]  # around larpo's 1e-4; TRL's default 1e-6 is for large models
QUICK = dict(iterations=2, prompts_per_iteration=32, train_prompts=600, heldout_prompts=100, validation_prompts=100,
             sft_steps=50, eval_samples=4)  # fmt: skip


def grpo_config(settings: DemoSettings, output: Path, max_new_tokens: int, learning_rate: float) -> RunConfig:
    """The demo's run config with GRPO's learning rate, its own run directory and validation evaluation."""
    return dataclasses.replace(
        settings.run_config(output, max_new_tokens),
        output_dir=str(output / f"run_grpo_lr{learning_rate:g}"),
        learning_rate=learning_rate,
        eval_prompts=str(output / "validation_prompts.jsonl"),
    )


def run_learning_rate(
    settings: DemoSettings, seed: int, output: Path, learning_rate: float, console: Console
) -> RunConfig:
    """Run (or resume) GRPO at ``learning_rate`` from seed ``seed``'s SFT start; its config."""
    settings = dataclasses.replace(settings, seed=seed)
    max_new_tokens = prepare_start(output, settings, console)  # prompt files; the SFT start when missing
    config = grpo_config(settings, output, max_new_tokens, learning_rate)
    run_grpo(config, console)
    return config


def stage_seconds(run_dir: Path, stage: str) -> float:
    """Seconds the run's ``stage`` stages took, from its ``log.jsonl``."""
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return sum(entry["seconds"] for entry in log if entry.get("stage") == stage)


def summary(config: RunConfig, test: list[dict[str, Any]] | None) -> dict[str, Any]:
    """One GRPO run: validation curve, test curve and final metrics (when evaluated), seconds, samples."""
    run_dir = Path(config.output_dir)
    stats = [
        json.loads((run_dir / f"iter_{s}" / "train_stats.json").read_text()) for s in range(config.iterations)
    ]
    row: dict[str, Any] = {
        "learning_rate": config.learning_rate,
        "validation_curve": accuracy_by_iteration(run_dir, config.iterations),
        "train_seconds": stage_seconds(run_dir, "train"),  # GRPOTrainer: generation and optimisation
        "validation_eval_seconds": stage_seconds(run_dir, "eval"),
        "completions_per_iteration": [x["completions"] for x in stats],
        "steps_per_iteration": [x["steps"] for x in stats],
        "loss_type": stats[0]["loss_type"],
    }
    if test is not None:
        final = test[-1]
        row.update(test_curve=[r["greedy_accuracy"] for r in test], test_greedy_accuracy=final["greedy_accuracy"],
                   test_pass_at_k=final["pass_at_k"], test_mean_reward=final["mean_reward"])  # fmt: skip
    return row


def choose_learning_rate(sweep: dict[float, list[RunConfig]]) -> float:
    """The learning rate whose runs end with the best mean validation greedy accuracy."""

    def final_validation(lr: float) -> float:
        return statistics.mean(accuracy_by_iteration(Path(c.output_dir), c.iterations)[-1] for c in sweep[lr])

    return max(sweep, key=final_validation)


def run_arm(
    seeds: list[int],
    lrs: list[float],
    sweep_seeds: list[int],
    output: Path,
    console: Console,
    settings: DemoSettings = GRPO_SETTINGS,
) -> dict:
    """The sweep, the choice, the chosen runs and their test evaluation; written to ``<output>/grpo.json``.

    ``settings``: the demo's (its seed is replaced by each seed's)."""
    sweep = {
        lr: [run_learning_rate(settings, seed, output / f"seed{seed}", lr, console) for seed in sweep_seeds]
        for lr in lrs
    }  # fmt: skip
    chosen = choose_learning_rate(sweep)
    console.print(f"GRPO: learning rate {chosen:g} chosen on validation (seeds {sweep_seeds})")
    result: dict[str, Any] = {
        "sweep_seeds": sweep_seeds,
        "chosen_learning_rate": chosen,
        "sweep": {
            f"{lr:g}": [
                dict(seed=seed, **summary(c, None)) for seed, c in zip(sweep_seeds, configs, strict=True)
            ]
            for lr, configs in sweep.items()
        },  # fmt: skip
        "chosen": [],
    }
    for seed in seeds:
        config = run_learning_rate(settings, seed, output / f"seed{seed}", chosen, console)
        test = evaluate_on_test(config, output / f"seed{seed}")
        result["chosen"].append(dict(seed=seed, **summary(config, test)))
    atomic_write_json(output / "grpo.json", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lrs", type=float, nargs="+", default=DEFAULT_LRS, help="learning rates to sweep")
    parser.add_argument("--sweep-seeds", type=int, nargs="+", default=None, help="default: the first seed")
    parser.add_argument(
        "--output", type=Path, default=None, help="default runs/bench_demo (quick: runs/grpo_quick)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: tiny settings in their own output folder"
    )
    args = parser.parse_args()
    settings = dataclasses.replace(GRPO_SETTINGS, **QUICK) if args.quick else GRPO_SETTINGS
    output = args.output or Path("runs/grpo_quick" if args.quick else "runs/bench_demo")
    sweep_seeds = args.sweep_seeds or args.seeds[:1]
    result = run_arm(args.seeds, args.lrs, sweep_seeds, output, Console(stderr=True), settings)
    print(f"chosen learning rate {result['chosen_learning_rate']:g} (validation, seeds {sweep_seeds})")
    for lr, rows in result["sweep"].items():
        for row in rows:
            curve = " ".join(f"{a:.3f}" for a in row["validation_curve"])
            print(f"lr {lr} seed {row['seed']}: validation {curve}  train {row['train_seconds']:.0f} s")
    for row in result["chosen"]:
        curve = " ".join(f"{a:.3f}" for a in row["test_curve"])
        print(f"chosen, seed {row['seed']}: test {curve}  gain {row['test_curve'][-1] - row['test_curve'][0]:+.3f}  "
              f"pass@k {row['test_pass_at_k']}  train {row['train_seconds']:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
