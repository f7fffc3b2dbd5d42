"""The result files of benchmarks/study.py: ``<task>_<comparison>.json`` (chat_arms.json's row shape: a
``runs`` list of rows with ``arm``, ``seed`` and the test metrics, plus the validation search, the command
and the machine) and a markdown table beside it (the gain of each arm over the pretrained model)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from benchutil import write_markdown

COMPARISONS = {
    "equal_samples": "every arm draws the same samples (iterations x prompts per iteration x samples per prompt)",
    "equal_compute": "every arm gets the same stage-seconds budget and runs the iterations that fit it "
    "(the count whose expected total is nearest the budget, at least 1)",
}  # fmt: skip


def gains(rows: list[dict[str, Any]], initial: dict[str, Any]) -> list[float]:
    """Test greedy accuracy gain of each row over the pretrained model, in points."""
    return [100 * (r["greedy_accuracy"] - initial["greedy_accuracy"]) for r in rows]


def summary_lines(rows: list[dict[str, Any]], initial: dict[str, Any], what: dict[str, str]) -> list[str]:
    """One line per arm (in the order of first appearance): seeds, means and the gain's mean (min..max)."""
    lines = [
        "| arm | what | lr | seeds | test greedy | gain, mean (min..max) | pass@1 | iterations | samples | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm in dict.fromkeys(r["arm"] for r in rows):
        own = [r for r in rows if r["arm"] == arm]
        points = gains(own, initial)

        def mean(key: str, rows: list[dict[str, Any]] = own) -> float | None:
            values = [r[key] for r in rows]
            return None if None in values else statistics.mean(values)

        lines.append(
            f"| {arm} | {what.get(arm, '')} | {own[0]['learning_rate']:g} | {len(own)} | "
            f"{mean('greedy_accuracy'):.3f} | {statistics.mean(points):+.1f} ({min(points):+.1f}..{max(points):+.1f}) | "
            f"{mean('pass_at_1'):.3f} | {mean('iterations'):.1f} | {mean('samples'):.0f} | {number(mean('seconds'), '.0f')} |"
        )  # fmt: skip
    return lines


def number(value: float | None, spec: str) -> str:
    """``value`` formatted, or "-" where it was not recorded (a result carried over from a published table)."""
    return "-" if value is None else format(value, spec)


def search_lines(validation: dict[str, Any]) -> list[str]:
    """The validation search: every (arm, learning rate) of seed 0, the chosen ones marked."""
    chosen, tested = validation["learning_rates"], validation.get("tested", {})
    lines = [
        f"Validation search (seed 0, greedy accuracy on the first {validation['prompts']} validation prompts; "
        f"pretrained {validation['initial']['greedy_accuracy']:.3f}). Each arm's learning rate: its best, "
        "ties to the smaller; larpo: the best variant at its learning rate, ties to the one listed first; the "
        "next ones are tested as ablations, the rest cut.",
        "",
        "| arm | lr | validation greedy | mean reward | seconds | tested as |",
        "|---|---|---|---|---|---|",
    ]
    for row in validation["search"]:
        mark = ""
        if chosen[row["arm"]] == row["learning_rate"]:
            mark = tested.get(row["arm"], "cut")
        lines.append(f"| {row['arm']} | {row['learning_rate']:g} | {row['greedy_accuracy']:.3f} | "
                     f"{number(row.get('mean_reward'), '.3f')} | {number(row['seconds'], '.0f')} | {mark} |")  # fmt: skip
    return lines


def machines_line(result: dict[str, Any]) -> str:
    """Where the rows were measured: one machine, or each machine the ledger's rows name (stage seconds
    compare only within one)."""
    rows = result["runs"] + result["validation"]["search"]
    machines = list(dict.fromkeys(row["machine"] for row in rows if row.get("machine"))) or [
        result["machine"]
    ]
    if len(machines) == 1:
        return f"Machine: {machines[0]}."
    return (f"Measured on {len(machines)} machines (each row's `machine` in the JSON; stage seconds compare "
            f"only within one): {'; '.join(machines)}.")  # fmt: skip


def report(task: str, comparison: str, result: dict[str, Any], what: dict[str, str], docs: Path) -> None:
    """Write ``<docs>/<task>_<comparison>.json`` (``result``: runs, validation, command, machine, ...) and
    the markdown table beside it."""
    rows, initial = result["runs"], result["initial_test"]
    budget = result.get("budget_seconds")
    lines = [
        f"# {task}: every arm from the same pretrained model, {comparison.replace('_', ' ')}",
        "",
        f"Command: `{result['command']}`. {machines_line(result)}",
        "",
        f"{COMPARISONS[comparison].capitalize()}"
        + (f"; budget {budget:.0f} stage seconds" if budget is not None else "")
        + f". Test split, greedy exact accuracy (pretrained: {initial['greedy_accuracy']:.3f}, pass@1 "
        f"{initial['pass_at_1']:.3f}); gains in points over the pretrained model. `larpo` is the variant "
        "chosen on validation; other larpo arms are ablations. Seconds: the run's stages, evaluation "
        f"excluded. Stage hours of the whole study so far: {result['stage_hours']:.2f}.",
        "",
        *summary_lines(rows, initial, what),
        "",
        *search_lines(result["validation"]),
        "",
        "| arm | seed | test greedy | pass@1 | lr | iterations | samples | seconds |",
        "|---|---|---|---|---|---|---|---|",
        *(f"| {r['arm']} | {r['seed']} | {r['greedy_accuracy']:.3f} | {r['pass_at_1']:.3f} | "
          f"{r['learning_rate']:g} | {r['iterations']} | {r['samples']} | {number(r['seconds'], '.0f')} |" for r in rows),
    ]  # fmt: skip
    write_markdown(docs / f"{task}_{comparison}.md", lines)
    (docs / f"{task}_{comparison}.json").write_text(json.dumps(result, indent=1) + "\n")
