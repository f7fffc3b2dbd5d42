"""Configuration of the listwise trainer: ``transformers.TrainingArguments`` plus the objective."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments

from larpo.losses import check_options, get_objective


@dataclass
class ListwiseConfig(TrainingArguments):
    """Training arguments of :class:`larpo.trainer.ListwiseTrainer`.

    Everything ``TrainingArguments`` offers (learning rate, batch size, accumulation, DeepSpeed/FSDP
    configs, ...) plus the ranking objective applied to the implicit reward ``beta * log(pi/pi_ref)``.
    """

    objective: str = field(
        default="contrastive",
        metadata={
            "help": "registered objective: pairwise, contrastive, lambdarank, listmle, simpo, ipo, rft"
        },
    )
    beta: float = field(default=0.1, metadata={"help": "scale of the implicit reward beta * log(pi/pi_ref)"})
    nll_weight: float = field(
        default=0.0,
        metadata={
            "help": "weight of the per-token NLL of the best candidate added to the loss (RPO). "
            "Set it (e.g. 0.2-1.0) when both candidates' log-probs fall and the policy collapses."
        },
    )
    objective_options: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "extra options of the objective, e.g. {lambda_weights: true} for lambdarank"},
    )
    use_scores: bool = field(
        default=True,
        metadata={"help": "pass reranker scores to the objective so that tied candidates form no pair"},
    )
    max_length: int | None = field(
        default=None, metadata={"help": "truncate prompt+response to this many tokens (responses are cut)"}
    )
    shared_prefix: bool = field(
        default=True,
        metadata={
            "help": "encode each list's prompt once and reuse its KV cache for the m candidates (same "
            "log-probs, less compute); falls back to one pass per candidate where the model cannot"
        },
    )
    logprob_chunk_size: int = field(
        default=0,
        metadata={
            "help": "score this many token positions at a time through the LM head and recompute them in "
            "backward, so the [N, T, V] logits are never held (large vocabularies; 0 = all at once)"
        },
    )
    precompute_reference_logps: bool = field(
        default=True,
        metadata={
            "help": "compute reference log-probs once with the initial policy before training, so no "
            "reference model stays in memory"
        },
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "list examples need all columns"})
    logging_steps: float = field(default=10, metadata={"help": "log every N optimizer steps"})
    save_strategy: str = field(default="no", metadata={"help": "checkpoint strategy (no, steps, epoch)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        get_objective(self.objective)
        check_options(self.objective, self.objective_options)
        if "nll_weight" in self.objective_options:
            raise ValueError("set nll_weight as its own field, not inside objective_options")
        if self.beta <= 0:
            raise ValueError(f"beta must be positive, got {self.beta}")
        if self.nll_weight < 0:
            raise ValueError(f"nll_weight must be >= 0, got {self.nll_weight}")
        if self.logprob_chunk_size < 0:
            raise ValueError(f"logprob_chunk_size must be >= 0, got {self.logprob_chunk_size}")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"max_length must be at least 2, got {self.max_length}")
        for name in ("per_device_train_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise ValueError(f"num_train_epochs must be positive, got {self.num_train_epochs}")
