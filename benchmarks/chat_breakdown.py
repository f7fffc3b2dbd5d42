"""What each arm's training moved on a chat task: the log-probs of its samples, and its greedy replies.

Run: python benchmarks/chat_breakdown.py --model MODEL_DIR --runs rft=RUN_DIR larpo=RUN_DIR ...
     --prompts runs/study_arithmetic/validation_subset.jsonl --reward larpo.tasks.arithmetic.chat:exact_reward
     [--iteration 0] [--output docs/benchmarks/arithmetic_breakdown.json]
(the run folders of benchmarks/study.py at one seed). Prints markdown tables.

1. Samples: the iteration-N candidates of the first run (runs at one seed draw the same iteration-0
   samples from the same model), graded with the exact reward into: correct; wrong on a prompt that also
   has a correct sample (a negative in an exact-reward list); wrong on a prompt with no correct sample
   (in no exact-reward list, so RFT never sees it). For each arm, the mean change of their per-token
   log-prob from the model that drew them to the arm's model after iteration N.
2. Greedy replies on ``--prompts`` (validation, so the diagnosis never reads test): accuracy, replies that
   turned right or wrong against the initial model, replies that end before ``max_new_tokens`` (a reply cut
   off there usually loses its answer) and their mean length in tokens.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from larpo.chat import ChatFormat
from larpo.jsonl import read_jsonl
from larpo.model_io import load_policy
from larpo.reference import response_logps
from larpo.rewards import load_reranker
from larpo.run.config import RunConfig

GROUPS = ("correct", "wrong, prompt has a correct one", "wrong, no correct one")


def run_config(run_dir: Path) -> RunConfig:
    """The config a run was started with, from its manifest."""
    return RunConfig(**json.loads((run_dir / "manifest.json").read_text())["config"])


def sample_groups(candidates: list[dict[str, Any]], exact_reward: str) -> list[str]:
    """The :data:`GROUPS` entry of each candidate, graded with ``exact_reward``."""
    reranker = load_reranker(exact_reward)
    correct = [
        reranker.score(
            [c.get("original_prompt") or c["prompt"]], [[c["response"]]], [c.get("prompt_fields") or {}]
        )[0][0]
        >= 1.0
        for c in candidates
    ]
    solved = {c["prompt_id"] for c, ok in zip(candidates, correct, strict=True) if ok}
    return [GROUPS[0] if ok else GROUPS[1] if c["prompt_id"] in solved else GROUPS[2]
            for c, ok in zip(candidates, correct, strict=True)]  # fmt: skip


def per_token_logps(model_dir: Path, candidates: list[dict[str, Any]], chat_template: str) -> list[float]:
    """Each candidate's log-prob per token (its sampled ids plus the end of turn when it finished)."""
    policy, tokenizer = load_policy(model_dir)
    end = ChatFormat(tokenizer, chat_template).end_token_id
    logps = response_logps(
        policy, tokenizer, [(c["prompt"], c["response"]) for c in candidates], end_token_id=end,
        response_ids=[c.get("response_ids") for c in candidates], finished=[c.get("finished") for c in candidates],
    )  # fmt: skip
    lengths = [len(c["response_ids"]) + bool(c.get("finished")) for c in candidates]
    return [logp / max(1, n) for logp, n in zip(logps, lengths, strict=True)]


def sample_table(runs: dict[str, Path], iteration: int, model: Path, exact_reward: str) -> dict[str, Any]:
    """Step 1: mean per-token log-prob change of each group under each arm."""
    first = next(iter(runs.values()))
    config = run_config(first)
    candidates = list(read_jsonl(first / "candidates" / f"iter_{iteration}.jsonl"))
    groups = sample_groups(candidates, exact_reward)
    drew = model if iteration == 0 else first / f"iter_{iteration - 1}" / "model"
    before = per_token_logps(drew, candidates, config.chat_template)
    table: dict[str, Any] = {"counts": {g: groups.count(g) for g in GROUPS}, "before": {}, "change": {}}
    for group in GROUPS:
        values = [b for b, g in zip(before, groups, strict=True) if g == group]
        table["before"][group] = statistics.mean(values) if values else None
    for arm, run in runs.items():
        after = per_token_logps(run / f"iter_{iteration}" / "model", candidates, config.chat_template)
        table["change"][arm] = {}
        for group in GROUPS:
            deltas = [a - b for a, b, g in zip(after, before, groups, strict=True) if g == group]
            table["change"][arm][group] = statistics.mean(deltas) if deltas else None
    return table


