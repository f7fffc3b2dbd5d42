"""The runs of benchmarks/study.py: each arm's config for a seed and learning rate, training (resumable),
greedy validation on a fixed subset, and test evaluation, every result cached in its run folder and recorded
in the study's ledger (study_ledger), which answers for a run whose folder is gone.

Layout under the study's output folder::

    validation_subset.jsonl          the first --validation-prompts validation prompts, written once
    initial_validation.json          the pretrained model's greedy validation accuracy
    initial_test/eval.json           the pretrained model on test
    seed<N>/<arm key>_lr<lr>/        one run (larpo's run folder); equal compute extends its iterations
        validation/iter_<s>.json     greedy validation accuracy of iter_<s>/model
        eval_test/iter_<s>/eval.json greedy accuracy and pass@1 of iter_<s>/model on test
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from larpo.baselines.grpo import run_grpo
from larpo.evaluation.held_out import EvalSettings
from larpo.evaluation.model_dir import evaluate_model_dir
from larpo.io import atomic_write_json
from larpo.run import run as run_larpo
from larpo.run.config import RunConfig, load_run_config
from study_arms import Arm, Task, equal_compute_iterations, iteration_seconds
from study_ledger import Ledger, Settings
from trl_iterative import trl_train


@dataclasses.dataclass(frozen=True)
class Study:
    """One task's study: where its runs live and how every run is configured and measured."""

    task: Task
    model: Path
    output: Path
    overrides: tuple[str, ...] = ()
    """``key=value`` settings on every arm's config (``--set``), after the task's config."""
    validation_prompts: int = 200
    ledger_path: Path | None = None
    """The study's ledger (None: ``ledger.jsonl`` in the output folder)."""
    machine: str = ""
    """The machine the ledger's new entries are measured on."""

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.ledger_path or self.output / "ledger.jsonl", self.machine)

    def base(self) -> RunConfig:
        """The task's config with the ``--set`` overrides, the study's model, train prompts and training
        reward, and no evaluation inside the run (the study evaluates afterwards)."""
        config = load_run_config(
            self.task.config, list(self.overrides), model=str(self.model), reward=self.task.reward,
            prompts=str(self.task.prompts / "train.jsonl"), output_dir=str(self.output),
        )  # fmt: skip
        return dataclasses.replace(config, eval_prompts=None)

    def config(self, arm: Arm, seed: int, learning_rate: float) -> RunConfig:
        """The run config of ``arm`` for ``seed`` at ``learning_rate``: the base config, then the arm's
        settings, at equal samples (the base config's, or the variant's equal split of them)."""
        run_dir = self.output / f"seed{seed}" / f"{arm.key}_lr{learning_rate:g}"
        return dataclasses.replace(
            self.base(), **arm.overrides, seed=seed, learning_rate=learning_rate, output_dir=str(run_dir)
        )

    def train(self, arm: Arm, config: RunConfig, console: Console) -> Path:
        """Run (or resume) ``config`` with the arm's trainer, unless finished; its final model folder."""
        if not is_finished(Path(config.output_dir), config.iterations):
            if arm.trainer == "grpo":
                run_grpo(config, console)
            elif arm.trainer == "trl_dpo":
                run_larpo(config, stages={"train": trl_train}, console=console)
            else:
                run_larpo(config, console=console)
        return model_dir(config, config.iterations)

    def validation_subset(self) -> Path:
        """The fixed validation prompts (the first ``validation_prompts`` of validation.jsonl), written
        into the output folder once so that every run is validated on the same file."""
        path = self.output / "validation_subset.jsonl"
        if not path.exists():
            lines = (self.task.prompts / "validation.jsonl").read_text().splitlines(keepends=True)
            self.output.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(lines[: self.validation_prompts]))
        return path

    def validate(self, model: Path, cached: Path) -> dict[str, Any]:
        """Greedy accuracy (exact reward) of ``model`` on the validation subset, cached in ``cached``."""
        if not cached.exists():
            base = self.base()
            result = greedy_accuracy(
                model, self.validation_subset(), self.task.exact_reward, base.chat_template,
                base.max_new_tokens, base.generation_batch_size,
            )  # fmt: skip
            cached.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(cached, result)
        return json.loads(cached.read_text())

    def test(self, model: Path, where: Path) -> dict[str, float]:
        """``larpo eval``'s greedy accuracy and pass@1 (one sample at T=1) of ``model`` on the test split
        with the exact reward, cached in ``where/eval.json``."""
        if not (where / "eval.json").exists():
            base = self.base()
            settings = EvalSettings(
                num_samples=1, temperatures=[1.0], ks=[1], max_new_tokens=base.max_new_tokens
            )
            evaluate_model_dir(
                model, self.task.prompts / "test.jsonl", self.task.exact_reward, where, settings,
                batch_size=base.generation_batch_size, chat_template=base.chat_template, reference=self.model,
            )  # fmt: skip
        result = json.loads((where / "eval.json").read_text())
        return {"greedy_accuracy": result["greedy_accuracy"], "pass_at_1": result["pass_at_k"]["1"]}

    def evaluation(self, kind: str) -> dict[str, Any]:
        """How a ``kind`` (validation or test) measurement is taken: prompts and exact reward."""
        if kind == "validation":
            prompts = {
                "prompts": str(self.task.prompts / "validation.jsonl"),
                "first": self.validation_prompts,
            }
        else:
            prompts = {"prompts": str(self.task.prompts / "test.jsonl")}
        return {**prompts, "reward": self.task.exact_reward}

    def measured(self, kind: str, run: str, settings: Settings, measure: Callable[[], dict[str, Any]],
                 seconds: Callable[[], list[float]] = list) -> dict[str, Any]:  # fmt: skip
        """The ledger's entry of a ``kind`` measurement of ``run`` with ``settings``; when it has none,
        ``measure()``'s result, recorded with the run's stage seconds per iteration (``seconds()``)."""
        evaluation = self.evaluation(kind)
        if (entry := self.ledger.find(kind, run, settings, evaluation)) is None:
            result = measure()
            entry = self.ledger.record(kind, run, settings, evaluation, result, seconds())
        return entry

    def pretrained(self, kind: str) -> dict[str, Any]:
        """The pretrained model's greedy validation accuracy, or its test evaluation."""
        base = self.base()
        settings = {"model": str(self.model), "iterations": 0, "chat_template": base.chat_template,
                    "max_new_tokens": base.max_new_tokens}  # fmt: skip
        if kind == "validation":
            measure = functools.partial(self.validate, self.model, self.output / "initial_validation.json")
        else:
            measure = functools.partial(self.test, self.model, self.output / "initial_test")
        return self.measured(kind, "pretrained", settings, measure)["result"]

    def run_name(self, config: RunConfig) -> str:
        """``config``'s run in the ledger: its folder under the output folder."""
        return Path(config.output_dir).relative_to(self.output).as_posix()

    def known_seconds(self, config: RunConfig) -> list[float]:
        """Stage seconds per iteration of ``config``'s run: the ledger's for the iterations it records, then
        its log's. A run trained again (its folder gone) measures its first iterations a second time; the
        recorded ones stay, so the iterations a budget buys do not depend on which checkout resumed it."""
        recorded = self.ledger.iteration_seconds(self.run_name(config), config.to_dict())
        return recorded + run_seconds(config)[len(recorded) :]

    def trained_and_measured(
        self, kind: str, arm: Arm, config: RunConfig, console: Console
    ) -> dict[str, Any]:
        """The ``kind`` measurement (validation or test) of ``config``'s run after its ``iterations``: the
        ledger's, else trained (or resumed) and measured (each cached in the run folder too)."""

        def measure() -> dict[str, Any]:
            model = self.train(arm, config, console)
            run_dir, name = Path(config.output_dir), model.parent.name
            if kind == "validation":
                return self.validate(model, run_dir / "validation" / f"{name}.json")
            return self.test(model, run_dir / "eval_test" / name)

        entry = self.measured(kind, self.run_name(config), config.to_dict(), measure,
                              functools.partial(self.known_seconds, config))  # fmt: skip
        seconds = cost(config, entry["iteration_seconds"], entry.get("seconds"))
        return {**entry["result"], **seconds, "machine": entry["machine"]}

    def validated(self, arm: Arm, learning_rate: float, console: Console) -> dict[str, Any]:
        """Seed 0 of ``arm`` at ``learning_rate`` trained at equal samples and validated: one row of the
        search table."""
        config = self.config(arm, 0, learning_rate)
        return {"arm": arm.key, "learning_rate": learning_rate,
                **self.trained_and_measured("validation", arm, config, console)}  # fmt: skip

    def extend_to_budget(self, arm: Arm, config: RunConfig, budget: float, console: Console) -> RunConfig:
        """``config`` with the iterations that ``budget`` stage seconds buy
        (:func:`study_arms.equal_compute_iterations`, on the seconds the run's log or the ledger knows),
        running more of them while that is undecided."""
        while (count := equal_compute_iterations(known := self.known_seconds(config), budget)) is None:
            self.train(arm, dataclasses.replace(config, iterations=len(known) + 1), console)
        return dataclasses.replace(config, iterations=count)

    def row(self, name: str, arm: Arm, config: RunConfig, console: Console) -> dict[str, Any]:
        """The result row of ``config``'s run after its ``iterations``: tested (the ledger's result, else
        trained or resumed, and tested)."""
        test = self.trained_and_measured("test", arm, config, console)
        return {"arm": name, "seed": config.seed, "learning_rate": config.learning_rate, **test}

    def stage_hours(self) -> float:
        """Stage hours of every run of the study (search, test seeds, extensions; evaluation excluded), as
        far as the run logs under the output folder or the ledger know them."""
        seconds = self.ledger.stage_seconds_by_run()
        for log in self.output.glob("seed*/*/log.jsonl"):
            run = log.parent.relative_to(self.output).as_posix()
            seconds[run] = max(seconds.get(run, 0.0), sum(logged_seconds(log.parent)))
        return sum(seconds.values()) / 3600


