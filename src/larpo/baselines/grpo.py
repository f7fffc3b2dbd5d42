"""GRPO as a baseline: TRL's ``GRPOTrainer`` with a larpo reranker as its reward, inside a larpo run.

:func:`run_grpo` is :func:`larpo.run.run` with the stages of :data:`GRPO_STAGES`: the train stage is one
pass of TRL's ``GRPOTrainer`` over the iteration's prompts (the same seeded ``prompts_per_iteration``
sample a LarPO run draws), ``num_candidates`` completions per prompt, so it generates exactly as many
samples per iteration as the LarPO run with the same config; the generate/score/lists stages are empty
because GRPO samples inside its trainer. Evaluation, resumption, checkpoint saving, the manifest and
``log.jsonl`` (seconds per stage) are larpo's. Loss: TRL's default (``loss_type="dapo"`` in TRL 1.16,
token-level, normalised by the active tokens of the batch; ``beta=0``, so no reference model; rewards
scaled by their group's standard deviation; one optimisation pass per generation batch, clipping
epsilon 0.2).

``trl`` and ``datasets`` come with the ``bench`` extra and are imported inside the functions that need them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from rich.console import Console
from transformers.trainer_callback import PrinterCallback

from larpo.candidates import temperature_for
from larpo.distributed import process_state
from larpo.errors import InputError
from larpo.prompts import Prompt
from larpo.rewards import Reranker
from larpo.run import RunConfig, RunContext, execute


class TRLReward:
    """A larpo reranker in TRL's reward-function convention: ``reward(prompts, completions, **kwargs)``
    returns one float per completion, ``prompts[i]`` being the prompt of ``completions[i]``.

    With the run's ``prompts``, the dataset's ``prompt_id`` column (which TRL passes as a keyword argument)
    names each completion's prompt, and the reranker sees that prompt as the prompts file holds it, with
    its row's fields, as in a LarPO run. Without them, it sees the text TRL passes and no fields.
    The completions of one prompt are scored together as one candidate list, as larpo scores a list;
    ``completions_scored`` counts every completion seen.
    """

    __name__ = "larpo_reward"  # TRL's name for it in its logs

    def __init__(self, reranker: Reranker, prompts: Sequence[Prompt] = ()) -> None:
        self.reranker = reranker
        self.prompts = {p.prompt_id: p for p in prompts}
        self.completions_scored = 0

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> list[float]:
        keys = columns.get("prompt_id") if self.prompts else None
        positions: dict[str, list[int]] = {}
        for index, key in enumerate(keys or prompts):
            positions.setdefault(key, []).append(index)
        groups = list(positions)
        inputs = [self.prompts[k] if keys else Prompt(k, k) for k in groups]
        scores = self.reranker.score(
            [p.original for p in inputs],
            [[completions[i] for i in positions[k]] for k in groups],
            [p.fields for p in inputs],
        )
        rewards = [0.0] * len(completions)
        for key, row in zip(groups, scores, strict=True):
            for index, value in zip(positions[key], row, strict=True):
                rewards[index] = value
        self.completions_scored += len(completions)
        return rewards


def grpo_dataset(prompts: Sequence[Prompt]):
    """The ``datasets.Dataset`` GRPOTrainer trains on: each prompt's rendered text as ``prompt`` and its
    id as ``prompt_id``."""
    from datasets import Dataset

    return Dataset.from_dict(
        {"prompt": [p.text for p in prompts], "prompt_id": [p.prompt_id for p in prompts]}
    )


def grpo_config(config: RunConfig, iteration: int, output_dir: str, show_progress: bool = False):
    """TRL's ``GRPOConfig`` for ``iteration`` of ``config``: the run's training arguments
    (:meth:`RunConfig.training_arguments`) with ``num_candidates`` generations per prompt,
    ``batch_size`` prompts per optimizer step, one pass over the prompts, fp32, no gradient checkpointing.

    Everything else is TRL's default: the loss type, ``beta``, ``epsilon``, ``scale_rewards``,
    ``num_iterations``, ``top_p``/``top_k``."""
    from trl import GRPOConfig

    arguments = config.training_arguments(iteration)
    del arguments["max_length"]  # GRPO bounds the completion instead
    arguments.update(
        per_device_train_batch_size=config.batch_size * config.num_candidates,
        num_train_epochs=1,
        bf16=False,
        fp16=False,
    )
    return GRPOConfig(
        output_dir=output_dir,
        num_generations=config.num_candidates,
        max_completion_length=config.max_new_tokens,
        temperature=temperature_for(iteration, config.temperature),
        use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=False,  # TRL's default (True) only saves memory, at a recompute's cost
        disable_tqdm=not show_progress,
        **arguments,
    )


def train_grpo(
    model, tokenizer, prompts: Sequence[Prompt], reward: TRLReward, args, callbacks=()
) -> dict[str, Any]:
    """Train ``model`` in place with GRPOTrainer on ``prompts`` (rendered); stats from TRL's logs."""
    from trl import GRPOTrainer

    before = reward.completions_scored
    trainer = GRPOTrainer(
        model, reward_funcs=reward, args=args, train_dataset=grpo_dataset(prompts), processing_class=tokenizer
    )
    trainer.remove_callback(PrinterCallback)
    for callback in callbacks:
        trainer.add_callback(callback)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "reward" in h]

    def mean(key: str) -> float | None:
        values = [h[key] for h in logs if key in h]
        return sum(values) / len(values) if values else None

    return {
        "trainer": "trl.GRPOTrainer",
        "loss_type": args.loss_type,
        "prompts": len(prompts),
        "completions": reward.completions_scored - before,
        "steps": trainer.state.global_step,
        "loss": mean("loss"),
        "mean_reward": mean("reward"),
        "frac_reward_zero_std": mean("frac_reward_zero_std"),
    }


