"""The paper's analyses on the arithmetic task (issue #6 items 1-5) and a learning-rate sweep per objective.

Run: python benchmarks/paper_studies.py --study {objectives,negatives,temperature,listsize,memorization,lr}
         [--seeds 0 1 2] [--rewards graded exact] [--output runs/studies] [--quick]
Writes docs/benchmarks/<study>.md, <study>.png and <study>.json from every arm that has finished.

Layout of ``--output``, per seed ``seed_<s>/``: the demo's prompt files and SFT start ``sft/`` (built once,
as ``larpo demo`` builds them, and shared by every study); the two controls, ``controls/rft`` (a LarPO run)
and ``controls/sft.json`` (continued SFT), shared by every study and reward; and ``<study>/<reward>/<arm>/``,
one resumable LarPO run per arm. Re-running a command skips finished arms and resumes unfinished ones. An
arm whose settings equal a finished arm of another study (objectives/contrastive = temperature/temp1.0 =
listsize/k8 = memorization/current) is a symlink to it, not a second run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker
from rich.console import Console

from benchutil import portable_command, save_figure
from larpo.io import atomic_write_json
from larpo.run import RunContext, execute
from larpo.run.config import RunConfig
from larpo.tasks.arithmetic.demo import REWARDS, DemoSettings, prepare_start
from studyutil import continued_sft, evaluations, is_finished, rft_control, run_seconds, train_steps

# Study settings: the demo's (DemoSettings) but smaller, so that one arm fits in a few CPU minutes, and
# lists from the current iteration only (the demo's memorization is itself a study arm). beta, nll_weight,
# learning rate and batch size are the ones the documented studies ran with (the demo's defaults then), so
# that they reproduce.
STUDY = {
    "iterations": 3, "prompts_per_iteration": 1000, "num_candidates": 8, "epochs": 1.0, "memorization": "current",
    "beta": 0.1, "nll_weight": 0.5, "learning_rate": 1e-4, "batch_size": 16,
}  # fmt: skip
# --quick: a smoke check of the whole pipeline, not a measurement.
QUICK = {
    **STUDY, "iterations": 2, "prompts_per_iteration": 300, "train_prompts": 2000, "heldout_prompts": 200,
    "sft_steps": 200, "eval_samples": 4,
}  # fmt: skip
COLLAPSE_POINTS = 0.03  # a seed collapsed if some iteration ends this far below the SFT start

OBJECTIVES = ("pairwise", "contrastive", "lambdarank", "listmle")
CONTRASTIVE = {"objective": "contrastive"}
TOP1_BOTTOM3 = {**CONTRASTIVE, "positives": 1, "negatives": 3}  # Appendix H; random/related need a count
STUDIES: dict[str, dict[str, dict[str, Any]]] = {
    "objectives": {objective: {"objective": objective} for objective in OBJECTIVES},
    "negatives": {
        "policy": TOP1_BOTTOM3,
        "random": {**TOP1_BOTTOM3, "negative_source": "random"},
        "related": {**TOP1_BOTTOM3, "negative_source": "related"},
        "high_temperature": {**TOP1_BOTTOM3, "temperature": 1.5},
        "low_temperature": {**TOP1_BOTTOM3, "temperature": 0.5},
    },
    "temperature": {f"temp{t}": {**CONTRASTIVE, "temperature": t} for t in (0.5, 0.8, 1.0, 1.2, 1.5)},
    "listsize": {f"k{k}": {**CONTRASTIVE, "num_candidates": k} for k in (2, 4, 6, 8, 10)},
    "memorization": {
        **{m: {**CONTRASTIVE, "memorization": m} for m in ("current", "previous", "all")},
        # control: as many training steps as `previous` takes, on the current lists only
        "current_2epochs": {**CONTRASTIVE, "memorization": "current", "epochs": 2.0},
    },
    "lr": {
        f"{objective}_lr{lr:.0e}_nll{nll:g}".replace("e-0", "e-"): {
            "objective": objective, "learning_rate": lr, "nll_weight": nll
        }
        for objective in OBJECTIVES for lr in (3e-5, 1e-4, 3e-4, 1e-3) for nll in (0.0, 0.5)
    },
}  # fmt: skip
DEFAULT_SEEDS = {"lr": [0]}  # others: 0 1 2
DEFAULT_REWARDS = {"lr": ["graded"]}  # others: graded exact
CONTROLS = ("rft", "sft")  # every study but lr; rft uses the exact reward, sft no reward


def study_settings(seed: int, quick: bool) -> DemoSettings:
    """The demo's settings with the study's (or --quick's) changes."""
    return dataclasses.replace(DemoSettings(seed=seed), **(QUICK if quick else STUDY))


def arm_config(settings: DemoSettings, seed_dir: Path, budget: int, reward: str, arm: dict, run_dir: Path):
    """The RunConfig of one arm: the demo's config for ``reward`` with the arm's overrides."""
    base = dataclasses.replace(settings, reward=reward).run_config(seed_dir, budget)
    return dataclasses.replace(base, output_dir=str(run_dir), **arm)


def samples_drawn(settings: DemoSettings, arm: dict) -> int:
    """Responses the arm samples from its policy over all iterations."""
    return (
        settings.iterations
        * settings.prompts_per_iteration
        * arm.get("num_candidates", settings.num_candidates)
    )


def sft_steps_per_iteration(settings: DemoSettings) -> int:
    """Optimizer steps of an iteration that keeps one list for every prompt (the most any arm takes)."""
    return math.ceil(settings.epochs * math.ceil(settings.prompts_per_iteration / settings.batch_size))


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


# ---------------------------------------------------------------- reading results
def expected_rows(study: str, rewards: list[str], settings: DemoSettings) -> list[dict[str, Any]]:
    """(arm, reward, samples) of every row of the study's table, controls last."""
    rows = [
        {"arm": arm, "reward": reward, "samples": samples_drawn(settings, overrides), "control": False}
        for reward in rewards
        for arm, overrides in STUDIES[study].items()
    ]
    if study != "lr":
        rows.append(
            {"arm": "rft", "reward": "exact", "samples": samples_drawn(settings, {}), "control": True}
        )
        rows.append({"arm": "sft", "reward": "-", "samples": 0, "control": True})
    return rows


def collect(study: str, seeds: list[int], output: Path, rows: list[dict], iterations: int) -> list[dict]:
    """The results of every finished (row, seed)."""
    results = []
    for row in rows:
        for seed in seeds:
            result = result_of(output / f"seed_{seed}", study, row, iterations)
            if result is not None:
                results.append(result | {"seed": seed})
    return results


def result_of(seed_dir: Path, study: str, row: dict[str, Any], iterations: int) -> dict[str, Any] | None:
    """A finished row's accuracy curve, final pass@k, train steps and seconds (None: not finished)."""
    key = {"arm": row["arm"], "reward": row["reward"]}
    if row["arm"] == "sft":
        path = seed_dir / "controls" / "sft.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return key | {
            "curve": data["curve"],
            "pass_at_k": {},
            "steps": sum(data["steps"]),
            "seconds": data["seconds"],
        }
    run_dir = (
        seed_dir / "controls" / "rft"
        if row["arm"] == "rft"
        else seed_dir / study / row["reward"] / row["arm"]
    )
    if not is_finished(run_dir, iterations):
        return None
    evals = evaluations(run_dir, iterations)
    return key | {
        "curve": [e["greedy_accuracy"] for e in evals],
        "pass_at_k": evals[-1]["pass_at_k"],
        "steps": sum(train_steps(run_dir, iterations)),
        "seconds": run_seconds(run_dir),
    }


