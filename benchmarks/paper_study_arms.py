"""The arms of benchmarks/paper_studies.py: the demo's settings made smaller, and each study's arms as
overrides of them."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from larpo.tasks.arithmetic.demo import DemoSettings

# Study settings: the demo's (DemoSettings) but smaller, so that one arm fits in a few CPU minutes, and
# lists from the current iteration only (the demo's memorization is itself a study arm). beta, nll_weight,
# learning rate and batch size are the ones the documented studies ran with (the demo's defaults then), so
# that they reproduce.
STUDY = {
    "iterations": 3, "prompts_per_iteration": 1000, "num_candidates": 8, "epochs": 1.0, "memorization": "current",
    "beta": 0.1, "nll_weight": 0.5, "learning_rate": 1e-4, "batch_size": 16,
}  # fmt: skip
# --quick: a smoke check of the whole pipeline, not a measurement.
QUICK = {
    **STUDY, "iterations": 2, "prompts_per_iteration": 300, "train_prompts": 2000, "heldout_prompts": 200,
    "sft_steps": 200, "eval_samples": 4,
}  # fmt: skip

OBJECTIVES = ("pairwise", "contrastive", "lambdarank", "listmle")
CONTRASTIVE = {"objective": "contrastive"}
TOP1_BOTTOM3 = {**CONTRASTIVE, "positives": 1, "negatives": 3}  # Appendix H; random/related need a count
STUDIES: dict[str, dict[str, dict[str, Any]]] = {
    "objectives": {objective: {"objective": objective} for objective in OBJECTIVES},
    "negatives": {
        "policy": TOP1_BOTTOM3,
        "random": {**TOP1_BOTTOM3, "negative_source": "random"},
        "related": {**TOP1_BOTTOM3, "negative_source": "related"},
        "high_temperature": {**TOP1_BOTTOM3, "temperature": 1.5},
        "low_temperature": {**TOP1_BOTTOM3, "temperature": 0.5},
    },
    "temperature": {f"temp{t}": {**CONTRASTIVE, "temperature": t} for t in (0.5, 0.8, 1.0, 1.2, 1.5)},
    "listsize": {f"k{k}": {**CONTRASTIVE, "num_candidates": k} for k in (2, 4, 6, 8, 10)},
    "memorization": {
        **{m: {**CONTRASTIVE, "memorization": m} for m in ("current", "previous", "all")},
        # control: as many training steps as `previous` takes, on the current lists only
        "current_2epochs": {**CONTRASTIVE, "memorization": "current", "epochs": 2.0},
    },
    "lr": {
        f"{objective}_lr{lr:.0e}_nll{nll:g}".replace("e-0", "e-"): {
            "objective": objective, "learning_rate": lr, "nll_weight": nll
        }
        for objective in OBJECTIVES for lr in (3e-5, 1e-4, 3e-4, 1e-3) for nll in (0.0, 0.5)
    },
}  # fmt: skip
DEFAULT_SEEDS = {"lr": [0]}  # others: 0 1 2
DEFAULT_REWARDS = {"lr": ["graded"]}  # others: graded exact
CONTROLS = ("rft", "sft")  # every study but lr; rft uses the exact reward, sft no reward


def study_settings(seed: int, quick: bool) -> DemoSettings:
    """The demo's settings with the study's (or --quick's) changes."""
    return dataclasses.replace(DemoSettings(seed=seed), **(QUICK if quick else STUDY))


def arm_config(settings: DemoSettings, seed_dir: Path, budget: int, reward: str, arm: dict, run_dir: Path):
    """The RunConfig of one arm: the demo's config for ``reward`` with the arm's overrides."""
    base = dataclasses.replace(settings, reward=reward).run_config(seed_dir, budget)
    return dataclasses.replace(base, output_dir=str(run_dir), **arm)


def samples_drawn(settings: DemoSettings, arm: dict) -> int:
    """Responses the arm samples from its policy over all iterations."""
    return (
        settings.iterations
        * settings.prompts_per_iteration
        * arm.get("num_candidates", settings.num_candidates)
    )


def sft_steps_per_iteration(settings: DemoSettings) -> int:
    """Optimizer steps of an iteration that keeps one list for every prompt (the most any arm takes)."""
    return math.ceil(settings.epochs * math.ceil(settings.prompts_per_iteration / settings.batch_size))
