"""The lists stage's reference pass: every list's candidates, then only the lists that training reads.

    python benchmarks/bench_reference_pass.py RUN_DIR [--iterations 0 1] [--output docs/benchmarks]

For each of ``--iterations`` of the run in ``RUN_DIR`` (``reference: initial``), computes the reference
log-probs of its lists' candidates with the run's initial model twice in this process, one after the other:
for every list, then only for the lists of :func:`larpo.trainer.trainer.lists_reading_reference` (the lists
that can change a step; an all-wrong list under a binary verifier, with no NLL term imitating it, cannot).
Reports each pass's seconds, their ratio and the largest difference between the two passes' values on the
lists both compute; writes ``reference_pass.json`` and ``.md`` to ``--output``.
"""

from __future__ import annotations

import sys
import time

from benchutil import iteration_benchmark, write_iteration_report
from larpo.run.context import RunContext
from larpo.run.lists import lists_read
from larpo.run.train import read_lists


def reference_pass(ctx: RunContext, lists: list[dict]) -> tuple[float, list[float]]:
    """Seconds of the reference log-probs of ``lists``' candidates (their sampled ids where kept), and them."""
    model, tokenizer = ctx.policy(ctx.config.model)
    pairs = [(x["prompt"], y) for x in lists for y in x["responses"]]
    ids = [i for x in lists for i in (x.get("response_ids") or [None] * len(x["responses"]))]
    finished = [f for x in lists for f in (x.get("finished") or [None] * len(x["responses"]))]
    start = time.perf_counter()
    values = ctx.response_logps(
        model, tokenizer, pairs, "reference log-probs", response_ids=ids, finished=finished
    )
    return time.perf_counter() - start, values


def measure(ctx: RunContext, s: int) -> dict:
    """One iteration's reference pass both ways: lists, the ones read, seconds, largest value difference."""
    if ctx.config.reference != "initial" or ctx.lora:
        print(
            "larpo: error: this benchmark measures a full-weight run with reference: initial", file=sys.stderr
        )
        raise SystemExit(2)
    config, lists = ctx.config, read_lists(ctx, s)
    reading = lists_read(config, [x["scores"] for x in lists])
    read = [x for x, r in zip(lists, reading, strict=True) if r]
    reference_pass(ctx, lists[:2])  # warm-up: the first pass of a process pays for kernel setup
    every_seconds, every_values = reference_pass(ctx, lists)
    read_seconds, read_values = reference_pass(ctx, read) if read else (0.0, [])
    by_list = iter(every_values)
    every_by_list = [[next(by_list) for _ in x["responses"]] for x in lists]
    expected = [v for values, r in zip(every_by_list, reading, strict=True) if r for v in values]
    difference = max((abs(a - b) for a, b in zip(read_values, expected, strict=True)), default=0.0)
    return {"iteration": s, "lists": len(lists), "lists_read": len(read),
            "candidates": len(every_values), "candidates_read": len(read_values),
            "seconds_every_list": round(every_seconds, 1), "seconds_lists_read": round(read_seconds, 1),
            "speedup": round(every_seconds / read_seconds, 2) if read_seconds else None,
            "max_value_difference": difference}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    output, result = iteration_benchmark(__doc__, measure, argv)
    rows, run_dir = result["rows"], result["run"]
    write_iteration_report(output, "reference_pass", result, "The reference pass of the lists that can train", (
        f"The reference log-probs of `{run_dir}`'s lists, with its initial model, twice in one process: "
        "for every list's candidates, then only for the lists that training reads (those that can change a "
        "step). Value difference: the largest between the two passes on the lists both compute (float "
        "rounding: the batches differ)."
    ), [
        "| iteration | lists read | candidates computed | seconds, every list | seconds, lists read | speed-up | value difference |",
        "|---|---|---|---|---|---|---|",
        *(f"| {r['iteration']} | {r['lists_read']} of {r['lists']} | {r['candidates_read']} of {r['candidates']} | "
          f"{r['seconds_every_list']:.1f} | {r['seconds_lists_read']:.1f} | "
          f"{'-' if r['speedup'] is None else format(r['speedup'], '.2f') + 'x'} | {r['max_value_difference']:.1e} |"
          for r in rows),
    ])  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
