"""The loop over iterations and stages (the stage list is :data:`STAGES`), and the summary line."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from larpo.errors import InputError
from larpo.io import remove_stale_temp_files
from larpo.run import evaluate, generate, lists, score, train
from larpo.run.config import RunConfig
from larpo.run.context import RunContext
from larpo.tracking import IterationTracker, global_step, iteration_metrics, normalize_report_to

StageFn = Callable[[RunContext, int], dict[str, Any]]
"""A stage: ``stage(ctx, s)`` does its work for iteration ``s`` (resuming a part-done one) and returns
its statistics, recorded in the manifest (only the main process's are)."""


@dataclass(frozen=True)
class Stage:
    """One stage of every iteration, in :data:`STAGES` order."""

    name: str
    run: StageFn
    every_process: bool
    """True: every process under ``accelerate launch`` runs it; False: the main one, while the others wait."""


STAGES = (
    Stage("generate", generate.stage, every_process=True),
    Stage("score", score.stage, every_process=True),
    Stage("lists", lists.stage, every_process=False),
    Stage("train", train.stage, every_process=True),
    Stage("eval", evaluate.stage, every_process=False),
)
STAGE_NAMES = tuple(stage.name for stage in STAGES)


def run(
    config: RunConfig, stages: Mapping[str, StageFn] | None = None, console: Console | None = None
) -> dict[str, Any]:
    """Run (or resume) every unfinished stage of every iteration of ``config``; the manifest's data.

    ``stages`` replaces stages by name, e.g. ``run(config, stages={"train": my_train})`` trains with
    another trainer while sampling, scoring, lists, evaluation and resumption stay larpo's.

    Raises:
        InputError: a bad input, found before anything is written (see :meth:`RunContext.open`).
    """
    return execute(RunContext.open(config, console), stages)


def execute(ctx: RunContext, stages: Mapping[str, StageFn] | None = None) -> dict[str, Any]:
    """:func:`run` on an opened context."""
    stages = dict(stages or {})
    unknown = sorted(set(stages) - set(STAGE_NAMES))
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}; the stages are {', '.join(STAGE_NAMES)}")
    chosen = [Stage(s.name, stages.get(s.name, s.run), s.every_process) for s in STAGES]
    check_models_kept(ctx)
    ctx.state.wait_for_everyone()  # every process has checked its inputs before anything is written
    if ctx.is_main:
        ctx.tracker = open_tracker(ctx.config)  # an unknown tracker name fails before anything is written
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(ctx.run_dir)  # torn temp files of a crashed write
        ctx.manifest.save()
    try:
        if ctx.eval_prompts and is_pending(ctx, -1, "eval"):  # the initial model, as iteration -1
            run_stage(ctx, -1, next(stage for stage in chosen if stage.name == "eval"))
            track(ctx, -1)
        if ctx.eval_prompts:  # the "before" of every held-out number, printed on a resumed run too
            ctx.console.print(initial_summary(ctx), soft_wrap=True, highlight=False)
        for s in range(ctx.config.iterations):
            pending = [stage for stage in chosen if is_pending(ctx, s, stage.name)]
            for stage in pending:
                run_stage(ctx, s, stage)
            if (
                pending
            ):  # an iteration finished before this invocation was carded and logged by the one that ran it
                if ctx.is_main:
                    ctx.write_model_cards(s)  # with the iteration's evaluation, now recorded
                track(ctx, s)
            if ctx.is_main:
                delete_old_models(ctx, s)
            ctx.console.print(summary(ctx, s), soft_wrap=True, highlight=False)
    finally:
        if ctx.tracker is not None:
            ctx.tracker.close()
            ctx.tracker = None
    return ctx.manifest.data


def is_pending(ctx: RunContext, s: int, stage: str) -> bool:
    """Whether ``stage`` of iteration ``s`` is still to run: not recorded, or an evaluation recorded with
    less than the config now asks for (:func:`larpo.run.evaluate.is_outdated`)."""
    if not ctx.manifest.done(s, stage):
        return True
    return stage == "eval" and evaluate.is_outdated(ctx, s)


def check_models_kept(ctx: RunContext) -> None:
    """Raise an InputError when a finished iteration is to be evaluated again (the run resumed with fewer
    ``iterations``) but ``save_total_limit`` has deleted its model; checked before anything is written."""
    for s in range(ctx.config.iterations):
        if (
            is_pending(ctx, s, "eval")
            and ctx.manifest.done(s, "train")
            and not Path(ctx.model_path(s)).exists()
        ):
            raise InputError(
                f"iteration {s} is now evaluated, but save_total_limit deleted its model: resume with "
                "iterations as before, or choose a new output_dir"
            )


def delete_old_models(ctx: RunContext, s: int) -> None:
    """With ``save_total_limit`` n, delete the model directories (and LoRA merged exports) of the
    iterations before the newest n, once iteration ``s`` has finished; lists and stats stay."""
    limit = ctx.config.save_total_limit
    for old in range(s + 1 - limit) if limit else ():
        for name in ("model", "merged"):
            shutil.rmtree(ctx.iteration_dir(old) / name, ignore_errors=True)


