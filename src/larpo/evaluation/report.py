"""``larpo report RUN_DIR``: every iteration of a run in one markdown table, with plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from larpo.errors import InputError
from larpo.evaluation.plots import plot_iteration_curves, plot_recall_curves
from larpo.run.manifest import read_manifest


def iteration_rows(run_dir: Path) -> list[dict[str, Any]]:
    """One row per iteration (``-1`` = the initial model) from the manifest."""
    path = run_dir / "manifest.json"
    if not path.is_file():
        raise InputError(f"{run_dir}: not a larpo run directory (no manifest.json)")
    completed = read_manifest(path)["completed"]
    rows = []
    for key in sorted(completed, key=int):
        stages = completed[key]
        evaluation = stages.get("eval", {})
        row: dict[str, Any] = {
            "iteration": int(key),
            "candidates": stages.get("generate", {}).get("candidates"),
            "lists": stages.get("lists", {}).get("lists_built"),
            "train_loss": stages.get("train", {}).get("loss"),
            "train_ranking_accuracy": stages.get("train", {}).get("ranking_accuracy"),
            "sample_reward": stages.get("score", {}).get("mean_reward"),
            "greedy_accuracy": evaluation.get("greedy_accuracy"),
            "heldout_reward": evaluation.get("mean_reward"),
            "ndcg": evaluation.get("ndcg"),
            "kendall_tau": evaluation.get("kendall_tau"),
        }
        for k, value in evaluation.get("pass_at_k", {}).items():
            row[f"pass@{k}"] = value
        rows.append(row)
    return rows


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write ``report.md``, ``report_iterations.png`` and (with evaluations) ``report_recall.png`` into
    ``out_dir`` (default: the run directory)."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir
    rows = iteration_rows(run_dir)
    columns = [
        c for c in dict.fromkeys(k for row in rows for k in row) if any(r.get(c) is not None for r in rows)
    ]
    lines = [
        f"# larpo run report: {run_dir.name}",
        "",
        "Iteration -1 is the initial model. Training columns come from the iteration's own lists; held-out "
        "columns from the evaluation prompts.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    metrics = [m for m in ("greedy_accuracy", "pass@1", "heldout_reward", "train_loss", "train_ranking_accuracy")
               if m in columns]  # fmt: skip
    if metrics:
        plot_iteration_curves(rows, metrics, out_dir / "report_iterations.png")
        lines += ["", "![per-iteration metrics](report_iterations.png)"]
    evaluations = sorted((run_dir / "eval").glob("iter_*.json"), key=lambda p: int(p.stem.split("_")[1]))
    if evaluations:
        last = json.loads(evaluations[-1].read_text(encoding="utf-8"))
        initial_path = run_dir / "eval" / "initial.json"
        initial = json.loads(initial_path.read_text(encoding="utf-8")) if initial_path.is_file() else {}
        plot_recall_curves(
            last["recall_curve"], out_dir / "report_recall.png", "pass@N of the start and the final policy",
            name=f"after {evaluations[-1].stem}", baseline=initial.get("recall_curve"), baseline_name="start",
        )  # fmt: skip
        lines += ["", "![pass@N of the final policy beside the initial model](report_recall.png)"]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