def grpo_train(ctx: RunContext, s: int) -> dict[str, Any]:
    """The train stage with GRPO: the policy of iteration s-1 trained on iteration ``s``'s prompts, saved
    as ``iter_<s>/model`` by the run's checkpoint saving."""
    if (stats := ctx.finished_checkpoint(s)) is not None:
        return stats
    ctx.release_policies()  # training changes the weights: never reuse a kept copy
    model, tokenizer = ctx.load(ctx.model_path(s - 1), trainable=True, dtype="float32")
    args = grpo_config(ctx.config, s, str(ctx.iteration_dir(s) / "trainer"), ctx.console.is_terminal)
    prompts = ctx.prompts_for(s)
    reward = TRLReward(ctx.reranker, prompts)
    stats = train_grpo(model, tokenizer, prompts, reward, args, ctx.train_callbacks(s))
    ctx.save_checkpoint(s, model, tokenizer, stats)
    return stats


def sampled_in_training(ctx: RunContext, s: int) -> dict[str, Any]:
    """The generate, score and lists stages of a GRPO run: GRPO samples and scores inside its trainer."""
    return {"skipped": "GRPO samples inside its trainer"}


GRPO_STAGES = {
    "generate": sampled_in_training,
    "score": sampled_in_training,
    "lists": sampled_in_training,
    "train": grpo_train,
}


def check_grpo_config(config: RunConfig) -> None:
    """Raise InputError for what the GRPO baseline cannot do (before anything is written)."""
    if config.lora or process_state().num_processes > 1 or config.generator != "transformers":
        raise InputError("the GRPO baseline trains all weights in one process and samples with transformers")
    if config.temperature_mix:
        raise InputError("the GRPO baseline samples each prompt at one temperature (no temperature_mix)")


def open_grpo_run(config: RunConfig, console: Console | None = None) -> RunContext:
    """The checked context of a GRPO run of ``config``; run it with ``execute(ctx, GRPO_STAGES)``."""
    check_grpo_config(config)
    return RunContext.open(config, console)


def run_grpo(config: RunConfig, console: Console | None = None) -> dict[str, Any]:
    """Run (or resume) ``config`` with GRPO as its trainer (see the module docstring); the manifest's data."""
    return execute(open_grpo_run(config, console), GRPO_STAGES)
