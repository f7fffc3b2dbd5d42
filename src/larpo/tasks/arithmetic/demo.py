"""``larpo demo``: a tiny model learns arithmetic, then LarPO aligns it, on a laptop CPU in minutes.

The paper's GSM8K setting in miniature (Jin et al. 2025, Figure 4(a), Table 6): a verifiable reward,
a supervised start that is deliberately imperfect, then iterations of sample -> rerank -> train with a
ranking objective, measured on 1,000 held-out problems. Every step is resumable: re-running the same
command continues where it stopped. The defaults were chosen by measurement (docs/demo.md).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from larpo.errors import InputError
from larpo.evaluation.report import iteration_rows, write_report
from larpo.io import atomic_write_json, atomic_write_text
from larpo.run import run as run_larpo
from larpo.run.config import RunConfig
from larpo.tasks import arithmetic

REWARDS = {"graded": "larpo.tasks.arithmetic:graded_reward", "exact": "larpo.tasks.arithmetic:exact_match"}


@dataclass(frozen=True)
class DemoSettings:
    """The demo's task, SFT and LarPO settings."""

    seed: int = 0
    objective: str = "contrastive"
    reward: str = "exact"
    kind: str = arithmetic.DEFAULT_KIND
    train_prompts: int = 12000
    heldout_prompts: int = 1000
    validation_prompts: int = 1000
    sft_steps: int = 1500
    sft_batch_size: int = 64
    sft_learning_rate: float = 4e-4
    sft_target_accuracy: float = 0.40
    sft_validation_prompts: int = 200
    demonstration_error_rate: float = 0.6
    iterations: int = 6
    prompts_per_iteration: int = 2000
    memorization: str = "previous"
    num_candidates: int = 8
    temperature: float = 1.0
    learning_rate: float = 2e-4
    beta: float = 0.02
    nll_weight: float = 1.0
    epochs: float = 2.0
    batch_size: int = 32
    eval_samples: int = 16
    eval_samples_between: int = 4
    warmup_ratio: float = 0.1
    lr_scheduler_type: str = "constant"

    def check(self) -> None:
        """Raise an InputError naming the option (``larpo demo --...``) of a setting out of range."""
        from larpo.losses import get_objective

        try:
            get_objective(self.objective)
        except ValueError as error:
            raise InputError(str(error)) from None
        if self.reward not in REWARDS:
            raise InputError(f"unknown demo reward {self.reward!r}; valid: {', '.join(REWARDS)}")
        if not 0.0 <= self.demonstration_error_rate <= 1.0:
            raise InputError(f"--error-rate must be in [0, 1], got {self.demonstration_error_rate}")
        if self.iterations < 1:
            raise InputError(f"--iterations must be at least 1, got {self.iterations}")

    def run_config(self, output: Path, max_new_tokens: int) -> RunConfig:
        return RunConfig(
            model=str(output / "sft"),
            prompts=str(output / "train_prompts.jsonl"),
            reward=REWARDS[self.reward],
            output_dir=str(output / "run"),
            iterations=self.iterations,
            prompts_per_iteration=self.prompts_per_iteration,
            memorization=self.memorization,
            seed=self.seed,
            num_candidates=self.num_candidates,
            temperature=self.temperature,
            max_new_tokens=max_new_tokens,
            generation_batch_size=256,
            objective=self.objective,
            beta=self.beta,
            nll_weight=self.nll_weight,
            learning_rate=self.learning_rate,
            epochs=self.epochs,
            batch_size=self.batch_size,
            eval_prompts=str(output / "heldout_prompts.jsonl"),
            eval_samples=self.eval_samples,
            eval_samples_between=min(self.eval_samples_between, self.eval_samples),
            warmup_ratio=self.warmup_ratio,
            lr_scheduler_type=self.lr_scheduler_type,
            eval_ks=[k for k in (1, 4, 16) if k <= self.eval_samples],
        )


def run_demo(output: Path, settings: DemoSettings, console: Console | None = None) -> dict[str, Any]:
    """SFT, then LarPO iterations, then the before/after report; returns ``report.json``'s content."""
    console = console or Console(stderr=True)
    max_new_tokens = prepare_start(output, settings, console)
    run_larpo(settings.run_config(output, max_new_tokens), console=console)
    report = _report(output, settings)
    atomic_write_json(output / "report.json", report)
    console.print(_before_after_table(report))
    return report


