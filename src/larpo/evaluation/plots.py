"""PNG plots of evaluation results (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_recall_curves(
    curves: dict[str, list[float]],
    path: str | Path,
    title: str = "",
    *,
    name: str = "",
    baseline: dict[str, list[float]] | None = None,
    baseline_name: str = "baseline",
) -> Path:
    """pass@N (Recall@N) against N, one line per sampling temperature (the paper's Figure 5); with
    ``baseline`` (curves of another model, e.g. the starting point) its lines are drawn dashed beside."""
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for label, style, series in ((name, "-", curves), (baseline_name, "--", baseline or {})):
        for temperature, values in series.items():
            legend = f"{label}, T = {temperature}" if label else f"T = {temperature}"
            ax.plot(range(1, len(values) + 1), values, style, marker="o", markersize=3, label=legend)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    ax.set_xlabel("N (samples)")
    ax.set_ylabel("pass@N (Recall@N)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or "Policy as a retriever")
    return _save(fig, path)


def plot_iteration_curves(rows: list[dict[str, float | None]], metrics: list[str], path: str | Path) -> Path:
    """One panel per metric against iteration (``rows[i]`` holds ``iteration`` and the metrics)."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.2), dpi=120, squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        points = [(r["iteration"], r[metric]) for r in rows if r.get(metric) is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o")
        ax.set_title(metric)
        ax.set_xlabel("iteration (-1 = start)")
        ax.grid(alpha=0.3)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