def greedy_accuracy(
    model: Path, prompts: Path, reward: str, chat_template: str, max_new_tokens: int, batch_size: int
) -> dict[str, Any]:
    """Greedy replies of ``model`` to ``prompts`` (rendered in its chat template, stopped at its stop ids),
    scored by ``reward`` (each prompt as the file holds it, with its row's fields): the fraction correct
    (``larpo eval``'s threshold) and the mean reward. No sampling: validation is greedy only."""
    from larpo.chat import ChatFormat
    from larpo.generation import TransformersGenerator
    from larpo.model_io import load_policy
    from larpo.prompts import load_prompts
    from larpo.rewards import load_reranker

    policy, tokenizer = load_policy(model)
    items = load_prompts(prompts, tokenizer, chat_template)
    stop_ids = ChatFormat(tokenizer, chat_template).stop_token_ids(policy)
    generator = TransformersGenerator(policy, tokenizer, batch_size=batch_size, stop_ids=stop_ids)
    replies = generator.greedy([p.text for p in items], max_new_tokens)
    scores = [
        row[0]
        for row in load_reranker(reward).score(
            [p.original for p in items], [[r] for r in replies], [p.fields for p in items]
        )
    ]
    threshold = EvalSettings().correct_threshold
    return {
        "prompts": len(items),
        "greedy_accuracy": sum(s >= threshold for s in scores) / len(items),
        "mean_reward": sum(scores) / len(items),
    }


