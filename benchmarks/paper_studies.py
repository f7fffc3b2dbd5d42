"""The paper's analyses on the arithmetic task (issue #6 items 1-5) and a learning-rate sweep per objective.

Run: python benchmarks/paper_studies.py --study {objectives,negatives,temperature,listsize,memorization,lr}
         [--seeds 0 1 2] [--rewards graded exact] [--output runs/studies] [--quick]
Writes docs/benchmarks/<study>.md, <study>.png and <study>.json from every arm that has finished
(paper_studies_report.py); the arms are in paper_study_arms.py.

Layout of ``--output``, per seed ``seed_<s>/``: the demo's prompt files and SFT start ``sft/`` (built once,
as ``larpo demo`` builds them, and shared by every study); the two controls, ``controls/rft`` (a LarPO run)
and ``controls/sft.json`` (continued SFT), shared by every study and reward; and ``<study>/<reward>/<arm>/``,
one resumable LarPO run per arm. Re-running a command skips finished arms and resumes unfinished ones. An
arm whose settings equal a finished arm of another study (objectives/contrastive = temperature/temp1.0 =
listsize/k8 = memorization/current) is a symlink to it, not a second run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from rich.console import Console

from benchutil import portable_command
from larpo.io import atomic_write_json
from larpo.run import RunContext, execute
from larpo.run.config import RunConfig
from larpo.tasks.arithmetic.demo import REWARDS, DemoSettings, prepare_start
from paper_studies_report import report
from paper_study_arms import (
    CONTROLS,
    DEFAULT_REWARDS,
    DEFAULT_SEEDS,
    STUDIES,
    arm_config,
    sft_steps_per_iteration,
    study_settings,
)
from studyutil import continued_sft, is_finished, rft_control


# ---------------------------------------------------------------- running
def run_arm(config: RunConfig, seed_dir: Path, console: Console) -> None:
    """Run or resume one arm; link it to a finished run of the same settings instead when there is one."""
    run_dir = Path(config.output_dir)
    if is_finished(run_dir, config.iterations):
        return
    if not run_dir.exists():
        twin = next((d for d in matching_runs(seed_dir, config) if is_finished(d, config.iterations)), None)
        if twin is not None:
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            run_dir.symlink_to(os.path.relpath(twin, run_dir.parent), target_is_directory=True)
            console.print(f"{run_dir}: same settings as the finished {twin}; linked")
            return
    context = RunContext.open(config, console)
    copy_initial_eval(context, seed_dir)
    console.print(f"[bold]{run_dir}[/bold]")
    execute(context)


# What the SFT start's held-out evaluation depends on (the loop evaluates it with these alone).
INITIAL_EVAL_KEYS = (
    "model", "eval_prompts", "reward", "eval_reward", "eval_samples", "eval_temperatures", "eval_ks",
    "eval_threshold", "max_new_tokens", "seed", "dtype", "generator", "generation_batch_size",
)  # fmt: skip


def copy_initial_eval(run: RunContext, seed_dir: Path) -> None:
    """Give a new run the SFT start's evaluation of an earlier run with the same evaluation settings
    (the loop then reads it instead of sampling the held-out set again)."""
    target = run.run_dir / "eval" / "initial.json"
    if run.run_dir.exists():
        return
    for other in matching_runs(seed_dir, run.config, INITIAL_EVAL_KEYS):
        if (other / "eval" / "initial.json").exists():
            target.parent.mkdir(parents=True)
            run.manifest.save()  # first: a directory without a manifest is refused on resume
            shutil.copyfile(other / "eval" / "initial.json", target)
            return


def matching_runs(seed_dir: Path, config: RunConfig, keys: tuple[str, ...] | None = None) -> list[Path]:
    """Real (not linked) run directories under ``seed_dir`` whose settings equal ``config``'s on ``keys``
    (default: every setting but ``output_dir``)."""
    wanted = json.loads(json.dumps(config.to_dict()))
    keys = keys or tuple(k for k in wanted if k != "output_dir")
    found = []
    for manifest in sorted(
        [*seed_dir.glob("*/*/*/manifest.json"), *seed_dir.glob("controls/*/manifest.json")]
    ):
        stored = json.loads(manifest.read_text())["config"]
        if not manifest.parent.is_symlink() and all(stored.get(k) == wanted[k] for k in keys):
            found.append(manifest.parent)
    return found


def run_controls(
    settings: DemoSettings, seed_dir: Path, budget: int, arms: list[str], console: Console
) -> None:
    """The seed's rft run and continued-SFT curve (those in ``arms``), unless already there."""
    if "rft" in arms:
        rft = rft_control(settings.run_config(seed_dir, budget), seed_dir / "controls" / "rft")
        run_arm(rft, seed_dir, console)
    path = seed_dir / "controls" / "sft.json"
    if "sft" in arms and not path.exists():
        console.print(f"[bold]{path}[/bold]: continued SFT")
        steps = [sft_steps_per_iteration(settings)] * settings.iterations
        started = time.perf_counter()
        curve = continued_sft(seed_dir, settings, steps)
        atomic_write_json(path, {"steps": steps, "curve": curve, "seconds": time.perf_counter() - started})


