"""LarPO against RFT, TRL DPO and TRL GRPO on any task: settings chosen on validation, then tested on seeds.

Run: python benchmarks/study.py --task arithmetic --model runs/smollm2 [--arms larpo rft trl_dpo grpo]
     [--variants base exact ...] [--lrs 5e-6 1e-5 2e-5] [--seeds 0 1 2] [--keep-top 3]
     [--budget-seconds S] [--output runs/study_<task>] [--docs docs/benchmarks] [--set KEY=VALUE ...]
A task is a preset (``--task arithmetic`` or ``instructions``: examples/chat's rewards and prompts folder,
from the starting config in benchmarks/study_configs) or given by ``--name --prompts --reward --exact-reward
--config`` (and ``--grpo-reward``, GRPO's reward: the exact one unless given), each of which also overrides
a preset's. The prompts folder holds train/validation/test.jsonl (``python -m larpo.tasks.arithmetic.chat
--output runs/chat_arithmetic`` or ``python -m larpo.tasks.instructions --output runs/instructions``).

1. Search (seed 0, at equal samples): every arm at every ``--lrs`` learning rate, greedy exact accuracy on
   the first ``--validation-prompts`` validation prompts. Each arm keeps its best learning rate (ties: the
   smaller); larpo's variants (study_arms.VARIANTS, each one change to the task's config, plus any
   ``--variant``) are ranked by their best: the first is ``larpo``, the next ``--keep-top`` - 1 are tested as
   ablations, the rest are cut.
2. Equal samples: each kept arm on every seed, tested once (greedy accuracy and pass@1 at T=1 on the test
   split, ``larpo eval``'s code): ``<docs>/<task>_equal_samples.json`` and ``.md``.
3. Equal compute: each run continued until the stage-seconds budget (``--budget-seconds``; default the largest
   arm's mean at equal samples, usually GRPO's) is spent (study_arms.equal_compute_iterations), then tested:
   ``<docs>/<task>_equal_compute.json`` and ``.md``. Measure it one run at a time on an idle machine.

Every run and evaluation is cached in its folder (study_runs), so the same command resumes a stopped study.
Every measurement is also recorded in the study's ledger (``--ledger``, study_ledger), kept with the result
files, so that the command continues the study in a new checkout without the run folders: it trains only
what the ledger lacks. ``--search-only`` stops after step 1.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from benchutil import machine_info, portable_command
from study_arms import (
    ARMS,
    BASELINES,
    PRESETS,
    VARIANTS,
    Arm,
    baseline_arm,
    beyond_edge,
    choose_lr,
    larpo_arms,
    make_task,
    parse_variant,
    ranked,
)
from study_report import report
from study_runs import Study

Tested = tuple[str, Arm, float]
"""An arm on test: its name in the result files, the arm, its chosen learning rate."""


def search(
    study: Study, arms: list[Arm], lrs: list[float], console: Console, edge_steps: int = 0
) -> dict[str, Any]:
    """Step 1: the validation table, each arm's chosen learning rate, larpo's ranked variants. An arm whose
    best learning rate is the grid's largest (smallest) also tries twice (half) that, up to ``edge_steps``
    more, the same rule for every arm."""
    initial = study.pretrained("validation")
    rows, chosen = [], {}
    for arm in arms:
        scores: dict[float, float] = {}
        past_edge = iter(functools.partial(beyond_edge, scores, edge_steps + len(lrs)), None)
        for lr in itertools.chain(lrs, past_edge):
            rows.append(study.validated(arm, lr, console))
            scores[lr] = rows[-1]["greedy_accuracy"]
        chosen[arm.key] = choose_lr(scores)
    best = {r["arm"]: r["greedy_accuracy"] for r in rows if r["learning_rate"] == chosen[r["arm"]]}
    order = ranked({arm.key: best[arm.key] for arm in arms if not arm.is_baseline})
    return {"prompts": initial["prompts"], "initial": initial, "search": rows, "learning_rates": chosen,
            "larpo": order[0] if order else None, "larpo_ranking": order}  # fmt: skip


def tested_arms(arms: list[Arm], validation: dict[str, Any], keep_top: int) -> list[Tested]:
    """The arms tested on every seed: ``larpo`` (the validated variant), the next ``keep_top`` - 1 variants
    as ablations (named by their key), and the baselines."""
    by_key = {arm.key: arm for arm in arms}
    kept = validation["larpo_ranking"][:keep_top]
    names = {key: "larpo" if i == 0 else key for i, key in enumerate(kept)}
    names |= {arm.key: arm.key for arm in arms if arm.is_baseline}
    return [(name, by_key[key], validation["learning_rates"][key]) for key, name in names.items()]


def equal_samples(study: Study, tested: list[Tested], seeds: list[int], console: Console) -> list[dict]:
    """Step 2: every tested arm on every seed at equal samples."""
    return [
        {**study.row(name, arm, study.config(arm, seed, lr), console), "run": f"{arm.key}_lr{lr:g}"}
        for seed in seeds
        for name, arm, lr in tested
    ]


def equal_compute(study: Study, tested: list[Tested], seeds: list[int], budget: float, console: Console):
    """Step 3: every tested arm on every seed, its run continued until ``budget`` stage seconds are spent."""
    rows = []
    for seed in seeds:
        for name, arm, lr in tested:
            extended = study.extend_to_budget(arm, study.config(arm, seed, lr), budget, console)
            rows.append({**study.row(name, arm, extended, console), "run": f"{arm.key}_lr{lr:g}"})
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=list(PRESETS), help="a preset task (each setting overridable)")
    parser.add_argument("--name", help="the task's name in the result files")
    parser.add_argument("--prompts", type=Path, help="folder of train/validation/test.jsonl")
    parser.add_argument("--reward", help="training reward, module:function")
    parser.add_argument("--exact-reward", help="evaluation reward, module:function (1.0 = correct)")
    parser.add_argument("--config", type=Path, help="the base config YAML of every arm")
    parser.add_argument("--grpo-reward", help="GRPO's reward, module:function (default: --exact-reward)")
    parser.add_argument(
        "--model", type=Path, required=True, help="the pretrained model every arm starts from"
    )
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS),
                        help="larpo's variants searched on validation (default: all)")  # fmt: skip
    parser.add_argument("--variant", action="append", default=[], metavar="'NAME KEY=VALUE ...'",
                        help="another larpo variant: settings on the task's config")  # fmt: skip
    parser.add_argument("--lrs", type=float, nargs="+", default=[5e-6, 1e-5, 2e-5])
    parser.add_argument("--edge-steps", type=int, default=0,
                        help="learning rates an arm may add past the grid's edge when its best is there")  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--keep-top", type=int, default=3, help="larpo variants tested on every seed")
    parser.add_argument("--validation-prompts", type=int, default=200)
    parser.add_argument("--budget-seconds", type=float,
                        help="equal compute's budget (default: the costliest arm's mean at equal samples)")  # fmt: skip
    parser.add_argument("--equal-samples-only", action="store_true", help="skip the equal-compute runs")
    parser.add_argument("--search-only", action="store_true",
                        help="stop after the validation search: no test run, no result file")  # fmt: skip
    parser.add_argument("--output", type=Path, help="default runs/study_<task>")
    parser.add_argument("--docs", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument("--ledger", type=Path,
                        help="the study's record of every measurement (default <docs>/<task>_study_ledger.jsonl)")  # fmt: skip
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting of every arm's config (e.g. a smoke run's sizes)")  # fmt: skip
    args = parser.parse_args(argv)
    if len(args.lrs) < 3:
        print("note: fewer than 3 learning rates; the study's protocol searches at least 3", file=sys.stderr)
    return args


def compute_budget(given: float | None, rows: list[dict[str, Any]]) -> tuple[float | None, str]:
    """Equal compute's stage-seconds budget and where it comes from: ``--budget-seconds``, else the largest
    mean stage seconds of an arm at equal samples (usually GRPO's), so that no arm gets less than its
    equal-samples run and the cheaper arms spend the difference on more iterations (None without rows)."""
    if given is not None:
        return given, "--budget-seconds"
    by_arm: dict[str, list[float]] = {}
    for row in rows:
        if row["seconds"] is not None:  # a carried-over result whose seconds were not recorded
            by_arm.setdefault(row["arm"], []).append(row["seconds"])
    if not by_arm:
        return None, ""
    arm = max(by_arm, key=lambda name: statistics.mean(by_arm[name]))
    return statistics.mean(by_arm[arm]), f"{arm}'s mean stage seconds at equal samples (the largest)"


def study_arms_of(args: argparse.Namespace, study: Study) -> list[Arm]:
    """larpo's variants (``--variants``, then each ``--variant``) and the baselines of ``--arms``."""
    base, task = study.base(), study.task
    arms = []
    if "larpo" in args.arms:
        variants = {**VARIANTS, **dict(parse_variant(text) for text in args.variant)}
        names = args.variants + [text.split()[0] for text in args.variant]
        arms += larpo_arms(names, base, task, variants)
    return arms + [baseline_arm(name, base, task) for name in BASELINES if name in args.arms]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    console = Console(stderr=True)
    fields = {"name": args.name, "prompts": args.prompts, "reward": args.reward,
              "exact_reward": args.exact_reward, "config": args.config, "grpo_reward": args.grpo_reward}  # fmt: skip
    task = make_task(args.task, **fields)
    machine = machine_info(torch.get_num_threads(), alone=True)  # measured one run at a time
    study = Study(task, args.model, args.output or Path(f"runs/study_{task.name}"), tuple(args.overrides),
                  args.validation_prompts, args.ledger or args.docs / f"{task.name}_study_ledger.jsonl", machine)  # fmt: skip
    arms = study_arms_of(args, study)
    validation = search(study, arms, args.lrs, console, args.edge_steps)
    if args.search_only:
        return
    tested = tested_arms(arms, validation, args.keep_top)
    validation["tested"] = {arm.key: name for name, arm, _ in tested}
    what = {name: arm.what for name, arm, _ in tested}
    common = {
        "task": task.name,
        "command": portable_command([__file__, *argv], {"--model": "MODEL_DIR", "--prompts": "PROMPTS_DIR"}),
        "machine": machine,
        "initial_test": study.pretrained("test"),
        "validation": validation,
    }
    rows = equal_samples(study, tested, args.seeds, console)
    report(task.name, "equal_samples", {**common, "stage_hours": study.stage_hours(), "runs": rows}, what,
           args.docs)  # fmt: skip
    budget, source = compute_budget(args.budget_seconds, rows)
    if args.equal_samples_only:
        return
    if budget is None:
        console.print("equal compute skipped: no run to measure its budget, and no --budget-seconds")
        return
    rows = equal_compute(study, tested, args.seeds, budget, console)
    result = {
        **common,
        "budget_seconds": budget,
        "budget_from": source,
        "stage_hours": study.stage_hours(),
    }
    report(task.name, "equal_compute", {**result, "runs": rows}, what, args.docs)


if __name__ == "__main__":
    main()
