"""Where the demo's gain comes from: greedy accuracy per operator, on problems that need a carry (or
borrow) and on problems that do not, for the SFT start and each finished arm's final model.

Run: python benchmarks/demo_breakdown.py runs/bench_demo/seed0 [--iteration N] [--arms default rft ...]
[--split validation|heldout] (after benchmarks/listwise_search.py; an arm is its ``search_<arm>`` run
folder). Prints a markdown table. The default split is the validation one, so the diagnosis that guides
the choice of settings never reads the test problems.

The demonstrations are wrong only on carry/borrow problems (larpo.tasks.arithmetic.flawed_answer), so a
gain there is the bug being unlearned, and a loss on no-carry problems is collateral damage.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer

from larpo.tasks import arithmetic
from listwise_search import BASE

OPERATORS = {"+": "add", "-": "sub", "*": "mul"}


def groups(prompts: list[str]) -> dict[str, list[str]]:
    """Held-out prompts by operator and by whether the flawed demonstration would be wrong."""
    out: dict[str, list[str]] = {}
    for prompt in prompts:
        op = next(c for c in prompt[1:] if c in OPERATORS)
        carry = arithmetic.flawed_answer(prompt) != arithmetic.answer(prompt)
        out.setdefault(f"{OPERATORS[op]} {'carry' if carry else 'no carry'}", []).append(prompt)
    return dict(sorted(out.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seed_dir", type=Path, help="one seed's directory of benchmarks/listwise_search.py")
    last = BASE.iterations - 1  # the search's last iteration
    parser.add_argument(
        "--iteration", type=int, default=last, help=f"the arms' iteration to read (default {last})"
    )
    parser.add_argument(
        "--arms",
        nargs="+",
        default=["default", "exact_nll1_beta0.02", "dpo2", "rft"],
        help="run folders search_<arm>",
    )
    parser.add_argument("--split", choices=["validation", "heldout"], default="validation")
    args = parser.parse_args()
    prompts = [json.loads(line)["prompt"] for line in (args.seed_dir / f"{args.split}_prompts.jsonl").open()]
    budget = arithmetic.answer_budget(prompts)
    tokenizer = AutoTokenizer.from_pretrained(args.seed_dir / "sft")
    models = {"SFT start": args.seed_dir / "sft"}
    for arm in args.arms:
        model = args.seed_dir / f"search_{arm}" / f"iter_{args.iteration}" / "model"
        if model.exists():
            models[arm] = model
    by_group = groups(prompts)
    print("| model | " + " | ".join(f"{g} (n={len(p)})" for g, p in by_group.items()) + " | all |")
    print("|---" * (len(by_group) + 2) + "|")
    for name, path in models.items():
        model = AutoModelForCausalLM.from_pretrained(path).eval()
        cells = [arithmetic.greedy_accuracy(model, tokenizer, p, budget) for p in by_group.values()]
        total = arithmetic.greedy_accuracy(model, tokenizer, prompts, budget)
        print(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + f" | {total:.3f} |")


if __name__ == "__main__":
    main()