# ---------------------------------------------------------------- the report
def collapsed(curve: list[float]) -> bool:
    """Some iteration ended more than COLLAPSE_POINTS below the SFT start (curve[0])."""
    return round(curve[0] - min(curve[1:]), 9) > COLLAPSE_POINTS


def summarize(rows: list[dict], results: list[dict], seeds: list[int]) -> list[dict[str, Any]]:
    """Per row: the seeds it finished, final-minus-SFT gains (mean, min, max, per seed), the mean curve,
    the mean final pass@k, steps and seconds, and how many seeds collapsed."""
    summary = []
    for row in rows:
        mine = [r for r in results if r["arm"] == row["arm"] and r["reward"] == row["reward"]]
        gains = {r["seed"]: r["curve"][-1] - r["curve"][0] for r in mine}
        entry = {
            **row,
            "seeds": sorted(gains),
            "missing": [s for s in seeds if s not in gains],
            "gains": gains,
        }
        if mine:
            entry.update(
                gain_mean=statistics.mean(gains.values()), gain_min=min(gains.values()), gain_max=max(gains.values()),
                curve_mean=[statistics.mean(c) for c in zip(*(r["curve"] for r in mine), strict=True)],
                pass_at_k={k: statistics.mean(r["pass_at_k"][k] for r in mine) for k in mine[0]["pass_at_k"]},
                steps=statistics.mean(r["steps"] for r in mine), seconds=statistics.mean(r["seconds"] for r in mine),
                collapsed=sum(collapsed(r["curve"]) for r in mine),
            )  # fmt: skip
        summary.append(entry)
    return summary