def open_tracker(config: RunConfig) -> IterationTracker | None:
    """The run's trackers (``report_to``, ``run_name``), writing under ``<output_dir>/runs``; None for
    ``report_to: none``."""
    if not normalize_report_to(config.report_to):
        return None
    return IterationTracker(
        config.report_to,
        Path(config.output_dir) / "runs",
        run_name=config.run_name,
        settings=config.to_dict(),
    )


def track(ctx: RunContext, s: int) -> None:
    """Log iteration ``s``'s recorded numbers (-1: the initial evaluation) to the run's trackers."""
    if ctx.tracker is not None:
        completed = ctx.manifest.data["completed"]
        ctx.tracker.log(iteration_metrics(completed[str(s)]), global_step(completed, s))


def run_stage(ctx: RunContext, s: int, stage: Stage) -> None:
    """Run one stage (on every process, or on the main one while the others wait) and record it."""
    started = time.perf_counter()
    stats = stage.run(ctx, s) if stage.every_process or ctx.is_main else {}
    if ctx.is_main:
        ctx.manifest.mark(s, stage.name, stats)
        if s >= 0:  # the initial evaluation is not timed
            ctx.log({"iteration": s, "stage": stage.name, "seconds": round(time.perf_counter() - started, 3)})
    ctx.state.wait_for_everyone()
    if not ctx.is_main:
        ctx.manifest.reload()  # every process sees the stages the main process recorded


def summary(ctx: RunContext, s: int) -> str:
    """One line per iteration from the manifest."""
    manifest = ctx.manifest
    g, sc = manifest.stats(s, "generate"), manifest.stats(s, "score")
    if "candidates" not in g:  # a run whose trainer samples (larpo.baselines.grpo): its train stats
        numbers = {k: v for k, v in manifest.stats(s, "train").items() if isinstance(v, int | float)}
        line = f"iter {s}: " + ", ".join(f"{k} {v:.4g}" for k, v in numbers.items())
        return line + _evaluated(manifest.stats(s, "eval"))
    li, tr = manifest.stats(s, "lists"), manifest.stats(s, "train")
    loss = f"{tr['loss']:.4f}" if tr.get("loss") is not None else "-"
    accuracy = f"{tr['ranking_accuracy']:.3f}" if tr.get("ranking_accuracy") is not None else "-"
    truncated = g.get("truncated", 0)
    cut = f", {truncated} truncated{'' if ctx.config.keep_truncated else ' (dropped)'}" if truncated else ""
    line = (
        f"iter {s}: {g['candidates']} candidates ({g['duplicates']} duplicates{cut}), "
        f"{li['lists_built']} lists ({li['skipped_too_few'] + li['dropped_all_tied']} skipped), "
        f"loss {loss}, ranking acc {accuracy}, mean reward {sc['mean_reward']:.4f}"
    )
    return line + _evaluated(manifest.stats(s, "eval"))


def initial_summary(ctx: RunContext) -> str:
    """The line of the initial model's held-out evaluation (iteration -1), printed before iteration 0."""
    stats = ctx.manifest.stats(-1, "eval") if ctx.manifest.done(-1, "eval") else {}
    if "greedy_accuracy" not in stats:
        return "initial model: not evaluated"
    pass_at_k = "".join(f", pass@{k} {v:.3f}" for k, v in stats.get("pass_at_k", {}).items() if v is not None)
    return (
        f"initial model: held-out greedy acc {stats['greedy_accuracy']:.3f}{pass_at_k}, "
        f"mean reward {stats['mean_reward']:.4f} ({evaluate.result_path(ctx.run_dir, -1)})"
    )


def before_after(run_dir: Path, data: Mapping[str, Any]) -> Table | None:
    """The held-out numbers of the initial model and of the last evaluated iteration, and the change, from a
    run's manifest ``data``; None when the run has no held-out evaluation of both."""
    completed = data["completed"]
    initial = completed.get("-1", {}).get("eval", {})
    evaluated = [
        int(s)
        for s, stages in completed.items()
        if int(s) >= 0 and "greedy_accuracy" in stages.get("eval", {})
    ]
    if "greedy_accuracy" not in initial or not evaluated:
        return None
    last = max(evaluated)
    after = completed[str(last)]["eval"]
    rows = [("greedy accuracy", "greedy_accuracy", None)]
    rows += [(f"pass@{k}", "pass_at_k", k) for k in initial.get("pass_at_k", {})]
    rows.append(("mean reward", "mean_reward", None))
    path = evaluate.result_path(run_dir, -1)
    prompts = json.loads(path.read_text(encoding="utf-8")).get("prompts") if path.is_file() else None
    header = f"held-out ({prompts} prompts)" if prompts else "held-out"
    table = Table(header, "initial model", f"after iteration {last}", "change")
    for label, key, k in rows:
        before, now = (
            stats.get(key) if k is None else stats.get(key, {}).get(k) for stats in (initial, after)
        )
        if before is not None and now is not None:
            table.add_row(label, f"{before:.3f}", f"{now:.3f}", f"{now - before:+.3f}")
    return table


def _evaluated(stats: dict[str, Any]) -> str:
    return f", held-out greedy acc {stats['greedy_accuracy']:.3f}" if "greedy_accuracy" in stats else ""
