"""Skipping unread candidates: one iteration's train stage of a ``larpo run``, every candidate against only
those its objective reads.

    python benchmarks/bench_unread_candidates.py RUN_DIR [--iterations 3] [--output docs/benchmarks]

Trains the lists of each of ``--iterations`` of the run in ``RUN_DIR`` (its own lists, settings and starting
model) twice in this process, one after the other: with ``skip_inert_lists`` off (every candidate of every
list through the model), then on (only the candidates of :func:`larpo.losses.read_candidates` in the lists
that can train: rft reads each list's best replies, pairwise its best and worst). The loss multiplies the
others by zero or never indexes them, so the two trainings must end at the same weights. For an RFT run,
whose lists all hold a correct reply (its all-wrong lists are dropped), the difference is the unread
candidates alone. Reports each one's seconds, their ratio and the largest weight difference, per iteration;
writes ``unread_candidates.json`` and ``.md`` to ``--output``.
"""

from __future__ import annotations

import sys

from bench_inert_lists import measure
from benchutil import iteration_benchmark, write_iteration_report
from larpo.data import ListCollator
from larpo.losses import get_objective, read_candidates
from larpo.run.context import RunContext
from larpo.run.train import list_examples, read_lists
from larpo.trainer.trainer import trainable_rows


def candidate_counts(ctx: RunContext, s: int) -> dict[str, int]:
    """Iteration ``s``'s candidates, and those training reads (of the lists that can train)."""
    config = ctx.config
    _, tokenizer = ctx.policy(ctx.model_path(s - 1))
    batch = ListCollator(pad_token_id=0)(list_examples(ctx, tokenizer, read_lists(ctx, s)))
    mask, scores = batch["list_mask"], batch["scores"]
    trained = trainable_rows(mask, scores, objective=config.objective, nll_weight=config.nll_weight,
                             nll_min_score=config.nll_min_score)  # fmt: skip
    read = read_candidates(mask, scores, get_objective(config.objective).reads) & trained.unsqueeze(1)
    return {"candidates": int(mask.sum()), "read_candidates": int(read.sum())}


def main(argv: list[str] | None = None) -> None:
    output, result = iteration_benchmark(
        __doc__, lambda ctx, s: {**measure(ctx, s), **candidate_counts(ctx, s)}, argv
    )
    rows = result["rows"]
    write_iteration_report(output, "unread_candidates", result, "Skipping the candidates an objective does not read", (
        f"The train stage of `{result['run']}`'s iterations, on the same lists, starting model and settings, "
        "twice in one process: every candidate through the model (`skip_inert_lists: false`), then only the "
        "candidates the objective reads in the lists that can train. Seconds: `trainer.train()`, its passes "
        "and optimizer steps. Weight difference: the largest between the two trainings' weights."
    ), [
        "| iteration | candidates read | lists that can train | seconds, every candidate | seconds, read only | speed-up | weight difference |",
        "|---|---|---|---|---|---|---|",
        *(f"| {r['iteration']} | {r['read_candidates']} of {r['candidates']} | {r['trainable_lists']} of "
          f"{r['lists']} | {r['seconds_every_list']:.1f} | {r['seconds_skipping_inert']:.1f} | "
          f"{r['speedup']:.2f}x | {r['max_weight_difference']:.1e} |" for r in rows),
    ])  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