def table(summary: list[dict], iterations: int) -> list[str]:
    """The markdown table: one line per (arm, reward)."""
    head = (
        "| arm | reward | samples drawn | seeds | mean gain | min..max | per seed | "
        + " | ".join(f"iter {s}" for s in range(-1, iterations))
        + " | final pass@k | train steps | LarPO seconds | collapsed |"
    )
    lines = [head, "|---" * (iterations + 12) + "|"]
    for e in summary:
        cells = [
            e["arm"],
            e["reward"],
            f"{e['samples']:,}",
            f"{len(e['seeds'])} of {len(e['seeds']) + len(e['missing'])}",
        ]
        if not e["seeds"]:
            lines.append("| " + " | ".join(cells + ["not run"] + ["-"] * (iterations + 7)) + " |")
            continue
        cells += [f"{e['gain_mean']:+.3f}", f"{e['gain_min']:+.3f}..{e['gain_max']:+.3f}",
                  ", ".join(f"s{s} {g:+.3f}" for s, g in e["gains"].items())]  # fmt: skip
        cells += [f"{a:.3f}" for a in e["curve_mean"]]
        cells.append(", ".join(f"@{k} {v:.3f}" for k, v in e["pass_at_k"].items()) or "-")
        cells += [f"{e['steps']:.0f}", f"{e['seconds']:.0f}", f"{e['collapsed']} of {len(e['seeds'])}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def plot(summary: list[dict], rewards: list[str], path: Path) -> None:
    """Mean held-out greedy accuracy per iteration, one line per arm (controls dashed), one panel per reward."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rewards), figsize=(5.5 * len(rewards), 3.8), dpi=120, squeeze=False)
    for ax, reward in zip(axes[0], rewards, strict=True):
        shown = [e for e in summary if e["seeds"] and (e["reward"] == reward or e["control"])]
        for e in shown:
            curve = e["curve_mean"]
            ax.plot(range(-1, len(curve) - 1), curve, marker="o", markersize=3,
                    linestyle="--" if e["control"] else "-", label=f"{e['arm']} (n={len(e['seeds'])})")  # fmt: skip
        ax.set_title(f"reward: {reward}")
        ax.set_xlabel("iteration (-1 = SFT start)")
        ax.set_ylabel("held-out greedy accuracy")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if shown:
            ax.legend(fontsize=6, ncol=1 + len(shown) // 12)
    save_figure(fig, path)


def settings_line(settings: DemoSettings, study: str) -> str:
    """The settings every arm shares, before its own overrides."""
    s = settings
    text = (
        f"{s.iterations} iterations x {s.prompts_per_iteration:,} prompts x {s.num_candidates} samples (unless the "
        f"arm changes k), {s.epochs:g} epoch per iteration, objective {s.objective}, temperature {s.temperature}, "
        f"learning rate {s.learning_rate:g}, nll_weight {s.nll_weight}, beta {s.beta}, batch {s.batch_size}, "
        f"warmup {s.warmup_ratio}. Held-out: {s.heldout_prompts:,} problems, {s.eval_samples} samples per problem "
        f"after the last iteration, {min(s.eval_samples_between, s.eval_samples)} between. SFT start as `larpo demo`: "
        f"{s.demonstration_error_rate:.0%} flawed demonstrations, at most {s.sft_steps} steps, stopped at "
        f"{s.sft_target_accuracy:.0%} validation accuracy."
    )
    if study != "lr":
        text += (
            f" Controls: `rft` (objective rft, exact reward, nll_weight 0, same sampling budget) and `sft` "
            f"(continued SFT on the same demonstrations, {sft_steps_per_iteration(s)} steps per iteration: as "
            "many as an arm that keeps one list per prompt; no samples)."
        )
    return text


def write_report(study: str, summary: list[dict], results: list[dict], rewards: list[str], settings: DemoSettings,
                 docs: Path, name: str, command: str) -> str:  # fmt: skip
    """``<docs>/<name>.md``, ``.png`` and ``.json``; returns the markdown."""
    lines = [
        f"# Study: {study}",
        "",
        f"Command: `{command}`.",
        "",
        f"Settings: {settings_line(settings, study)}",
        "",
        "Gain = held-out greedy accuracy after the last iteration minus the SFT start's (iter -1), per seed; "
        "iteration columns are means over the seeds that finished. `collapsed`: seeds in which some iteration "
        f"ended more than {COLLAPSE_POINTS * 100:.0f} points below the SFT start. Seconds: LarPO stages "
        "(generation, scoring, lists, training, evaluation after each iteration), SFT start excluded.",
        "",
        *table(summary, settings.iterations),
        "",
        f"![mean held-out greedy accuracy per iteration]({name}.png)",
        "",
    ]
    docs.mkdir(parents=True, exist_ok=True)
    plot(summary, rewards, docs / f"{name}.png")
    markdown = "\n".join(lines)
    (docs / f"{name}.md").write_text(markdown)
    settings_dict = dataclasses.asdict(settings) | {"seed": None}
    raw = {"study": study, "command": command, "settings": settings_dict, "summary": summary, "runs": results}
    (docs / f"{name}.json").write_text(json.dumps(raw, indent=1))
    return markdown


def report(
    study: str, seeds: list[int], rewards: list[str], output: Path, quick: bool, docs: Path, command: str
) -> str:
    """The study's report from whatever arms have finished."""
    settings = study_settings(seeds[0], quick)
    rows = expected_rows(study, rewards, settings)
    results = collect(study, seeds, output, rows, settings.iterations)
    summary = summarize(rows, results, seeds)
    name = f"{study}_quick" if quick else study
    return write_report(study, summary, results, rewards, settings, docs, name, command)


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
