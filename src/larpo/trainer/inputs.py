"""What ``larpo train`` trains on: its lists (a file of any format :mod:`larpo.dataset_formats` reads) and its
settings."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from larpo.adapters import LoraSettings
from larpo.checks import check_known_keys, yaml_number
from larpo.errors import InputError
from larpo.model_card import ModelCardInfo, write_model_card
from larpo.trainer.config import ListwiseConfig


def check_list_lengths(
    examples: list[dict[str, Any]], max_length: int | None, context: int | None, where: Path
) -> None:
    """Every list fits: its prompt is shorter than ``max_length`` (responses are cut to fit it, prompts
    never are), and its longest prompt + response, after that cut, fits the model's context."""
    for number, example in enumerate(examples, start=1):
        prompt = len(example["prompt_ids"])
        if max_length is not None and prompt >= max_length:
            raise InputError(
                f"{where}: record {number}: the prompt has {prompt} tokens, which does not fit max_length={max_length}"
            )
        longest = prompt + max(len(r) for r in example["response_ids"])
        if max_length is not None:
            longest = min(longest, max_length)
        if context is not None and longest > context:
            raise InputError(
                f"{where}: record {number}: prompt + response is {longest} tokens, more than the model's "
                f"context of {context} (max_position_embeddings); shorten it or set --max-length"
            )


def listwise_config(**settings: Any) -> ListwiseConfig:
    """A ListwiseConfig from plain settings (a YAML file, flags); unknown keys and invalid values become
    InputError."""
    fields = {f.name: f for f in dataclasses.fields(ListwiseConfig) if f.init}
    check_known_keys(settings, sorted(fields), "unknown training setting")
    for key, value in settings.items():
        settings[key] = _as_number(key, value, fields[key].default)
    defaults = {"report_to": "none", "logging_steps": 10}
    try:
        return ListwiseConfig(**{**defaults, **settings})
    except (ValueError, TypeError) as error:
        raise InputError(str(error).splitlines()[0]) from None


def _as_number(key: str, value: Any, default: Any) -> Any:
    """``value`` of a setting whose default is a number, as a number (a string that spells one, as YAML
    reads ``1e-5``, included); a value that is no number is an InputError. Other settings pass through."""
    if isinstance(default, bool) or not isinstance(default, int | float):
        return value
    number = yaml_number(value)
    if isinstance(number, bool) or not isinstance(number, int | float):
        raise InputError(f"{key} must be a number, got {type(value).__name__} {value!r}")
    if isinstance(default, int) and isinstance(number, float) and isinstance(value, str):
        if not number.is_integer():
            raise InputError(f"{key} must be a whole number, got {value!r}")
        return int(number)
    return number


def train_on_file(
    model: Path,
    data: Path,
    output: Path,
    settings: dict[str, Any],
    lora: LoraSettings | None,
    dtype: str,
    data_format: str | None = None,
    rating: str = "rating",
    chat_template: str = "auto",
) -> str:
    """``larpo train``: train the policy in ``model`` on the lists of ``data`` (read by
    :func:`larpo.dataset_formats.read_lists` as ``data_format``, detected when None; ``rating``: the
    field a ``rated`` file ranks by) with ``settings`` (ListwiseConfig fields), with LoRA adapters when
    ``lora`` is set; save it with its model card (and its log) to ``output``. Returns the summary lines
    (empty on every process but the main one under ``accelerate launch``)."""
    from larpo.adapters import add_lora, save_merged
    from larpo.chat import ChatFormat
    from larpo.data import tokenize_chat_list
    from larpo.dataset_formats import read_lists
    from larpo.distributed import check_launch
    from larpo.model_io import load_policy
    from larpo.trainer import ListwiseTrainer

    args = listwise_config(output_dir=str(output), **settings)
    check_launch(args.world_size, " or set use_cpu: true in --config")
    rows, read_stats = read_lists(data, data_format, rating=rating)
    policy, tokenizer = load_policy(model, dtype)
    if lora:
        policy = add_lora(policy, lora, seed=args.seed)
    chat = ChatFormat(tokenizer, chat_template)
    examples = [
        tokenize_chat_list(chat, r["prompt"], r["responses"], r.get("scores"), response_ids=r.get("response_ids"),
                           finished=r.get("finished"))
        for r in rows
    ]  # fmt: skip
    context = getattr(policy.config, "max_position_embeddings", None)
    check_list_lengths(examples, args.max_length, context, data)
    trainer = ListwiseTrainer(policy, args, examples, processing_class=tokenizer)
    trainer.train()
    trainer.save_model(str(output))  # a peft model saves its adapter only
    if not trainer.is_world_process_zero():
        return ""
    (output / "train_log.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    what = "LoRA adapter" if lora else "model"
    if lora and lora.merge_export != "no":
        save_merged(trainer.accelerator.unwrap_model(trainer.model), tokenizer, output / "merged")
        what += f" (merged model in {output / 'merged'})"
    write_cards(output, ModelCardInfo(
        base_model=str(model), objective=args.objective, objective_options=dict(args.objective_options or {}),
        beta=args.beta, learning_rate=args.learning_rate, data=str(data), adapter=bool(lora),
    ))  # fmt: skip
    processes = trainer.accelerator.num_processes
    return (
        f"{data}: {read_stats.summary()}\n"
        f"trained on {len(examples)} lists with {args.objective} in {processes} process(es) "
        f"({trainer.logprob_settings.describe()}); {what} saved to {output}"
    )


def write_cards(output: Path, info: ModelCardInfo) -> None:
    """README.md of ``larpo train``'s saved model and, when there is one, of its merged export."""
    write_model_card(output, info)
    if (output / "merged").is_dir():
        write_model_card(output / "merged", dataclasses.replace(info, adapter=False))
