"""Skipping inert lists: one iteration's train stage of a ``larpo run``, with and without ``skip_inert_lists``.

    python benchmarks/bench_inert_lists.py RUN_DIR [--iterations 0 1] [--output docs/benchmarks]

Trains the lists of each of ``--iterations`` of the run in ``RUN_DIR`` (its own lists, settings and
starting model) twice in this process, one after the other: every list through the model, then only the
lists that can train (:func:`larpo.trainer.trainer.trainable_rows`: a list with a preference pair or one the NLL
term imitates). An all-wrong list under a binary verifier cannot train: it adds zero to the loss and its
gradient, but it still counts in its batch's mean and the optimizer still steps on a batch of them, so the
two trainings must end at the same weights. Reports each one's seconds, their ratio and the largest weight
difference, per iteration; writes ``inert_lists.json`` and ``.md`` to ``--output``.
"""

from __future__ import annotations

import sys
import tempfile
import time

import torch

from benchutil import iteration_benchmark, write_iteration_report
from larpo.data import ListCollator
from larpo.run.config import RunConfig
from larpo.run.context import RunContext
from larpo.run.train import list_examples, load_trainable, read_lists
from larpo.trainer import ListwiseTrainer
from larpo.trainer.trainer import trainable_rows


def trainable_lists(config: RunConfig, examples: list[dict]) -> int:
    """How many of ``examples`` can train under ``config``'s objective and NLL term."""
    batch = ListCollator(pad_token_id=0)(examples)
    return int(trainable_rows(batch["list_mask"], batch["scores"], objective=config.objective,
                              nll_weight=config.nll_weight, nll_min_score=config.nll_min_score).sum())  # fmt: skip


def train_once(
    ctx: RunContext, s: int, lists: list[dict], skip: bool
) -> tuple[float, dict[str, torch.Tensor]]:
    """Seconds of ``trainer.train()`` on iteration ``s``'s lists, and the weights it ends at."""
    model, tokenizer = load_trainable(ctx, s)
    examples = list_examples(ctx, tokenizer, lists)
    with tempfile.TemporaryDirectory() as output:
        args = ctx.config.listwise_config(s, output, skip_inert_lists=skip, disable_tqdm=True)
        trainer = ListwiseTrainer(model, args, examples, processing_class=tokenizer)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return seconds, {name: value.detach().clone() for name, value in model.state_dict().items()}


def measure(ctx: RunContext, s: int) -> dict:
    """One iteration's train stage both ways: its lists, the trainable ones, seconds and weight difference."""
    lists = read_lists(ctx, s)
    _, tokenizer = ctx.policy(ctx.model_path(s - 1))
    trainable = trainable_lists(ctx.config, list_examples(ctx, tokenizer, lists))
    every_list, every_weight = train_once(ctx, s, lists, skip=False)
    skipped, skipped_weights = train_once(ctx, s, lists, skip=True)
    difference = max((every_weight[name] - skipped_weights[name]).abs().max().item() for name in every_weight)
    return {"iteration": s, "lists": len(lists), "trainable_lists": trainable,
            "seconds_every_list": round(every_list, 1), "seconds_skipping_inert": round(skipped, 1),
            "speedup": round(every_list / skipped, 2), "max_weight_difference": difference}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    output, result = iteration_benchmark(__doc__, measure, argv)
    rows, run_dir = result["rows"], result["run"]
    write_iteration_report(output, "inert_lists", result, "Skipping the lists that cannot train", (
        f"The train stage of `{run_dir}`'s iterations, on the same lists, starting model and settings, "
        "twice in one process: every list through the model, then only the lists that can train (a preference "
        "pair, or a best reply the NLL term imitates; the others are all-wrong lists that add nothing to the "
        "loss or its gradient). Seconds: `trainer.train()`, its passes and optimizer steps. Weight "
        "difference: the largest between the two trainings' weights (float rounding: the skipped lists change "
        "the batch shapes the kernels see, not the update)."
    ), [
        "| iteration | lists that can train | seconds, every list | seconds, skipping (`skip_inert_lists`) | speed-up | weight difference |",
        "|---|---|---|---|---|---|",
        *(f"| {r['iteration']} | {r['trainable_lists']} of {r['lists']} | {r['seconds_every_list']:.1f} | "
          f"{r['seconds_skipping_inert']:.1f} | {r['speedup']:.2f}x | {r['max_weight_difference']:.1e} |"
          for r in rows),
    ])  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
