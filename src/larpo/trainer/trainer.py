"""The listwise trainer: ``transformers.Trainer`` with a registered ranking objective.

Built on ``Trainer`` so that ``accelerate launch`` brings DDP, FSDP and DeepSpeed with no extra code.
The loss math lives in :mod:`larpo.losses`; this module only computes log-probs, calls the
objective and logs what the policy does as a ranker.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import datasets
import datasets.table
import pyarrow.compute as pc
import torch
from torch import nn
from transformers import PreTrainedModel, Trainer

from larpo.adapters import without_adapters
from larpo.auto_settings import AUTO, LogprobSettings, choose_shared_prefix
from larpo.data import ListCollator, list_mask_of, pad_lists, select_candidates
from larpo.evaluation.metrics import implicit_rewards, ranking_stats
from larpo.logprobs import auto_chunk_size, list_logps
from larpo.losses import get_objective, has_nll_term, read_candidates, rows_with_gradient
from larpo.trainer.config import ListwiseConfig

logger = logging.getLogger(__name__)


class ListwiseTrainer(Trainer):
    """Train a causal LM on candidate lists sorted best-first.

    Args:
        model: the policy (a Hugging Face causal LM).
        args: a :class:`ListwiseConfig`.
        train_dataset: list examples (see :mod:`larpo.data`) as a ``datasets.Dataset`` or a list of dicts.
        ref_model: a live reference model. Without one, reference log-probs are read from the data's
            ``reference_logps`` column, or computed once with the initial ``model`` before training
            (``precompute_reference_logps``), so no second model sits in memory. For a peft model
            that initial model is the base (adapters disabled). A reference-free objective needs none.
        processing_class: the tokenizer (saved with checkpoints).

    ``logprob_settings`` holds the log-prob settings it uses, ``auto`` ones decided for this model, device
    and data (:func:`resolve_logprob_settings`).
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
        self.logprob_settings = resolve_logprob_settings(model, args, train_dataset)
        logger.info("log-probs: %s", self.logprob_settings.describe())

        # training reads reference log-probs only for the lists of lists_reading_reference: none for a
        # reference-free objective (rft, simpo; its logged implicit rewards are beta * log pi), and never for
        # a list that cannot change a step
        reading = lists_reading_reference(
            self._list_scores(args, train_dataset), **self._trainable_settings(args)
        )
        if ref_model is None and any(reading):
            if "reference_logps" in train_dataset.column_names:
                check_reference_present(train_dataset["reference_logps"], reading)
            elif not args.precompute_reference_logps:
                raise ValueError(
                    f"objective {args.objective!r} needs reference log-probs: pass ref_model, add a "
                    "reference_logps column, or set precompute_reference_logps=True"
                )
            else:
                # under the precision training will use, so that the policy starts exactly at the reference
                with _training_autocast(model, args):
                    train_dataset = add_reference_logps(
                        model,
                        train_dataset,
                        collator,
                        args.per_device_eval_batch_size,
                        self.logprob_settings.shared_prefix,
                        self.logprob_settings.chunk_size,
                        rows=reading,
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
        """Loss of one batch of lists: log-probs of the candidates the objective reads in the lists that can
        train, then the registered objective over the whole batch (the other slots hold zeros it masks out
        or multiplies by zero)."""
        trained = self._trainable_rows(inputs)
        read = self._read_candidates(inputs, trained)
        batch = inputs if bool((read == inputs["list_mask"]).all()) else select_candidates(inputs, read)
        settings = self.logprob_settings
        options = {"shared_prefix": settings.shared_prefix, "chunk_size": settings.chunk_size}
        # the model's forward runs under the accelerator's autocast; a chunked LM head must run under it too
        with self.accelerator.autocast():
            policy, lengths = list_logps(model, batch, **options)
        reference = batch.get("reference_logps")
        if reference is None and self.ref_model is not None:
            with torch.no_grad(), self.accelerator.autocast():
                reference, _ = list_logps(self.ref_model, batch, **options)
        scores = batch.get("scores") if self.args.use_scores else None
        if trained.any():
            self._record(policy.detach(), reference, lengths, batch["list_mask"], scores)
        if batch is not inputs:
            policy, lengths, reference = (
                None if values is None else scatter_candidates(values, batch["list_mask"], read)
                for values in (policy, lengths, reference)
            )
        mask = inputs["list_mask"]
        gate = {} if self.args.nll_min_score is None else {"nll_min_score": self.args.nll_min_score}
        loss = self.objective(
            policy,
            None if self.objective.reference_free else reference,
            self.args.beta,
            mask,
            scores=inputs.get("scores") if self.args.use_scores else None,
            lengths=lengths,
            nll_weight=self.args.nll_weight,
            **gate,
            **self.args.objective_options,
        )
        return (loss, {"policy_logps": policy}) if return_outputs else loss

    def _trainable_rows(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B]`` bool: the lists of a batch that can change the step (:func:`trainable_rows`)."""
        scores = inputs.get("scores") if self.args.use_scores else None
        return trainable_rows(inputs["list_mask"], scores, **self._trainable_settings(self.args))

    def _read_candidates(self, inputs: dict[str, torch.Tensor], trained: torch.Tensor) -> torch.Tensor:
        """``[B, m]`` bool: the candidates whose log-probs the step computes. With ``skip_inert_lists``
        (and an objective registered with ``inert_tied_rows``), those the objective reads
        (:func:`larpo.losses.read_candidates`) in the lists that can train; a batch with nothing to train
        still runs its first list, so that every engine sees a forward and an exactly zero gradient (the
        optimizer steps, as it would on the whole batch). Otherwise every candidate. ``trained``: the
        batch's :meth:`_trainable_rows`."""
        mask = inputs["list_mask"]
        if not (self.args.skip_inert_lists and self.objective.inert_tied_rows):
            return mask
        computed = trained if trained.any() else torch.arange(len(trained), device=trained.device) == 0
        scores = inputs.get("scores") if self.args.use_scores else None
        return read_candidates(mask, scores, self.objective.reads) & computed.unsqueeze(1)

    @staticmethod
    def _trainable_settings(args: ListwiseConfig) -> dict[str, Any]:
        return {"objective": args.objective, "nll_weight": args.nll_weight, "nll_min_score": args.nll_min_score,
                "skip_inert_lists": args.skip_inert_lists}  # fmt: skip

    @staticmethod
    def _list_scores(args: ListwiseConfig, dataset: datasets.Dataset) -> list:
        """Each list's scores as training reads them (None: it reads none)."""
        if args.use_scores and "scores" in dataset.column_names:
            return list(dataset["scores"])
        return [None] * len(dataset)

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


def trainable_rows(
    mask: torch.Tensor,
    scores: torch.Tensor | None,
    *,
    objective: str,
    nll_weight: float,
    nll_min_score: float | None,
    skip_inert_lists: bool = True,
) -> torch.Tensor:
    """``[B]`` bool: the lists that can change a training step. Every list, unless ``skip_inert_lists``
    applies (``scores`` given and an objective registered with ``inert_tied_rows``); then the lists of
    :func:`larpo.losses.rows_with_gradient`, whose loss and gradient are exactly zero otherwise."""
    if scores is None or not (skip_inert_lists and get_objective(objective).inert_tied_rows):
        return mask.new_ones(mask.shape[0])
    nll_term = has_nll_term(objective, nll_weight)
    return rows_with_gradient(mask, scores, nll_term=nll_term, nll_min_score=nll_min_score)


def lists_reading_reference(scores: Sequence[Sequence[float] | None], **settings: Any) -> list[bool]:
    """Whether training reads each list's reference log-probs, given each list's ``scores`` (None: a list
    trained without them) and :func:`trainable_rows`'s ``settings``: never for a reference-free objective,
    else for the lists that can change a step. The loop's lists stage computes only these."""
    if get_objective(settings["objective"]).reference_free:
        return [False] * len(scores)
    if not scores or any(values is None for values in scores):
        return [True] * len(scores)
    mask = list_mask_of([len(values) for values in scores])
    return trainable_rows(mask, pad_lists(scores, mask), **settings).tolist()


def check_reference_present(reference: Sequence[Sequence[float] | None], reading: Sequence[bool]) -> None:
    """Raise ValueError naming the lists that training reads (``reading``) whose ``reference`` log-probs
    are missing (None, or a None value)."""
    missing = [i for i, (values, read) in enumerate(zip(reference, reading, strict=True))
               if read and (values is None or None in values)]  # fmt: skip
    if missing:
        raise ValueError(
            f"lists {missing[:5]} can train but have no reference_logps: give them values, or drop the "
            "column to have them computed (precompute_reference_logps)"
        )


def scatter_candidates(values: torch.Tensor, packed_mask: torch.Tensor, read: torch.Tensor) -> torch.Tensor:
    """``[B, m]`` zeros with the real entries of ``values`` (a batch of :func:`larpo.data.select_candidates`,
    whose list mask is ``packed_mask``) back in the slots where ``read`` is True; the gradient flows to
    ``values``."""
    return values.new_zeros(read.shape).masked_scatter(read, values[packed_mask])


def resolve_logprob_settings(
    model: PreTrainedModel, args: ListwiseConfig, dataset: datasets.Dataset
) -> LogprobSettings:
    """``args.shared_prefix`` and ``args.logprob_chunk_size``, each ``auto`` decided by
    :mod:`larpo.auto_settings` for the device training runs on and the lists of ``dataset``: their mean
    list size and prompt and response lengths; for the LM-head positions of a batch, its lists times the
    largest list times the longest response (cut to ``max_length``)."""
    shared, chunk = args.shared_prefix, args.logprob_chunk_size
    if AUTO not in (shared, chunk) or len(dataset) == 0:
        return LogprobSettings(shared_prefix=shared is True, chunk_size=0 if chunk == AUTO else chunk)
    table = dataset.with_format("arrow", columns=["prompt_ids", "response_ids"])[:]
    list_sizes = pc.list_value_length(table["response_ids"])
    response_lengths = pc.list_value_length(pc.list_flatten(table["response_ids"]))
    if shared == AUTO:
        mean = pc.mean(pc.list_value_length(table["prompt_ids"])).as_py()
        shared = choose_shared_prefix(
            args.device.type, pc.mean(list_sizes).as_py(), mean, pc.mean(response_lengths).as_py()
        )
    if chunk == AUTO:
        longest = min(pc.max(response_lengths).as_py(), args.max_length or float("inf"))
        positions = args.per_device_train_batch_size * pc.max(list_sizes).as_py() * int(longest)
        chunk = auto_chunk_size(model, positions, training=True)
    return LogprobSettings(shared_prefix=shared, chunk_size=chunk)


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
    rows: Sequence[bool] | None = None,
) -> datasets.Dataset:
    """Return ``dataset`` with a ``reference_logps`` column computed by ``model`` in eval mode, for the
    examples where ``rows`` is True (None: all); the others get None.

    A peft model's reference is its base: its adapters are disabled meanwhile.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    column: list[list[float] | None] = [None] * len(dataset)
    computed = [i for i in range(len(dataset)) if rows is None or rows[i]]
    with without_adapters(model):
        for start in range(0, len(computed), batch_size):
            indices = computed[start : start + batch_size]
            examples = [dataset[i] for i in indices]
            batch = {k: v.to(device) for k, v in collator(examples).items()}
            logps, _ = list_logps(model, batch, shared_prefix=shared_prefix, chunk_size=chunk_size)
            for row, (i, example) in enumerate(zip(indices, examples, strict=True)):
                column[i] = logps[row, : len(example["response_ids"])].tolist()
    model.train(was_training)
    if "reference_logps" in dataset.column_names:
        dataset = dataset.remove_columns("reference_logps", new_fingerprint=uuid.uuid4().hex)
    return dataset.add_column("reference_logps", column, new_fingerprint=uuid.uuid4().hex)
