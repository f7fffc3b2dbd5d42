"""Each arm's learning rates validated at the equal-compute budget, not at equal samples (seed 0).

Run: python benchmarks/study_budget_lrs.py --task arithmetic --model runs/smollm2 --budget-seconds 297
     --arm rft 1e-5 2e-5 4e-5 --arm larpo_exact_all_tied_kept 5e-6 1e-5 2e-5 [--output runs/study_arithmetic]
     [--variant 'NAME KEY=VALUE ...'] [--set KEY=VALUE ...]

benchmarks/study.py chooses every learning rate after the equal-samples iterations; at equal compute an arm runs
as many iterations as the budget buys, where another learning rate may do better. This check trains seed 0 of
each ``--arm KEY LR ...`` (a baseline, or ``larpo_<variant>`` of study_arms.VARIANTS or a ``--variant``, as in benchmarks/study.py) at each learning rate until the budget is spent
(the study's rule, on the stage seconds measured here), then validates it greedily on the study's fixed subset.
Runs whose folder holds the iterations already are reused. ``--test-seeds`` then tests each arm's chosen
learning rate on those seeds at the budget. Its own ledger (``--ledger``, default
``<output>/budget_lrs_ledger.jsonl``) keeps the study's ledger, whose seconds may come from another machine, out
of the iteration counts. Writes ``<docs>/<task>_budget_lrs.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from rich.console import Console

from benchutil import machine_info, portable_command, write_markdown
from study import equal_compute
from study_arms import PRESETS, VARIANTS, baseline_arm, choose_lr, larpo_arms, make_task, parse_variant
from study_runs import Study


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=list(PRESETS), required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--budget-seconds", type=float, required=True)
    parser.add_argument("--arm", nargs="+", action="append", required=True, metavar="KEY LR")
    parser.add_argument("--variant", action="append", default=[], metavar="'NAME KEY=VALUE ...'",
                        help="another larpo variant: settings on the task's config")  # fmt: skip
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting on every arm's config, as the study's --set")  # fmt: skip
    parser.add_argument("--output", type=Path, help="the study's output folder (default runs/study_<task>)")
    parser.add_argument("--ledger", type=Path)
    parser.add_argument(
        "--test-seeds",
        type=int,
        nargs="*",
        default=[],
        help="then test each arm's chosen learning rate on these seeds at the budget",
    )
    parser.add_argument("--docs", type=Path, default=Path("docs/benchmarks"))
    return parser.parse_args(argv)


def arm_of(key: str, study: Study, variants: dict = VARIANTS):
    """The study's arm called ``key``: a baseline's name or ``larpo_<variant>`` of ``variants``."""
    base, task = study.base(), study.task
    if key.startswith("larpo_"):
        return larpo_arms([key.removeprefix("larpo_")], base, task, variants)[0]
    return baseline_arm(key, base, task)


def validated_at_budget(
    study: Study, arms: list[list[str]], budget: float, console: Console, variants: dict = VARIANTS
) -> list[dict]:
    """Seed 0 of each arm at each of its learning rates, run until ``budget`` is spent, then validated."""
    rows = []
    for key, *lrs in arms:
        arm = arm_of(key, study, variants)
        for lr in map(float, lrs):
            config = study.extend_to_budget(arm, study.config(arm, 0, lr), budget, console)
            rows.append({"arm": key, "learning_rate": lr,
                         **study.trained_and_measured("validation", arm, config, console)})  # fmt: skip
    return rows


def chosen_learning_rates(rows: list[dict]) -> dict[str, float]:
    """Each arm's learning rate with the best validation at the budget (ties: the smaller)."""
    arms = dict.fromkeys(r["arm"] for r in rows)
    return {
        key: choose_lr({r["learning_rate"]: r["greedy_accuracy"] for r in rows if r["arm"] == key})
        for key in arms
    }


def report_lines(result: dict) -> list[str]:
    """The Markdown report of ``result``: the validation at the budget, then the test rows."""
    chosen, rows = result["chosen"], result["runs"]
    lines = [f"# {result['task']}: learning rates validated at the equal-compute budget (seed 0)", "",
             f"Command: `{result['command']}`. {result['machine']}. Budget {result['budget_seconds']:g} stage "
             "seconds; greedy accuracy on the study's 200 validation prompts.", "",
             "| arm | lr | iterations | stage seconds | validation greedy | chosen |", "|---|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {r['arm']} | {r['learning_rate']:g} | {r['iterations']} | {r['seconds']:.0f} | "
              f"{r['greedy_accuracy']:.3f} | {'yes' if chosen[r['arm']] == r['learning_rate'] else ''} |"
              for r in rows]  # fmt: skip
    if result["test"]:
        initial = result["initial_test"]["greedy_accuracy"]
        lines += ["", f"Test split at the chosen learning rates (pretrained {initial:.3f}):", "",
                  "| arm | lr | seed | iterations | test greedy | pass@1 | gain | stage seconds |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        lines += [f"| {r['arm']} | {r['learning_rate']:g} | {r['seed']} | {r['iterations']} | "
                  f"{r['greedy_accuracy']:.3f} | {r['pass_at_1']:.3f} | {100 * (r['greedy_accuracy'] - initial):+.1f} | "
                  f"{r['seconds']:.0f} |" for r in result["test"]]  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    console = Console(stderr=True)
    task = make_task(args.task)
    output = args.output or Path(f"runs/study_{task.name}")
    machine = machine_info(torch.get_num_threads(), alone=True)
    ledger = args.ledger or output / "budget_lrs_ledger.jsonl"
    study = Study(task, args.model, output, tuple(args.overrides), 200, ledger, machine)
    variants = {**VARIANTS, **dict(parse_variant(text) for text in args.variant)}
    rows = validated_at_budget(study, args.arm, args.budget_seconds, console, variants)
    chosen = chosen_learning_rates(rows)
    tested = [(key, arm_of(key, study, variants), lr) for key, lr in chosen.items()]
    test = equal_compute(study, tested, args.test_seeds, args.budget_seconds, console)
    command = portable_command(["benchmarks/study_budget_lrs.py", *(sys.argv[1:] if argv is None else argv)],
                               {"--model": "MODEL_DIR"})  # fmt: skip
    result = {"task": task.name, "command": command, "machine": machine, "budget_seconds": args.budget_seconds,
              "runs": rows, "chosen": chosen, "initial_validation": study.pretrained("validation"),
              "initial_test": study.pretrained("test") if test else None, "test": test}  # fmt: skip
    args.docs.mkdir(parents=True, exist_ok=True)
    (args.docs / f"{task.name}_budget_lrs.json").write_text(json.dumps(result, indent=1))
    write_markdown(args.docs / f"{task.name}_budget_lrs.md", report_lines(result))


if __name__ == "__main__":
    main()