def prepare_start(output: Path, settings: DemoSettings, console: Console) -> int:
    """Write ``train_prompts.jsonl``, ``heldout_prompts.jsonl`` and ``validation_prompts.jsonl``
    (:func:`prompt_splits`) and the SFT start ``output/sft`` (kept when present); return the response
    budget (``max_new_tokens``) the LarPO runs use."""
    output.mkdir(parents=True, exist_ok=True)
    splits = prompt_splits(settings)
    for name in ("train", "heldout", "validation"):
        text = "".join(json.dumps({"prompt": p}) + "\n" for p in splits[name])
        atomic_write_text(output / f"{name}_prompts.jsonl", text)
    train, heldout = splits["train"], splits["heldout"]
    max_new_tokens = arithmetic.answer_budget(train + heldout)
    if not (output / "sft" / "config.json").exists():
        console.print(f"supervised warm-up on {len(train)} problems (stops at validation accuracy "
                      f"{settings.sft_target_accuracy:.0%})...")  # fmt: skip
        _supervised_start(output, settings, train, splits["sft_stop"], console)
    return max_new_tokens


def prompt_splits(settings: DemoSettings) -> dict[str, list[str]]:
    """The demo's disjoint problem sets: ``train``, ``heldout`` (the test split: reported, never used to
    choose), ``validation`` (for choosing settings) and ``sft_stop`` (the SFT stage's stopping rule).

    ``validation`` is drawn last, from the problems the others left, so it changes none of them."""
    train, rest = arithmetic.train_and_heldout_splits(
        settings.train_prompts,
        settings.heldout_prompts + settings.sft_validation_prompts,
        settings.seed,
        kind=settings.kind,
    )
    validation = arithmetic.validation_split(
        settings.validation_prompts, settings.seed, train + rest, kind=settings.kind
    )
    return {
        "train": train,
        "heldout": rest[: settings.heldout_prompts],
        "validation": validation,
        "sft_stop": rest[settings.heldout_prompts :],
    }


def _supervised_start(
    output: Path, settings: DemoSettings, train: list[str], stop: list[str], console: Console
) -> None:
    """SFT until greedy accuracy on the ``stop`` problems (not the held-out set) reaches the target."""
    tokenizer = arithmetic.build_tokenizer()
    model = arithmetic.build_model(tokenizer, settings.seed)
    if torch.cuda.is_available():
        model = model.to("cuda")
    targets = arithmetic.demonstrations(train, settings.demonstration_error_rate, settings.seed)
    history = arithmetic.sft(
        model, tokenizer, train, targets=targets,
        steps=settings.sft_steps, batch_size=settings.sft_batch_size, learning_rate=settings.sft_learning_rate,
        seed=settings.seed, eval_prompts=stop,
        target_accuracy=settings.sft_target_accuracy, on_record=lambda r: _print_sft_record(console, r, settings.sft_target_accuracy),
    )  # fmt: skip
    staging = output / "sft.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    atomic_write_json(staging / "sft_history.json", [dataclasses.asdict(h) for h in history])
    staging.rename(output / "sft")


def _print_sft_record(console: Console, record: arithmetic.SFTRecord, target: float) -> None:
    """One progress line every 100 steps and when the target is reached."""
    if record.step % 100 == 0 or (record.accuracy or 0.0) >= target:
        console.print(
            f"  step {record.step:>5}  loss {record.loss:.3f}  validation accuracy {record.accuracy:.1%}"
        )


def _report(output: Path, settings: DemoSettings) -> dict[str, Any]:
    run_dir = output / "run"
    initial = json.loads((run_dir / "eval" / "initial.json").read_text())
    final = json.loads((run_dir / "eval" / f"iter_{settings.iterations - 1}.json").read_text())
    write_report(run_dir, output)

    def summary(result: dict[str, Any]) -> dict[str, Any]:
        keys = ("greedy_accuracy", "pass_at_k", "mean_reward", "ndcg", "kendall_tau")
        return {k: result[k] for k in keys if k in result}

    return {
        "sft": summary(initial),
        "final": summary(final),
        "iterations": iteration_rows(run_dir),
        "settings": dataclasses.asdict(settings),
        "plots": ["report_iterations.png", "report_recall.png"],
    }


def _before_after_table(report: dict[str, Any]) -> Table:
    heldout = report["settings"]["heldout_prompts"]
    table = Table(f"held-out ({heldout:,} problems)", "SFT", "after LarPO", "change", title="larpo demo")
    rows = [("greedy accuracy", "greedy_accuracy")] + [
        (f"pass@{k}", ("pass_at_k", k)) for k in report["sft"]["pass_at_k"]
    ] + [("mean reward", "mean_reward")]  # fmt: skip
    for label, key in rows:
        before, after = (_get(report[side], key) for side in ("sft", "final"))
        table.add_row(label, f"{before:.3f}", f"{after:.3f}", f"{after - before:+.3f}")
    return table


def _get(result: dict[str, Any], key: str | tuple[str, str]) -> float:
    return result[key[0]][key[1]] if isinstance(key, tuple) else result[key]