def model_dir(config: RunConfig, iterations: int) -> Path:
    """The model a run of ``config`` has after ``iterations`` iterations."""
    return Path(config.output_dir) / f"iter_{iterations - 1}" / "model"


def is_finished(run_dir: Path, iterations: int) -> bool:
    """Whether every stage of the run's first ``iterations`` iterations is recorded in its manifest."""
    manifest = run_dir / "manifest.json"
    if not manifest.exists():
        return False
    completed = json.loads(manifest.read_text())["completed"]
    return all("eval" in completed.get(str(s), {}) for s in range(iterations))


def logged_seconds(run_dir: Path) -> list[float]:
    """Stage seconds of each iteration a run folder's log holds (evaluation excluded)."""
    log = run_dir / "log.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    return iteration_seconds(json.loads(line) for line in lines)


def run_seconds(config: RunConfig) -> list[float]:
    """Stage seconds of each iteration the run of ``config`` has logged (evaluation excluded)."""
    return logged_seconds(Path(config.output_dir))


def cost(
    config: RunConfig, iteration_seconds: list[float] | None, total: float | None = None
) -> dict[str, Any]:
    """Iterations, samples drawn and stage seconds of the run of ``config`` up to its ``iterations``, given
    its stage seconds per iteration, or where those were not recorded (None) the ``total`` a published table
    gave (None: unknown)."""
    prompts = config.prompts_per_iteration or len(Path(config.prompts).read_text().splitlines())
    seconds = total if iteration_seconds is None else round(sum(iteration_seconds[: config.iterations]), 1)
    return {
        "iterations": config.iterations,
        "samples": config.iterations * prompts * config.num_candidates,
        "seconds": seconds,
    }
