"""Experiment tracking for iterative runs: the loop's per-iteration numbers in TensorBoard, W&B, MLflow...

``report_to`` takes the values of ``TrainingArguments.report_to`` (``"none"``, ``"all"``, a tracker
name such as ``"tensorboard"``, ``"wandb"``, ``"mlflow"``, ``"trackio"``, or a list of names). The
:class:`IterationTracker` drives transformers' own integration callbacks, so every tracker transformers
supports works, configured the way it always is (``WANDB_PROJECT``, ``MLFLOW_TRACKING_URI``, ...).

Names follow the Trainer's logs: a metric ``iteration/mean_reward`` appears as
``train/iteration/mean_reward`` in TensorBoard, W&B and trackio (next to the Trainer's ``train/loss``),
and ``eval/greedy_accuracy`` as ``eval/greedy_accuracy``; MLflow shows the names unprefixed
(``iteration/mean_reward``, ``eval_greedy_accuracy``). One tracker serves a whole run: the Trainer of
each iteration forwards its own logs through :meth:`IterationTracker.trainer_callback`, so the steps
continue across iterations and the iteration metrics line up with them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from larpo.errors import InputError

ITERATION_STAGES = ("generate", "score", "lists", "train")
"""Stages whose numbers are logged as ``iteration/<name>``; the ``eval`` stage's as ``eval/<name>``."""


def normalize_report_to(report_to: str | list[str] | None) -> list[str]:
    """The tracker names ``report_to`` stands for (``[]`` for ``none``); checks the type only, so a
    config can be checked without importing transformers (names are checked by the tracker)."""
    if report_to is None or report_to == "none":
        return []
    if isinstance(report_to, str):
        return [report_to]
    if not isinstance(report_to, list) or not all(isinstance(name, str) for name in report_to):
        raise InputError(f"report_to must be a tracker name or a list of names, got {report_to!r}")
    return [] if report_to == ["none"] else list(report_to)


