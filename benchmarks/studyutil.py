"""Helpers shared by the quality studies (listwise_search.py, grpo_arm.py, paper_studies.py): the two controls and what a
finished LarPO run directory says about itself."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from transformers import AutoModelForCausalLM, AutoTokenizer

from larpo.evaluation import evaluate_policy
from larpo.generation import TransformersGenerator
from larpo.io import atomic_write_json
from larpo.model_io import load_policy
from larpo.rewards import load_reranker
from larpo.run.config import RunConfig
from larpo.run.evaluate import eval_settings
from larpo.tasks import arithmetic
from larpo.tasks.arithmetic.demo import REWARDS, DemoSettings


def rft_control(base: RunConfig, output_dir: Path) -> RunConfig:
    """Rejection-sampling fine-tuning on ``base``'s sampling budget: NLL of the best candidate, with the
    exact-match reward so that only verified-correct answers are imitated."""
    return dataclasses.replace(
        base, output_dir=str(output_dir), objective="rft", nll_weight=0.0, reward=REWARDS["exact"]
    )


def continued_sft(output: Path, settings: DemoSettings, steps: list[int]) -> list[float]:
    """Held-out greedy accuracy of more SFT on the same demonstrations, ``steps[s]`` steps per iteration.

    ``output`` holds the demo's ``sft`` model and prompt files; the first value is the SFT start's."""
    tokenizer = AutoTokenizer.from_pretrained(output / "sft")
    model = AutoModelForCausalLM.from_pretrained(output / "sft")
    train, heldout = (
        read_prompts(output / name) for name in ("train_prompts.jsonl", "heldout_prompts.jsonl")
    )
    targets = arithmetic.demonstrations(train, settings.demonstration_error_rate, settings.seed)
    budget = arithmetic.answer_budget(train + heldout)
    curve = [arithmetic.greedy_accuracy(model, tokenizer, heldout, budget)]
    for s, count in enumerate(steps):
        arithmetic.sft(
            model, tokenizer, train, targets=targets, steps=count, batch_size=settings.batch_size,
            learning_rate=settings.learning_rate, seed=settings.seed * 100 + s,
        )  # fmt: skip
        curve.append(arithmetic.greedy_accuracy(model, tokenizer, heldout, budget))
    return curve


def read_prompts(path: Path) -> list[str]:
    """The ``prompt`` field of every line of a JSONL prompt file."""
    return [json.loads(line)["prompt"] for line in path.read_text().splitlines()]


def is_finished(run_dir: Path, iterations: int) -> bool:
    """Whether the run's last iteration has been evaluated (its last stage)."""
    return (run_dir / "eval" / f"iter_{iterations - 1}.json").exists()


def run_seconds(run_dir: Path, without: frozenset[str] = frozenset()) -> float:
    """Seconds the run's stages took, summed over its ``log.jsonl`` (SFT excluded), except the stages named in
    ``without`` (e.g. ``{"eval"}``)."""
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return sum(entry.get("seconds", 0.0) for entry in log if entry.get("stage") not in without)


def train_steps(run_dir: Path, iterations: int) -> list[int]:
    """Optimizer steps of each iteration of a run."""
    completed = json.loads((run_dir / "manifest.json").read_text())["completed"]
    return [completed[str(s)]["train"]["steps"] for s in range(iterations)]


def evaluations(run_dir: Path, iterations: int) -> list[dict]:
    """The held-out evaluations of the initial model and after every iteration."""
    names = ["initial"] + [f"iter_{s}" for s in range(iterations)]
    return [json.loads((run_dir / "eval" / f"{name}.json").read_text()) for name in names]


def accuracy_by_iteration(run_dir: Path, iterations: int) -> list[float]:
    """Held-out greedy accuracy of the initial model and after every iteration."""
    return [result["greedy_accuracy"] for result in evaluations(run_dir, iterations)]


def evaluate_on_test(
    config: RunConfig, output: Path, evaluation: RunConfig | None = None
) -> list[dict[str, Any]]:
    """The SFT start's and every iteration's evaluation of ``config``'s run on the test split
    (``output/heldout_prompts.jsonl``), cached in ``<run>/eval_test``; with the evaluation settings and reward of
    ``evaluation`` (its samples per prompt, temperatures, k) when given, else of ``config``."""
    evaluation = evaluation or config
    prompts = read_prompts(output / "heldout_prompts.jsonl")
    reranker = load_reranker(evaluation.eval_reward or evaluation.reward)
    results = []
    for s in range(-1, config.iterations):
        path = Path(config.output_dir) / "eval_test" / ("initial.json" if s < 0 else f"iter_{s}.json")
        if not path.exists():
            model_dir = config.model if s < 0 else Path(config.output_dir) / f"iter_{s}" / "model"
            model, tokenizer = load_policy(model_dir)
            generator = TransformersGenerator(
                model.eval(), tokenizer, batch_size=config.generation_batch_size
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(
                path, evaluate_policy(generator, reranker, prompts, eval_settings(evaluation, s))
            )
        results.append(json.loads(path.read_text()))
    return results