def run_seed(study: str, seed: int, rewards: list[str], output: Path, quick: bool, arms: list[str]) -> None:
    """The seed's SFT start, its controls, then every arm of ``study`` for every reward (those in ``arms``)."""
    console = Console(stderr=True)
    settings, seed_dir = study_settings(seed, quick), output / f"seed_{seed}"
    budget = prepare_start(seed_dir, settings, console)
    if study != "lr":
        run_controls(settings, seed_dir, budget, arms, console)
    for reward in rewards:
        for arm in arms:
            if arm in STUDIES[study]:
                config = arm_config(
                    settings, seed_dir, budget, reward, STUDIES[study][arm], seed_dir / study / reward / arm
                )
                run_arm(config, seed_dir, console)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", required=True, choices=sorted(STUDIES))
    parser.add_argument("--seeds", type=int, nargs="+", help="default: 0 1 2 (lr: 0)")
    parser.add_argument(
        "--rewards", nargs="+", choices=sorted(REWARDS), help="default: graded exact (lr: graded)"
    )
    parser.add_argument("--output", type=Path, help="default: runs/studies (--quick: runs/studies_quick)")
    parser.add_argument("--docs", type=Path, help="default: docs/benchmarks (--quick: <output>/docs)")
    parser.add_argument("--arms", nargs="+", help="run only these arms (and controls: rft, sft); report all")
    parser.add_argument("--report-only", action="store_true", help="run nothing; report the finished arms")
    parser.add_argument(
        "--quick", action="store_true", help="tiny settings: a smoke check, not a measurement"
    )
    args = parser.parse_args()
    seeds = args.seeds or DEFAULT_SEEDS.get(args.study, [0, 1, 2])
    rewards = args.rewards or DEFAULT_REWARDS.get(args.study, ["graded", "exact"])
    output = args.output or Path("runs/studies_quick" if args.quick else "runs/studies")
    docs = args.docs or (output / "docs" if args.quick else Path("docs/benchmarks"))
    arms = args.arms or [*STUDIES[args.study], *CONTROLS]
    unknown = set(arms) - set(STUDIES[args.study]) - set(CONTROLS)
    if unknown:
        parser.error(f"--arms: {', '.join(sorted(unknown))} not in study {args.study}")
    command = portable_command(sys.argv)
    for seed in seeds if not args.report_only else []:
        run_seed(args.study, seed, rewards, output, args.quick, arms)
        report(args.study, seeds, rewards, output, args.quick, docs, command)  # a partial run still reports
    print(report(args.study, seeds, rewards, output, args.quick, docs, command))


if __name__ == "__main__":
    main()
