"""benchmarks/paper_studies.py's results: every finished arm's accuracy curve, read from its run directory,
summarised over seeds into ``<docs>/<study>.md``, ``.png`` and ``.json``."""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

from benchutil import save_figure
from larpo.tasks.arithmetic.demo import DemoSettings
from paper_study_arms import STUDIES, samples_drawn, sft_steps_per_iteration, study_settings
from studyutil import evaluations, is_finished, run_seconds, train_steps

COLLAPSE_POINTS = 0.03  # a seed collapsed if some iteration ends this far below the SFT start


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
