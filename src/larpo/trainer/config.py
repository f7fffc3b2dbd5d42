"""Configuration of the listwise trainer: ``transformers.TrainingArguments`` plus the objective."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments

from larpo.auto_settings import chunk_size_setting, shared_prefix_setting
from larpo.losses import check_nll_min_score, check_options, get_objective


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
    nll_min_score: float | None = field(
        default=None,
        metadata={
            "help": "train the NLL term only on lists whose best reranker score is at least this (1.0 with a "
            "graded reward: imitate only fully correct candidates, rank all of them); None: every list"
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
    # typed str for HfArgumentParser, which would parse a bool or int field's "auto" as an error; the
    # values are normalised in __post_init__ (True/False/"auto", an int >= 0 or "auto")
    shared_prefix: str = field(
        default="auto",
        metadata={
            "help": "encode each list's prompt once and reuse its KV cache for the m candidates (same "
            "log-probs, less compute; falls back to one pass per candidate where the model cannot): "
            "true, false, or auto (decided per device, list size and prompt/response lengths from the "
            "measured crossovers of larpo.auto_settings)"
        },
    )
    logprob_chunk_size: str = field(
        default="auto",
        metadata={
            "help": "score this many token positions at a time through the LM head and recompute them in "
            "backward, so the [N, T, V] logits are never held (large vocabularies; 0 = all at once; "
            "auto = chunks only where the logits would be a large share of memory, larpo.auto_settings)"
        },
    )
    precompute_reference_logps: bool = field(
        default=True,
        metadata={
            "help": "compute reference log-probs once with the initial policy before training, so no "
            "reference model stays in memory"
        },
    )
    skip_inert_lists: bool = field(
        default=True,
        metadata={
            "help": "skip the forward and backward passes of lists that cannot change a step: every reply tied "
            "(an all-wrong list under a binary verifier) and none imitated by the NLL term; and of the candidates "
            "the objective does not read (registered reads: pairwise, simpo and ipo read the best and the worst, "
            "rft the best). The loss and the update are the same (a skipped list still counts in the mean over "
            "lists; logged ranking metrics cover the candidates computed); for objectives registered with "
            "inert_tied_rows (every built-in one)"
        },
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "list examples need all columns"})
    logging_steps: float = field(default=10, metadata={"help": "log every N optimizer steps"})
    save_strategy: str = field(default="no", metadata={"help": "checkpoint strategy (no, steps, epoch)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        get_objective(self.objective)
        check_options(self.objective, self.objective_options)
        for name in ("nll_weight", "nll_min_score"):
            if name in self.objective_options:
                raise ValueError(f"set {name} as its own field, not inside objective_options")
        if self.nll_min_score is not None:
            check_nll_min_score(self.objective, self.nll_weight, self.use_scores)
        if self.beta <= 0:
            raise ValueError(f"beta must be positive, got {self.beta}")
        if self.nll_weight < 0:
            raise ValueError(f"nll_weight must be >= 0, got {self.nll_weight}")
        self.shared_prefix = shared_prefix_setting(self.shared_prefix)
        self.logprob_chunk_size = chunk_size_setting(self.logprob_chunk_size)
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"max_length must be at least 2, got {self.max_length}")
        for name in ("per_device_train_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise ValueError(f"num_train_epochs must be positive, got {self.num_train_epochs}")
