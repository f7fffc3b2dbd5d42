"""The demo over several seeds, against 2-sample iterative DPO and two controls.

Run: python benchmarks/demo_seeds.py [--seeds 0 1 2] [--output runs/bench_demo]
Writes docs/benchmarks/demo.md, demo.json and demo.png.

Arms, all from the same SFT start per seed:
- ``default``: ``larpo demo``'s settings (its objective, k candidates for `prompts_per_iteration` prompts);
- ``dpo2``: pairwise (DPO) on 2 samples per prompt for k/2 times as many prompts, the paper's iterative
  DPO baseline, at the same number of generated samples;
- ``rft``: rejection-sampling fine-tuning on the same sampling budget: NLL of the best candidate, with
  the exact-match reward so that only verified-correct answers are imitated (the strongest simple control);
- ``sft``: continued SFT on the same demonstrations for as many optimizer steps as ``default`` took;
- ``trl_dpo2``: TRL's DPOTrainer in place of larpo's trainer on the ``dpo2`` lists, reported when
  ``trl_iterative.py`` has run on the same output folder;
- ``grpo`` (only with ``--arms grpo``, slow): TRL's GRPOTrainer at the same samples per iteration, its
  learning rate chosen on the validation split (``grpo_arm.py``); its row is the chosen rate's test curve.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

from rich.console import Console

from grpo_arm import DEFAULT_LRS, run_arm
from larpo.evaluation.plots import plot_iteration_curves
from larpo.run import run as run_larpo
from larpo.tasks import arithmetic
from larpo.tasks.arithmetic.demo import DemoSettings, run_demo
from studyutil import accuracy_by_iteration, continued_sft, is_finished, rft_control, run_seconds, train_steps


def arms(settings: DemoSettings, output: Path, max_new_tokens: int) -> dict:
    base = settings.run_config(output, max_new_tokens)
    k = settings.num_candidates
    return {
        "dpo2": dataclasses.replace(
            base, output_dir=str(output / "run_dpo2"), objective="pairwise", num_candidates=2,
            prompts_per_iteration=min(settings.train_prompts, settings.prompts_per_iteration * k // 2),
        ),
        "rft": rft_control(base, output / "run_rft"),
    }  # fmt: skip


def add(results: dict, name: str, seed: int, run_dir: Path, iterations: int) -> None:
    """Record a finished run: its accuracy curve and the seconds its stages took (SFT excluded)."""
    results.setdefault(name, []).append(
        (seed, accuracy_by_iteration(run_dir, iterations), run_seconds(run_dir))
    )


def add_grpo(results: dict, args: argparse.Namespace, console: Console) -> None:
    """The GRPO arm: run with ``--arms grpo``, else read from a finished ``grpo.json``; seconds are its
    train stages (generation included) and validation evaluations."""
    path = args.output / "grpo.json"
    if "grpo" in args.arms:
        grpo = run_arm(
            args.seeds, args.grpo_lrs, args.grpo_sweep_seeds or args.seeds[:1], args.output, console
        )
    elif path.exists():
        grpo = json.loads(path.read_text())
    else:
        return
    for row in grpo["chosen"]:
        if row["seed"] in args.seeds:
            seconds = row["train_seconds"] + row["validation_eval_seconds"]
            results.setdefault("grpo", []).append((row["seed"], row["test_curve"], seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output", type=Path, default=Path("runs/bench_demo"))
    parser.add_argument("--docs", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument(
        "--arms",
        nargs="+",
        default=["dpo2", "rft", "sft"],
        choices=["dpo2", "rft", "sft", "grpo"],
        help="arms to run besides default (finished runs of the others are still reported)",
    )
    parser.add_argument(
        "--grpo-lrs", type=float, nargs="+", default=DEFAULT_LRS, help="GRPO learning rates to sweep"
    )
    parser.add_argument(
        "--grpo-sweep-seeds", type=int, nargs="+", default=None, help="default: the first seed"
    )
    args = parser.parse_args()
    console = Console(stderr=True)
    results: dict[str, list[tuple[int, list[float], float]]] = {}  # arm -> (seed, curve, seconds)
    for seed in args.seeds:
        settings = DemoSettings(seed=seed)
        output = args.output / f"seed{seed}"
        run_demo(output, settings, console)
        add(results, "default", seed, output / "run", settings.iterations)
        train, heldout = arithmetic.train_and_heldout_splits(
            settings.train_prompts, settings.heldout_prompts, seed
        )
        for name, config in arms(settings, output, arithmetic.answer_budget(train + heldout)).items():
            run_dir = Path(config.output_dir)
            if name in args.arms:
                run_larpo(config, console=console)
            if is_finished(run_dir, settings.iterations):  # else: not run
                add(results, name, seed, run_dir, settings.iterations)
        trl_dir = output / "run_trl_dpo2"  # written by trl_iterative.py
        if is_finished(trl_dir, settings.iterations):
            add(results, "trl_dpo2", seed, trl_dir, settings.iterations)
        if "sft" in args.arms:
            started = time.perf_counter()
            curve = continued_sft(output, settings, train_steps(output / "run", settings.iterations))
            results.setdefault("sft", []).append((seed, curve, time.perf_counter() - started))
    add_grpo(results, args, console)
    curves = {name: [curve for _, curve, _ in entries] for name, entries in results.items()}
    rows = []
    settings = DemoSettings()
    lines = [
        "# Demo over seeds: default objective vs 2-sample iterative DPO, RFT and continued SFT",
        "",
        f"Command: `python benchmarks/demo_seeds.py --seeds {' '.join(map(str, args.seeds))}`. "
        f"Held-out greedy accuracy (exact match) on {settings.heldout_prompts} problems; iteration -1 is the SFT "
        f"start. default, dpo2, rft and grpo draw {settings.num_candidates * settings.prompts_per_iteration} samples per "
        "iteration; sft draws none (it trains on the flawed demonstrations for as many steps as default).",
        "",
        "| arm | seed | "
        + " | ".join(f"iter {s}" for s in range(-1, settings.iterations))
        + " | gain | LarPO seconds |",
        "|---" * (settings.iterations + 5) + "|",
    ]
    for name, entries in results.items():
        for seed, curve, took in entries:
            cells = " | ".join(f"{a:.3f}" for a in curve)
            lines.append(f"| {name} | {seed} | {cells} | {curve[-1] - curve[0]:+.3f} | {took:.0f} |")
            rows.append({"arm": name, "seed": seed, "curve": curve, "seconds": took})
    lines += [
        "",
        "| arm | seeds | mean gain | min gain | max gain | std | worst drop below SFT | mean seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, per_seed in curves.items():
        gains = [c[-1] - c[0] for c in per_seed]
        drops = [min(c) - c[0] for c in per_seed]
        spread = statistics.stdev(gains) if len(gains) > 1 else float("nan")
        seconds = statistics.mean(took for _, _, took in results[name])
        lines.append(
            f"| {name} | {len(gains)} | {statistics.mean(gains):+.3f} | {min(gains):+.3f} | {max(gains):+.3f} "
            f"| {spread:.3f} | {min(drops):+.3f} | {seconds:.0f} |"
        )
    mean_rows = [
        {
            "iteration": s - 1,
            **{name: statistics.mean(c[s] for c in per_seed) for name, per_seed in curves.items()},
        }
        for s in range(settings.iterations + 1)
    ]
    args.docs.mkdir(parents=True, exist_ok=True)
    plot_iteration_curves(mean_rows, list(curves), args.docs / "demo.png")
    lines += ["", "![mean held-out greedy accuracy per iteration, over the seeds each arm ran](demo.png)", ""]
    (args.docs / "demo.md").write_text("\n".join(lines))
    (args.docs / "demo.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
