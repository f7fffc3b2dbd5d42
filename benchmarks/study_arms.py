"""What benchmarks/study.py compares, and the rules that choose between the runs.

- :class:`Task`: a prompts folder (train/validation/test.jsonl), a training reward, an exact reward (1.0 =
  correct: accuracy, RFT's reward and, unless the task names another, GRPO's) and a base config;
  :data:`PRESETS` holds the two chat tasks of examples/chat, each from its study's starting config
  (benchmarks/study_configs: the example as first published, before the study chose its settings).
- :data:`VARIANTS`: larpo's settings searched on validation, each one change to the task's config. A
  variant that changes the samples per prompt or the iterations keeps the samples of the base config
  (iterations x prompts_per_iteration x num_candidates) by taking fewer prompts per iteration.
- :data:`BASELINES`: RFT, TRL's DPOTrainer on the same samples, TRL's GRPOTrainer.
- :func:`ranked` (every choice: a learning rate, larpo's variant, the variants kept for more seeds) and
  :func:`equal_compute_iterations` (how many iterations a stage-seconds budget buys).
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from larpo.checks import check_known_keys
from larpo.run.config import RunConfig

REPO = Path(__file__).resolve().parent.parent
Overrides = dict[str, Any]
K = TypeVar("K")


@dataclasses.dataclass(frozen=True)
class Task:
    """One task of the study."""

    name: str
    """Its name in the result files (``<name>_equal_samples.json``)."""
    prompts: Path
    """Folder of train.jsonl, validation.jsonl and test.jsonl."""
    reward: str
    """The training reward (``module:function``)."""
    exact_reward: str
    """The evaluation reward: a response is correct when it scores 1.0."""
    config: Path
    """The base config YAML of every arm."""
    grpo_reward: str | None = None
    """GRPO's reward (None: ``exact_reward``): a graded one where users would give GRPO partial credit."""

    def policy_gradient_reward(self) -> str:
        """The reward GRPO trains on."""
        return self.grpo_reward or self.exact_reward


PRESETS = {
    "arithmetic": Task(
        "arithmetic", Path("runs/chat_arithmetic"), "larpo.tasks.arithmetic.chat:graded_reward",
        "larpo.tasks.arithmetic.chat:exact_reward", REPO / "benchmarks/study_configs/arithmetic.yaml",
    ),
    "instructions": Task(
        "instructions", Path("runs/instructions"), "larpo.tasks.instructions:graded_reward",
        "larpo.tasks.instructions:exact_reward", REPO / "benchmarks/study_configs/instructions.yaml",
        grpo_reward="larpo.tasks.instructions:graded_reward",  # partial credit per instruction followed
    ),
}  # fmt: skip


def make_task(preset: str | None, **given: Any) -> Task:
    """The preset ``preset`` with each value of ``given`` that is not None replacing its own; without a
    preset every field must be given."""
    values = {k: v for k, v in given.items() if v is not None}
    if preset is not None:
        return dataclasses.replace(PRESETS[preset], **values)
    missing = [
        f.name for f in dataclasses.fields(Task) if f.name not in values and f.default is dataclasses.MISSING
    ]
    if missing:
        raise ValueError(f"without --task, give {', '.join('--' + m.replace('_', '-') for m in missing)}")
    return Task(**values)


Variant = Overrides | Callable[[RunConfig, Task], Overrides]
"""A change to the base config: fixed settings, or settings computed from the base config and the task."""


