"""The listwise trainer: ``transformers.Trainer`` with a registered ranking objective.

Built on ``Trainer`` so that ``accelerate launch`` brings DDP, FSDP and DeepSpeed with no extra code.
The loss math lives in :mod:`larpo.losses`; this module only computes log-probs, calls the
objective and logs what the policy does as a ranker.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import defaultdict
from typing import Any

import datasets
import datasets.table
import torch
from torch import nn
from transformers import PreTrainedModel, Trainer

from larpo.adapters import without_adapters
from larpo.data import ListCollator
from larpo.evaluation.metrics import implicit_rewards, ranking_stats
from larpo.logprobs import list_logps
from larpo.losses import get_objective
from larpo.trainer.config import ListwiseConfig


class ListwiseTrainer(Trainer):
    """Train a causal LM on candidate lists sorted best-first.

    Args:
        model: the policy (a Hugging Face causal LM).
        args: a :class:`ListwiseConfig`.
        train_dataset: list examples (see :mod:`larpo.data`) as a ``datasets.Dataset`` or a list of dicts.
        ref_model: a live reference model. Without one, reference log-probs are read from the data's
            ``reference_logps`` column, or computed once with the initial ``model`` before training
            (``precompute_reference_logps``), so no second model sits in memory. For a peft model
            that initial model is the base (adapters disabled).
        processing_class: the tokenizer (saved with checkpoints).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        args: ListwiseConfig,
        train_dataset: datasets.Dataset | list[dict[str, Any]],
        *,
        ref_model: PreTrainedModel | None = None,
        processing_class=None,
        data_collator: ListCollator | None = None,
        **kwargs,
    ) -> None:
        self.objective = get_objective(args.objective)
        train_dataset = self.as_dataset(train_dataset)
        pad_id = model.config.pad_token_id
        if pad_id is None and processing_class is not None:
            pad_id = processing_class.pad_token_id
        collator = data_collator or ListCollator(pad_token_id=pad_id or 0, max_length=args.max_length)

        needs_reference = not self.objective.reference_free or args.logging_strategy != "no"
        has_reference = "reference_logps" in train_dataset.column_names
        if needs_reference and ref_model is None and not has_reference:
            if not args.precompute_reference_logps and not self.objective.reference_free:
                raise ValueError(
                    f"objective {args.objective!r} needs reference log-probs: pass ref_model, add a "
                    "reference_logps column, or set precompute_reference_logps=True"
                )
            if args.precompute_reference_logps:
                # under the precision training will use, so that the policy starts exactly at the reference
                with _training_autocast(model, args):
                    train_dataset = add_reference_logps(
                        model,
                        train_dataset,
                        collator,
                        args.per_device_eval_batch_size,
                        args.shared_prefix,
                        args.logprob_chunk_size,
                    )

        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            data_collator=collator,
            processing_class=processing_class,
            **kwargs,
        )
        # The objective averages over lists itself: let Trainer divide by the accumulation steps.
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = False
        self.ref_model = None
        if ref_model is not None:
            self.ref_model = self.accelerator.prepare_model(ref_model.eval(), evaluation_mode=True)
        self._stored_metrics: dict[str, list[float]] = defaultdict(list)

    @staticmethod
    def as_dataset(examples: datasets.Dataset | list[dict[str, Any]]) -> datasets.Dataset:
        """List examples as a ``datasets.Dataset``.

        The dataset gets a random fingerprint instead of a hash of its content: larpo never uses the
        datasets cache, and hashing pickles the table, which fails in some environments (dill/pyarrow).
        """
        if isinstance(examples, datasets.Dataset):
            return examples
        mapping = {key: [example.get(key) for example in examples] for key in examples[0]} if examples else {}
        return datasets.Dataset(
            datasets.table.InMemoryTable.from_pydict(mapping), fingerprint=uuid.uuid4().hex
        )

    def compute_loss(
        self, model: nn.Module, inputs: dict[str, torch.Tensor], return_outputs=False, num_items_in_batch=None
    ):
        """Loss of one batch of lists: log-probs, then the registered objective."""
        options = {"shared_prefix": self.args.shared_prefix, "chunk_size": self.args.logprob_chunk_size}
        # the model's forward runs under the accelerator's autocast; a chunked LM head must run under it too
        with self.accelerator.autocast():
            policy, lengths = list_logps(model, inputs, **options)
        reference = inputs.get("reference_logps")
        if reference is None and self.ref_model is not None:
            with torch.no_grad(), self.accelerator.autocast():
                reference, _ = list_logps(self.ref_model, inputs, **options)
        mask = inputs["list_mask"]
        scores = inputs.get("scores") if self.args.use_scores else None
        loss = self.objective(
            policy,
            None if self.objective.reference_free else reference,
            self.args.beta,
            mask,
            scores=scores,
            lengths=lengths,
            nll_weight=self.args.nll_weight,
            **self.args.objective_options,
        )
        self._record(policy.detach(), reference, lengths, mask, scores)
        return (loss, {"policy_logps": policy}) if return_outputs else loss

    def _record(self, policy, reference, lengths, mask, scores) -> None:
        rewards = implicit_rewards(policy, reference, self.args.beta, mask)
        stats = ranking_stats(rewards, mask, scores)
        stats["logps/best_per_token"] = (policy[:, 0] / lengths[:, 0].clamp_min(1)).mean().item()
        for key, value in stats.items():
            self._stored_metrics[key].append(value)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the averaged ranking metrics since the last log to the training logs."""
        if "loss" in logs:
            for key, values in self._stored_metrics.items():
                logs[key] = sum(values) / len(values)
            self._stored_metrics.clear()
        super().log(logs, start_time)


def _training_autocast(model: nn.Module, args: ListwiseConfig):
    """The autocast that ``bf16``/``fp16`` training runs the model's forward under (none in full precision)."""
    dtype = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(next(model.parameters()).device.type, dtype=dtype)


@torch.no_grad()
def add_reference_logps(
    model: PreTrainedModel,
    dataset: datasets.Dataset,
    collator: ListCollator,
    batch_size: int = 8,
    shared_prefix: bool = True,
    chunk_size: int = 0,
) -> datasets.Dataset:
    """Return ``dataset`` with a ``reference_logps`` column computed by ``model`` in eval mode.

    A peft model's reference is its base: its adapters are disabled meanwhile.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    column: list[list[float]] = []
    with without_adapters(model):
        for start in range(0, len(dataset), batch_size):
            examples = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            batch = {k: v.to(device) for k, v in collator(examples).items()}
            logps, _ = list_logps(model, batch, shared_prefix=shared_prefix, chunk_size=chunk_size)
            for row, example in enumerate(examples):
                column.append(logps[row, : len(example["response_ids"])].tolist())
    model.train(was_training)
    if "reference_logps" in dataset.column_names:
        dataset = dataset.remove_columns("reference_logps", new_fingerprint=uuid.uuid4().hex)
    return dataset.add_column("reference_logps", column, new_fingerprint=uuid.uuid4().hex)