def iteration_metrics(stages: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """The flat metrics of one iteration from its manifest entry (``manifest["completed"][str(s)]``).

    Every numeric stat of the generate/score/lists/train stages becomes ``iteration/<name>``, and of
    the eval stage ``eval/<name>`` (``pass_at_k`` per k: ``eval/pass_at_k/<k>``); ``None``, booleans
    and lists are left out. ``iteration/lists_skipped`` adds the lists skipped for too few distinct
    responses and those dropped as all tied.
    """
    metrics: dict[str, float] = {}
    for stage, stats in stages.items():
        prefix = "eval" if stage == "eval" else "iteration" if stage in ITERATION_STAGES else None
        if prefix is None:
            continue
        for name, value in stats.items():
            if isinstance(value, Mapping):
                metrics.update({f"{prefix}/{name}/{k}": float(v) for k, v in value.items() if _is_number(v)})
            elif _is_number(value):
                metrics[f"{prefix}/{name}"] = float(value)
    lists = stages.get("lists", {})
    if "skipped_too_few" in lists:
        metrics["iteration/lists_skipped"] = float(
            lists["skipped_too_few"] + lists.get("dropped_all_tied", 0)
        )
    return metrics


def global_step(completed: Mapping[str, Mapping[str, Any]], iteration: int) -> int:
    """Optimizer steps taken up to and including ``iteration`` (0 for the initial evaluation, -1):
    the step at which that iteration's metrics are logged."""
    return sum(
        int(stages.get("train", {}).get("steps", 0))
        for key, stages in completed.items()
        if 0 <= int(key) <= iteration
    )


class IterationTracker:
    """Logs a run's metrics to the trackers of ``report_to`` (on the main process only).

    Args:
        report_to: as ``TrainingArguments.report_to``; ``"none"`` logs nothing and imports nothing.
        logging_dir: where file-based trackers write (TensorBoard's event files go right here).
        run_name: the run's name in the tracker.
        project: the project (trackio; W&B reads ``WANDB_PROJECT``).
        settings: the run's settings, recorded as the run's config by trackers that keep one.
    """

    def __init__(
        self,
        report_to: str | list[str] | None,
        logging_dir: str | Path,
        *,
        run_name: str | None = None,
        project: str | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.names = normalize_report_to(report_to)
        self.callbacks: list[Any] = []
        if not self.names:
            return
        from transformers import TrainerControl, TrainerState
        from transformers.integrations import get_reporting_integration_callbacks

        try:
            classes = get_reporting_integration_callbacks(
                self.names[0] if self.names == ["all"] else self.names
            )
            self.callbacks = [cls() for cls in classes]
        except (ValueError, RuntimeError, ImportError) as error:  # unknown name, package not installed
            raise InputError(f"report_to: {error}") from None
        for callback in self.callbacks:
            if hasattr(callback, "logging_dir") and callback.logging_dir is None:
                callback.logging_dir = str(logging_dir)  # TensorBoard: here, not in a dated subfolder
        self.args = _tracker_arguments(logging_dir, run_name, project, dict(settings or {}))
        self.state, self.control = TrainerState(), TrainerControl()
        self._carrier = _SettingsCarrier(dict(settings or {}))
        for callback in self.callbacks:
            callback.on_train_begin(self.args, self.state, self.control, model=self._carrier)

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Log ``metrics`` (names as :func:`iteration_metrics` makes them) at optimizer step ``step``."""
        logs = {
            (f"eval_{name[5:]}" if name.startswith("eval/") else name): value
            for name, value in metrics.items()
        }
        self._emit(logs, step)

    def trainer_callback(self, step_offset: int):
        """A TrainerCallback forwarding a Trainer's logs (loss, learning rate...) to this tracker at
        ``step_offset + global_step``: add it to each iteration's Trainer, whose own ``report_to``
        stays ``none``."""
        from transformers import TrainerCallback

        tracker = self

        class _Forward(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and state.is_world_process_zero:
                    tracker._emit(dict(logs), step_offset + state.global_step)

        return _Forward()

    def close(self) -> None:
        """Flush and end the tracker runs."""
        for callback in self.callbacks:
            callback.on_train_end(self.args, self.state, self.control, model=self._carrier)
        self.callbacks = []

    def __enter__(self) -> IterationTracker:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _emit(self, logs: dict[str, Any], step: int) -> None:
        if not self.callbacks:
            return
        self.state.global_step = step
        for callback in self.callbacks:
            callback.on_log(self.args, self.state, self.control, logs=dict(logs), model=self._carrier)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Settings(dict):
    """The run's settings where integrations expect a model config (``to_dict``, ``to_json_string``)."""

    def to_dict(self) -> dict[str, Any]:
        return dict(self)

    def to_json_string(self) -> str:
        return json.dumps(self, indent=2, sort_keys=True, default=str)


class _SettingsCarrier:
    """Stands where integrations expect the model: they record ``model.config`` as the run's config."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.config = _Settings(settings)


def _tracker_arguments(logging_dir: str | Path, run_name: str | None, project: str | None, settings: dict):
    """TrainingArguments for the integrations, whose recorded config is the run's settings rather
    than the defaults of arguments no Trainer uses. Built from the field defaults without
    ``__post_init__``, which would set up (and reset) the accelerator state of the running process."""
    from transformers import TrainingArguments

    class TrackerArguments(TrainingArguments):
        def to_dict(self) -> dict[str, Any]:
            return {"report_to": self.report_to, "run_name": self.run_name, **settings}

    args = TrackerArguments.__new__(TrackerArguments)
    for spec in dataclasses.fields(TrainingArguments):
        if spec.default is not dataclasses.MISSING:
            setattr(args, spec.name, spec.default)
        elif spec.default_factory is not dataclasses.MISSING:
            setattr(args, spec.name, spec.default_factory())
    args.output_dir, args.run_name, args.report_to = str(logging_dir), run_name, []
    if project:
        args.project = project
    return args