def fewer_prompts(base: RunConfig, factor: int) -> int:
    """``prompts_per_iteration`` divided by ``factor`` (at least 1): the same samples when something else
    is multiplied by ``factor``."""
    if base.prompts_per_iteration is None:
        raise ValueError("this variant needs prompts_per_iteration in the base config")
    return max(1, base.prompts_per_iteration // factor)


def more_candidates(base: RunConfig, task: Task) -> Overrides:
    """Twice the samples per prompt on half the prompts."""
    return {"num_candidates": 2 * base.num_candidates, "prompts_per_iteration": fewer_prompts(base, 2)}


def finer_iterations(factor: int) -> Callable[[RunConfig, Task], Overrides]:
    """``factor`` times the iterations, each on 1/``factor`` of the prompts."""

    def overrides(base: RunConfig, task: Task) -> Overrides:
        return {"iterations": factor * base.iterations, "prompts_per_iteration": fewer_prompts(base, factor)}

    return overrides


def exact_reward(base: RunConfig, task: Task) -> Overrides:
    """Train on the task's exact reward."""
    return {"reward": task.exact_reward}


def demo_form(**extra: Any) -> Callable[[RunConfig, Task], Overrides]:
    """The demo's validated form (exact reward, beta 0.02, nll_weight 1), with ``extra`` settings on top."""

    def overrides(base: RunConfig, task: Task) -> Overrides:
        return {**exact_reward(base, task), "beta": 0.02, "nll_weight": 1.0, **extra}

    return overrides


VARIANTS: dict[str, tuple[str, Variant]] = {
    "base": ("the task's config as published", {}),
    "exact": ("exact reward: every correct sample a positive (tied best), the wrong ones negatives", exact_reward),
    "lambdarank": ("objective lambdarank (all ordered pairs)", {"objective": "lambdarank"}),
    "listmle": ("objective listmle (Plackett-Luce)", {"objective": "listmle"}),
    "pairwise": ("objective pairwise (DPO, best vs worst)", {"objective": "pairwise"}),
    "top2_bottom2": (
        "lambdarank on twice the samples per prompt (half the prompts): the top 2 above the bottom 2",
        lambda base, task: {**more_candidates(base, task), "objective": "lambdarank", "positives": 2, "negatives": 2},
    ),
    "exact_beta0.02_nll1": (
        "the demo's validated form: exact reward, beta 0.02, nll_weight 1",
        demo_form(),
    ),
    "exact_keep_solved": (
        "the demo's validated form, with the solved prompts kept: an all-correct list (nothing to rank) is "
        "imitated, not dropped (keep_tied_min_score 1.0)",
        demo_form(keep_tied_min_score=1.0),
    ),
    "exact_all_tied_kept": (
        "the demo's validated form with every sampled prompt trained (drop_all_tied false, nll_min_score 1.0): "
        "an all-correct list is imitated, an all-wrong one adds optimizer steps without gradient, as GRPO's "
        "zero-advantage groups do",
        demo_form(drop_all_tied=False, nll_min_score=1.0),
    ),
    "exact_all_tied_kept_ref_previous": (
        "exact_all_tied_kept with the previous iterate as the reference (reference previous): each iteration "
        "ranks against the policy that sampled its lists, not the pretrained one",
        demo_form(drop_all_tied=False, nll_min_score=1.0, reference="previous"),
    ),
    "exact_all_tied_kept_length_norm": (
        "exact_all_tied_kept ranking the mean log-ratio per token (length_normalize), beta 0.4: the sum's "
        "scale at the mean reply length of 20 tokens",
        demo_form(drop_all_tied=False, nll_min_score=1.0, beta=0.4, objective_options={"length_normalize": True}),
    ),
    "exact_all_tied_kept_iterations_x2": (
        "exact_all_tied_kept in twice the iterations, each on half the prompts (4x32): more on-policy",
        lambda base, task: {**demo_form(drop_all_tied=False, nll_min_score=1.0)(base, task),
                            **finer_iterations(2)(base, task)},
    ),
    "exact_batch2": (
        "the demo's validated form with 2 lists per optimizer step (4x the steps of batch_size 8 on the few "
        "lists an exact reward leaves)",
        demo_form(batch_size=2),
    ),
    "nll_correct": (
        "NLL only on lists whose best is exactly right (nll_weight 1, nll_min_score 1.0): RFT's imitation, "
        "with the task's graded reward ranking every list",
        {"nll_weight": 1.0, "nll_min_score": 1.0},
    ),
    "nll_correct_beta0.02": (
        "nll_correct with beta 0.02", {"nll_weight": 1.0, "nll_min_score": 1.0, "beta": 0.02},
    ),
    "nll_correct_beta0.02_keep_solved": (
        "nll_correct_beta0.02 with the solved prompts kept: a list whose replies all score 1.0 is imitated, "
        "not dropped (keep_tied_min_score 1.0)",
        {"nll_weight": 1.0, "nll_min_score": 1.0, "beta": 0.02, "keep_tied_min_score": 1.0},
    ),
    "nll_correct_all_tied_kept": (
        "nll_correct with every sampled prompt trained (drop_all_tied false): a list whose replies all score "
        "1.0 is imitated, any other tied list adds optimizer steps without gradient",
        {"nll_weight": 1.0, "nll_min_score": 1.0, "drop_all_tied": False},
    ),
    "nll_correct_epochs1": (
        "nll_correct with 1 epoch over each iteration's lists (half its training cost)",
        {"nll_weight": 1.0, "nll_min_score": 1.0, "epochs": 1},
    ),
    "nll_correct_finished": (
        "nll_correct on finished replies only (keep_truncated false: replies cut at max_new_tokens are "
        "dropped before scoring, so neither ranked nor trained)",
        {"nll_weight": 1.0, "nll_min_score": 1.0, "keep_truncated": False},
    ),
    "beta0.02": ("beta 0.02", {"beta": 0.02}),
    "beta0.5": ("beta 0.5", {"beta": 0.5}),
    "nll0": ("nll_weight 0", {"nll_weight": 0.0}),
    "nll1": ("nll_weight 1", {"nll_weight": 1.0}),
    "candidates_x2": ("twice the samples per prompt on half the prompts", more_candidates),
    "iterations_x2": ("twice the iterations, each on half the prompts", finer_iterations(2)),
    "iterations_x4": ("4 times the iterations, each on a quarter of the prompts", finer_iterations(4)),
    "epochs1": ("1 epoch over each iteration's lists", {"epochs": 1}),
    "epochs2": ("2 epochs over each iteration's lists", {"epochs": 2}),
}  # fmt: skip
"""larpo's variants; the names of the presets' sizes: candidates_x2 = 8 samples, iterations_x2 = 4x32 and
iterations_x4 = 8x16 prompts (the base config: 2 iterations x 64 prompts x 4 samples)."""

BASELINES: dict[str, tuple[str, str, Variant]] = {
    "rft": (
        "control: NLL of every verified-correct sample (exact reward), the solved prompts' included", "larpo",
        lambda base, task: {"objective": "rft", "nll_weight": 0.0, "reward": task.exact_reward,
                            "keep_tied_min_score": 1.0},
    ),
    "trl_dpo": ("TRL DPOTrainer on the (best, worst) pair of each list of the task's config", "trl_dpo", {}),
    "grpo": (
        "TRL GRPOTrainer (loss dapo), num_candidates completions per prompt, the task's GRPO reward", "grpo",
        lambda base, task: {"reward": task.policy_gradient_reward()},
    ),
}  # fmt: skip
"""The baselines: (what, trainer, change to the task's config)."""
ARMS = ("larpo", *BASELINES)


@dataclasses.dataclass(frozen=True)
class Arm:
    """One way to train, before its learning rate is chosen."""

    key: str
    """Unique: its run folders' name (``larpo_<variant>`` for larpo's variants)."""
    trainer: str
    """larpo, trl_dpo (larpo's run, TRL's DPOTrainer as the train stage) or grpo."""
    overrides: Overrides
    """Its settings on top of the task's config."""
    what: str

    @property
    def is_baseline(self) -> bool:
        return self.key in BASELINES


def parse_variant(text: str) -> tuple[str, tuple[str, Overrides]]:
    """A ``--variant`` value, ``"NAME KEY=VALUE ..."`` (values as YAML), as a :data:`VARIANTS` entry."""
    import yaml

    name, *items = text.split()
    pairs = [item.partition("=") for item in items]
    if not pairs or any(not sep for _, sep, _ in pairs):
        raise ValueError(f"--variant {text!r}: expected NAME KEY=VALUE [KEY=VALUE ...]")
    overrides = {key: yaml.safe_load(value) for key, _, value in pairs}
    check_known_keys(
        overrides, [f.name for f in dataclasses.fields(RunConfig)], f"--variant {name}: unknown key"
    )
    return name, (" ".join(items), overrides)


def resolve(variant: Variant, base: RunConfig, task: Task) -> Overrides:
    """The settings a variant changes, for this base config and task."""
    return dict(variant(base, task) if callable(variant) else variant)


def larpo_arms(names: Iterable[str], base: RunConfig, task: Task, variants: Mapping = VARIANTS) -> list[Arm]:
    """The arms of larpo's ``names`` variants, in order, without a variant whose config equals an earlier
    one's (``epochs2`` when the base config has 2 epochs)."""
    arms, seen = [], []
    for name in names:
        what, variant = variants[name]
        overrides = resolve(variant, base, task)
        settings = dataclasses.replace(base, **overrides).to_dict()  # checks the values, too
        if settings not in seen:
            seen.append(settings)
            arms.append(Arm(f"larpo_{name}", "larpo", overrides, f"larpo, {what}"))
    return arms


def baseline_arm(name: str, base: RunConfig, task: Task) -> Arm:
    """The arm of the baseline ``name`` (a key of :data:`BASELINES`)."""
    what, trainer, variant = BASELINES[name]
    overrides = resolve(variant, base, task)
    dataclasses.replace(base, **overrides)  # checks the values
    return Arm(name, trainer, overrides, what)


def ranked(scores: Mapping[K, float]) -> list[K]:
    """The keys of ``scores`` best first; equal scores keep their order in ``scores``."""
    return sorted(scores, key=lambda key: -scores[key])


def choose_lr(scores: Mapping[float, float]) -> float:
    """The learning rate with the best validation score; a tie goes to the smaller learning rate."""
    return ranked(dict(sorted(scores.items())))[0]


def beyond_edge(scores: Mapping[float, float], most: int) -> float | None:
    """The learning rate to try next when the best of ``scores`` (learning rate -> validation score) is at
    the edge of those tried: twice the largest, or half the smallest; None when the best is inside, or
    ``most`` learning rates have been tried."""
    if len(scores) >= most or len(scores) < 2:
        return None
    best = choose_lr(scores)
    if best == max(scores):
        return 2 * best
    if best == min(scores):
        return best / 2
    return None


def iteration_seconds(log: Iterable[Mapping[str, Any]]) -> list[float]:
    """Stage seconds of each iteration of a run, evaluation excluded, from its ``log.jsonl`` entries."""
    totals: dict[int, float] = {}
    for entry in log:
        if "iteration" in entry and entry.get("stage") != "eval":
            totals[entry["iteration"]] = totals.get(entry["iteration"], 0.0) + entry.get("seconds", 0.0)
    return [totals[s] for s in sorted(totals)]


def another_fits(seconds: list[float], budget: float) -> bool:
    """Whether one more iteration fits the stage-seconds ``budget`` after iterations that took ``seconds``:
    when the total it is expected to reach (an iteration costing their mean) is nearer the budget than the
    total without it, or no iteration has run."""
    if not seconds:
        return True
    return sum(seconds) + statistics.mean(seconds) / 2 <= budget


def equal_compute_iterations(seconds: list[float], budget: float) -> int | None:
    """The iterations the ``budget`` buys a run whose iterations took ``seconds`` (at least 1): the first
    after which :func:`another_fits` says no; None while that needs an iteration the run has not run."""
    count = 1
    while another_fits(seconds[:count], budget):
        if count >= len(seconds):
            return None
        count += 1
    return count