def greedy_replies(model_dir: Path, prompts: Path, reward: str, config: RunConfig) -> list[dict[str, Any]]:
    """Each prompt's greedy reply: correct (exact reward), finished before max_new_tokens, its tokens."""
    from larpo.generation import TransformersGenerator
    from larpo.prompts import load_prompts

    policy, tokenizer = load_policy(model_dir)
    items = load_prompts(prompts, tokenizer, config.chat_template)
    chat = ChatFormat(tokenizer, config.chat_template)
    generator = TransformersGenerator(
        policy, tokenizer, batch_size=config.generation_batch_size, stop_ids=chat.stop_token_ids(policy)
    )
    replies = generator.greedy([p.text for p in items], config.max_new_tokens)
    scores = load_reranker(reward).score(
        [p.original for p in items], [[r] for r in replies], [p.fields for p in items]
    )
    lengths = [len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in replies]
    return [{"correct": s[0] >= 1.0, "tokens": n, "finished": n < config.max_new_tokens}
            for s, n in zip(scores, lengths, strict=True)]  # fmt: skip


def greedy_table(runs: dict[str, Path], iteration: int, model: Path, prompts: Path, reward: str) -> dict:
    """Step 2: each arm's greedy replies on ``prompts`` against the initial model's."""
    config = run_config(next(iter(runs.values())))
    initial = greedy_replies(model, prompts, reward, config)
    models = {"initial": model} | {arm: run / f"iter_{iteration}" / "model" for arm, run in runs.items()}
    table = {}
    for arm, path in models.items():
        replies = initial if arm == "initial" else greedy_replies(path, prompts, reward, config)
        pairs = list(zip(initial, replies, strict=True))
        table[arm] = {
            "accuracy": statistics.mean(r["correct"] for r in replies),
            "turned_right": sum(not a["correct"] and b["correct"] for a, b in pairs),
            "turned_wrong": sum(a["correct"] and not b["correct"] for a, b in pairs),
            "finished": statistics.mean(r["finished"] for r in replies),
            "mean_tokens": statistics.mean(r["tokens"] for r in replies),
        }
    return table


def markdown(samples: dict[str, Any], greedy: dict[str, Any], iteration: int) -> str:
    """Both tables as markdown."""
    lines = [f"Per-token log-prob of iteration {iteration}'s samples: before, and each arm's change.", "",
             "| group | samples | before | " + " | ".join(samples["change"]) + " |",
             "|---|---|---|" + "---|" * len(samples["change"])]  # fmt: skip
    for group in GROUPS:
        before = samples["before"][group]
        cells = [f"{v[group]:+.3f}" if v[group] is not None else "-" for v in samples["change"].values()]
        shown = f"{before:.3f}" if before is not None else "-"
        lines.append(f"| {group} | {samples['counts'][group]} | {shown} | " + " | ".join(cells) + " |")
    lines += ["", "Greedy replies on the validation prompts.", "",
              "| model | accuracy | turned right | turned wrong | finished | mean tokens |", "|---|---|---|---|---|---|"]  # fmt: skip
    for arm, row in greedy.items():
        lines.append(f"| {arm} | {row['accuracy']:.3f} | {row['turned_right']} | {row['turned_wrong']} | "
                     f"{row['finished']:.2f} | {row['mean_tokens']:.1f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, required=True, help="the pretrained model every run started from"
    )
    parser.add_argument("--runs", nargs="+", required=True, metavar="ARM=RUN_DIR")
    parser.add_argument(
        "--prompts", type=Path, required=True, help="validation prompts for the greedy replies"
    )
    parser.add_argument("--reward", required=True, help="the exact reward (1.0 = correct)")
    parser.add_argument("--iteration", type=int, default=0)
    parser.add_argument("--output", type=Path, help="also write the tables as JSON here")
    args = parser.parse_args()
    runs = {arm: Path(path) for arm, _, path in (item.partition("=") for item in args.runs)}
    samples = sample_table(runs, args.iteration, args.model, args.reward)
    greedy = greedy_table(runs, args.iteration, args.model, args.prompts, args.reward)
    print(markdown(samples, greedy, args.iteration))
    if args.output:
        args.output.write_text(json.dumps({"iteration": args.iteration, "samples": samples, "greedy": greedy},
                                          indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
