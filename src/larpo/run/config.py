"""The configuration of an iterative LarPO run (``larpo run --config run.yaml``).

One flat dataclass: every field is a YAML key and a ``--set key=value`` override, with its help text
in the field metadata. Values are type-checked and range-checked here, before anything is written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from larpo.auto_settings import chunk_size_setting, shared_prefix_setting
from larpo.checks import check_choice, check_field_types, check_known_keys, read_yaml_mapping
from larpo.errors import InputError
from larpo.losses import OBJECTIVES, check_nll_min_score, check_options, has_nll_term

if TYPE_CHECKING:
    from larpo.adapters import LoraSettings
    from larpo.candidates import ListSettings

# Nothing here imports torch or transformers at module level: the CLI validates a config in a fraction
# of a second, before any model is loaded (the trainer arguments are imported where they are needed).
# The modules that check a section of the config (LoRA, lists, chat template, trackers) are imported by
# the methods that use them, so that a mistyped key is reported before they load (`larpo run` answers
# in under 10x the start of a bare Python: benchmarks/bench_cli_startup.py).


def _f(default: Any, help: str, **kwargs: Any) -> Any:
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kwargs)
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass
class RunConfig:
    """Settings of Algorithm 1 (Jin et al. 2025): sample, rerank, merge, train, repeat."""

    # inputs and outputs
    model: str = _f("", "local Hugging Face model directory: the initial policy (and default reference)")
    prompts: str = _f(
        "", "JSONL with a 'prompt' field (and optional 'id'), or a datasets.save_to_disk folder"
    )
    reward: str = _f("", "reranker: 'module:function', 'path/file.py:function', or a reward model directory")
    output_dir: str = _f("", "run directory (created; re-running the same command resumes it)")
    save_total_limit: int | None = _f(
        None, "keep the models of the newest n iterations: an older iteration's model directory is deleted "
        "once a newer iteration has finished (its lists and stats stay); null: keep every iteration's",
    )  # fmt: skip
    chat_template: str = _f(
        "auto",
        "prompts as the model sees them: auto (the tokenizer's template, if any), none, or a Jinja file",
    )
    # the loop
    iterations: int = _f(3, "number of iterations T")
    prompts_per_iteration: int | None = _f(None, "prompts sampled each iteration (M); null = all prompts")
    seed: int = _f(0, "seed of sampling, selection and training")
    # sampling: inclusiveness and hard negatives
    num_candidates: int = _f(8, "responses sampled per prompt per iteration (k, inclusiveness)")
    temperature: float | list[float] = _f(1.0, "sampling temperature, or one per iteration (last repeats)")
    temperature_mix: list[float] | None = _f(None, "spread each prompt's k samples over these temperatures")
    top_p: float = _f(1.0, "nucleus sampling threshold")
    max_new_tokens: int = _f(64, "longest response sampled, in tokens")
    generation_batch_size: int = _f(64, "prompts per generation call")
    score_batch_size: int | None = _f(None, "prompts per reranker call (null: generation_batch_size)")
    keep_truncated: bool = _f(
        True, "keep samples cut at max_new_tokens (false: drop them before scoring; counted either way)"
    )
    generator: str = _f(
        "transformers", "sampling backend: transformers (model.generate) or vllm (larpo[vllm])"
    )
    vllm_kwargs: dict[str, Any] = _f(
        {}, "extra vllm.LLM arguments, e.g. {gpu_memory_utilization: 0.5, tensor_parallel_size: 2}"
    )
    # candidate lists: memorization and selection
    memorization: str = _f("current", "lists from: current, previous (current + previous), all iterations")
    dedup: bool = _f(True, "count the same response to a prompt once across iterations")
    positives: int | None = _f(None, "keep the top-n ranked candidates (null with negatives null: keep all)")
    negatives: int | None = _f(None, "keep the bottom-n ranked candidates as negatives")
    max_candidates: int | None = _f(None, "cap on the list size when positives/negatives are null")
    drop_all_tied: bool = _f(True, "drop prompts whose selected candidates all have the same score")
    keep_tied_min_score: float | None = _f(
        None, "still keep all-tied lists scoring at least this, for the NLL term (1.0: solved prompts)"
    )
    negative_source: str = _f("policy", "negatives from: policy (own samples), random or related prompts")
    # objective and training
    objective: str = _f("contrastive", "ranking objective (larpo objectives lists them)")
    objective_options: dict[str, Any] = _f({}, "extra objective options, e.g. {lambda_weights: true}")
    beta: float = _f(0.1, "scale of the implicit reward beta * log(pi/pi_ref)")
    nll_weight: float = _f(
        0.0, "weight of the per-token NLL of the best candidate (set it if the policy collapses)"
    )
    nll_min_score: float | None = _f(
        None,
        "train that NLL only on lists whose best score is at least this (1.0 with a graded reward: imitate "
        "only fully correct replies, rank every list); null: every list",
    )
    reference: str = _f(
        "initial", "reference policy: initial (log-probs cached once) or previous iteration's"
    )
    learning_rate: float = _f(1e-6, "learning rate")
    epochs: float = _f(1.0, "passes over each iteration's lists")
    batch_size: int = _f(8, "lists per device per step")
    gradient_accumulation_steps: int = _f(1, "micro-batches per optimizer step")
    lr_scheduler_type: str = _f("constant", "transformers scheduler name (constant, linear, cosine, ...)")
    warmup_ratio: float = _f(0.0, "fraction of each iteration's steps spent warming up, in [0, 1)")
    max_length: int | None = _f(None, "truncate prompt+response to this many tokens")
    shared_prefix: bool | str = _f(
        "auto",
        "encode each prompt once per list, not once per candidate (same log-probs): true, false, or auto "
        "(on where measured to win: larpo.auto_settings)",
    )
    logprob_chunk_size: int | str = _f(
        "auto",
        "LM-head positions scored at a time, recomputed in backward (0: all at once; auto: chunks where "
        "the logits would be a large share of memory)",
    )
    dtype: str = _f("auto", "auto (fp32 on CPU, bf16 on GPU), float32, bfloat16, float16")
    mixed_precision: bool = _f(
        True, "with a bf16/fp16 dtype, train fp32 master weights under autocast (false: train in dtype)"
    )
    peft: dict[str, Any] | None = _f(
        None,
        "LoRA adapters (needs larpo[peft]): {r, lora_alpha, lora_dropout, target_modules, merge_export}; "
        "null trains all weights",
    )
    # evaluation on held-out prompts after iterations
    eval_prompts: str | None = _f(
        None, "held-out prompts (JSONL) evaluated before training and after iterations"
    )
    eval_every: int = _f(1, "evaluate after every n-th iteration (and always after the last)")
    eval_samples: int = _f(16, "samples per held-out prompt for pass@k (Recall@k)")
    eval_temperatures: list[float] = _f([1.0], "sampling temperatures of the pass@k evaluation")
    eval_ks: list[int] = _f([1, 4, 16], "k values of pass@k (each <= eval_samples)")
    eval_samples_between: int | None = _f(
        None, "samples per prompt for evaluations between the initial and last (null: eval_samples)"
    )
    eval_threshold: float = _f(1.0, "a response is correct when its reward is >= this")
    eval_reward: str | None = _f(None, "reward for evaluation (null: the training reward)")
    eval_ranking_prompts: int = _f(
        200, "held-out prompts whose sample lists measure NDCG / Kendall tau (0: off)"
    )
    # experiment tracking (larpo.tracking)
    report_to: str | list[str] = _f(
        "none", "trackers of the per-iteration metrics and training logs, as TrainingArguments.report_to "
        "(none, all, tensorboard, wandb, mlflow, trackio, or a list)",
    )  # fmt: skip
    run_name: str | None = _f(None, "the run's name in the trackers (null: the tracker's default)")

    def __post_init__(self) -> None:
        from larpo.adapters import parse_lora
        from larpo.chat import check_template_setting
        from larpo.tracking import normalize_report_to

        check_field_types(self, where="config: ")
        for name in ("model", "prompts", "reward", "output_dir"):
            if not getattr(self, name):
                raise InputError(f"config: '{name}' is required")
        positive = ["eval_every", "eval_samples", "eval_samples_between", "iterations", "num_candidates", "max_new_tokens",
                    "generation_batch_size", "score_batch_size", "batch_size",
                    "gradient_accumulation_steps", "prompts_per_iteration", "positives", "negatives",
                    "max_candidates", "max_length", "save_total_limit"]  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"config: '{name}' must be at least 1, got {value}")
        try:
            self.shared_prefix = shared_prefix_setting(self.shared_prefix)
            self.logprob_chunk_size = chunk_size_setting(self.logprob_chunk_size)
        except InputError as error:
            raise InputError(f"config: {error}") from None
        temperatures = self.temperature if isinstance(self.temperature, list) else [self.temperature]
        for value in temperatures + (self.temperature_mix or []):
            if value < 0:
                raise InputError(f"config: temperatures must be >= 0, got {value}")
        if 0 in temperatures and self.num_candidates > 1 and not self.temperature_mix:
            raise InputError(
                "config: temperature 0 gives one distinct sample; use num_candidates 1 or temperature > 0"
            )
        if not 0 < self.top_p <= 1:
            raise InputError(f"config: 'top_p' must be in (0, 1], got {self.top_p}")
        for name, value in (
            ("beta", self.beta),
            ("learning_rate", self.learning_rate),
            ("epochs", self.epochs),
        ):
            if value <= 0:
                raise InputError(f"config: '{name}' must be positive, got {value}")
        if not 0 <= self.warmup_ratio < 1:
            raise InputError(f"config: 'warmup_ratio' must be in [0, 1), got {self.warmup_ratio}")
        if self.nll_weight < 0:
            raise InputError(f"config: 'nll_weight' must be >= 0, got {self.nll_weight}")
        try:
            check_template_setting(self.chat_template)
        except InputError as error:
            raise InputError(f"config: {error}") from None
        check_choice("config: 'reference'", self.reference, ("initial", "previous"))
        check_choice("config: 'dtype'", self.dtype, ("auto", "float32", "bfloat16", "float16"))
        check_choice("config: 'generator'", self.generator, ("transformers", "vllm"))
        if self.vllm_kwargs and self.generator != "vllm":
            raise InputError("config: 'vllm_kwargs' is set but 'generator' is not vllm")
        if self.vllm_kwargs:
            from larpo.generation.vllm_backend import check_engine_kwargs

            try:
                check_engine_kwargs(self.vllm_kwargs)
            except InputError as error:
                raise InputError(f"config: {error}") from None
        if any(not 1 <= k <= self.eval_samples for k in self.eval_ks):
            raise InputError(f"config: every eval_ks value must be in 1..eval_samples={self.eval_samples}")
        if min(self.eval_temperatures) <= 0:
            raise InputError("config: eval_temperatures must be positive")
        if self.eval_ranking_prompts < 0:
            raise InputError(f"config: 'eval_ranking_prompts' must be >= 0, got {self.eval_ranking_prompts}")
        parse_lora(self.peft)
        try:
            self.list_settings()
        except InputError as error:
            raise InputError(f"config: {error}") from None
        _check_objective(self.objective, self.objective_options, self.nll_weight, self.nll_min_score)
        if self.keep_tied_min_score is not None and not has_nll_term(self.objective, self.nll_weight):
            raise InputError("config: all-tied lists kept by 'keep_tied_min_score' train only the NLL term: "
                             "set nll_weight > 0 as well (or objective rft)")  # fmt: skip
        try:
            normalize_report_to(self.report_to)
        except InputError as error:
            raise InputError(f"config: {error}") from None

    @property
    def lora(self) -> LoraSettings | None:
        """The parsed ``peft`` section (None: full fine-tuning)."""
        from larpo.adapters import parse_lora

        return parse_lora(self.peft)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def scoring_chunk_size(self) -> int:
        """Prompts per reranker call: ``score_batch_size``, or ``generation_batch_size`` when unset."""
        return self.score_batch_size or self.generation_batch_size

    def list_settings(self) -> ListSettings:
        """How iteration lists are built (memorization, dedup, selection, negatives)."""
        from larpo.candidates import ListSettings

        return ListSettings(
            memorization=self.memorization,
            dedup=self.dedup,
            positives=self.positives,
            negatives=self.negatives,
            max_candidates=self.max_candidates,
            drop_all_tied=self.drop_all_tied,
            keep_tied_min_score=self.keep_tied_min_score,
            negative_source=self.negative_source,
        )

    def training_arguments(self, iteration: int) -> dict[str, Any]:
        """The ``transformers.TrainingArguments`` settings (and ``max_length``) of iteration ``iteration``'s
        train stage, shared by every trainer a run can use (larpo's, or one a benchmark swaps in)."""
        from larpo.model_io import resolve_dtype  # imports torch
        from larpo.seeding import hash_seed

        low_precision = str(resolve_dtype(self.dtype)).removeprefix("torch.")
        return {
            "learning_rate": self.learning_rate,
            "num_train_epochs": self.epochs,
            "per_device_train_batch_size": self.batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "lr_scheduler_type": _scheduler_with_warmup(self.lr_scheduler_type, self.warmup_ratio),
            # transformers 5 has no warmup_ratio: a warmup_steps value below 1 is a fraction of the steps
            "warmup_steps": self.warmup_ratio,
            "max_length": self.max_length,
            "seed": hash_seed(self.seed, "train", iteration) % (2**31),
            "logging_steps": 1,
            "save_strategy": "no",
            "report_to": "none",
            "dataloader_pin_memory": False,
            "bf16": low_precision == "bfloat16",
            "fp16": low_precision == "float16",
        }

    def listwise_config(self, iteration: int, output_dir: str, **settings: Any):
        """The :class:`~larpo.trainer.ListwiseConfig` of iteration ``iteration`` (``settings`` added)."""
        from larpo.trainer import ListwiseConfig  # imports transformers

        return ListwiseConfig(
            output_dir=output_dir,
            objective=self.objective,
            objective_options=self.objective_options,
            beta=self.beta,
            nll_weight=self.nll_weight,
            nll_min_score=self.nll_min_score,
            shared_prefix=self.shared_prefix,
            logprob_chunk_size=self.logprob_chunk_size,
            **self.training_arguments(iteration),
            **settings,
        )


def load_run_config(
    path: str | Path | None = None, overrides: list[str] | None = None, **extra: Any
) -> RunConfig:
    """A RunConfig from a YAML file, then ``key=value`` overrides (values parsed as YAML), then ``extra``.

    Raises:
        InputError: unreadable or invalid YAML, an unknown key (with the closest valid one), a value of
            the wrong type, or a value out of range.
    """
    settings: dict[str, Any] = {}
    if path is not None:
        settings.update(read_yaml_mapping(Path(path)))
    for item in overrides or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"override {item!r} must look like key=value")
        try:
            settings[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise InputError(f"override {item!r}: the value is not valid YAML") from None
    settings.update({k: v for k, v in extra.items() if v is not None})
    check_known_keys(settings, [f.name for f in dataclasses.fields(RunConfig)], "config: unknown key")
    return RunConfig(**settings)


def _check_objective(
    objective: str, options: dict[str, Any], nll_weight: float, nll_min_score: float | None
) -> None:
    check_choice("config: 'objective'", objective, sorted(OBJECTIVES))
    try:
        check_options(objective, options)
        for name in ("nll_weight", "nll_min_score"):
            if name in options:
                raise ValueError(f"set {name} as its own key, not inside objective_options")
        if nll_min_score is not None:
            check_nll_min_score(objective, nll_weight)
    except ValueError as error:
        raise InputError(f"config: {error}") from None


def _scheduler_with_warmup(scheduler: str, warmup_ratio: float) -> str:
    """transformers' ``constant`` schedule ignores warmup; with a warmup it is ``constant_with_warmup``."""
    return "constant_with_warmup" if scheduler == "constant" and warmup_ratio > 0 else scheduler
