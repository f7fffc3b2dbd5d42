"""One arm of benchmarks/bench_trl_cost.py, run in its own subprocess: build larpo's ListwiseTrainer or TRL's
DPOTrainer on the same synthetic pairs, check the first-batch loss, train, and report speed and memory."""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import tempfile
from typing import Any

# --larpo-variants: larpo arm of each ListwiseConfig.shared_prefix setting
LARPO_VARIANTS = {"shared": "larpo", "plain": "larpo_plain", "auto": "larpo_auto"}
# (shared_prefix, logprob_chunk_size) of each larpo arm
ARM_SETTINGS = {"larpo": (True, 0), "larpo_plain": (False, 0), "larpo_auto": ("auto", "auto")}
BETA = 0.1
LR = 1e-5


def on_cuda(spec: dict) -> bool:
    """The arm runs on the GPU (``--device cuda``); the default is the CPU."""
    return spec.get("device", "cpu") == "cuda"


def synthetic_text(spec: dict, alphabet: str) -> list[tuple[str, str, str]]:
    """(prompt, chosen, rejected) of fixed lengths; responses are one token short of R (EOS is added)."""
    rng = random.Random(1234)

    def text(length: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(length))

    count = spec["batch"] * spec["steps"]
    return [
        (text(spec["prompt"]), text(spec["response"] - 1), text(spec["response"] - 1)) for _ in range(count)
    ]


def ids_digest(rows: list[tuple[list[int], list[int], list[int]]]) -> str:
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def import_trainers(spec: dict) -> None:
    """Import both libraries in every arm, so that their baseline RSS is the same; on a GPU image without trl
    the larpo arms still run."""
    try:
        import trl  # noqa: F401
    except ImportError:
        if not on_cuda(spec) or spec["arm"] == "trl":
            raise
    import larpo  # noqa: F401


def autocast_of(spec: dict):
    """The forward's precision regime in training (accelerate's bf16 autocast with bf16=True)."""
    import torch

    if spec.get("dtype", "float32") == "bfloat16":
        return lambda: torch.autocast(spec.get("device", "cpu"), dtype=torch.bfloat16)
    return contextlib.nullcontext


def trainer_args(spec: dict) -> dict[str, Any]:
    """The settings both trainers share."""
    cuda = on_cuda(spec)
    return dict(
        output_dir=tempfile.mkdtemp(prefix="larpo-bench-"),
        beta=BETA,
        learning_rate=LR,
        per_device_train_batch_size=spec["batch"],
        per_device_eval_batch_size=spec["batch"],
        max_steps=spec["steps"],
        use_cpu=not cuda,
        bf16=spec.get("dtype", "float32") == "bfloat16",
        gradient_checkpointing=False,
        report_to="none",
        disable_tqdm=True,
        logging_strategy="no",
        save_strategy="no",
        dataloader_num_workers=0,
        seed=0,
    )


def larpo_trainer(spec: dict, model, tokenizer, data: list, autocast) -> tuple[Any, list, list, Any]:
    """larpo's ListwiseTrainer (objective pairwise), its token rows, reference log-probs and the log-prob
    settings it resolved."""
    from larpo.data import tokenize_list
    from larpo.trainer import ListwiseConfig, ListwiseTrainer

    examples = [tokenize_list(tokenizer, p, [c, r]) for p, c, r in data]
    shared, chunk = ARM_SETTINGS[spec["arm"]]
    args = ListwiseConfig(
        objective="pairwise", shared_prefix=shared, logprob_chunk_size=chunk, **trainer_args(spec)
    )
    # The reference pass runs in the constructor, before accelerate wraps the model: run it under the
    # training autocast, as TRL's precompute does (accelerator.autocast()).
    with autocast():
        trainer = ListwiseTrainer(model, args, examples, processing_class=tokenizer)
    rows = trainer.train_dataset
    token_rows = [(e["prompt_ids"], *e["response_ids"]) for e in rows]
    reference = [list(e["reference_logps"]) for e in rows]
    return trainer, token_rows, reference, trainer.logprob_settings.describe()


def trl_trainer(spec: dict, model, tokenizer, data: list) -> tuple[Any, list, list, None]:
    """TRL's DPOTrainer (sigmoid loss, reference log-probs precomputed) on the same pairs."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    prompts, chosen, rejected = (list(column) for column in zip(*data, strict=True))
    dataset = Dataset.from_dict({"prompt": prompts, "chosen": chosen, "rejected": rejected})
    args = DPOConfig(
        loss_type=["sigmoid"],
        precompute_ref_log_probs=True,
        precompute_ref_batch_size=spec["batch"],
        padding_free=False,
        max_length=None,
        **trainer_args(spec),
    )
    trainer = DPOTrainer(model, args=args, train_dataset=dataset, processing_class=tokenizer)
    rows = trainer.train_dataset
    token_rows = [(e["prompt_ids"], e["chosen_ids"], e["rejected_ids"]) for e in rows]
    reference = [[e["ref_chosen_logps"], e["ref_rejected_logps"]] for e in rows]
    return trainer, token_rows, reference, None


def first_batch_loss(trainer, spec: dict, autocast) -> tuple[float, int]:
    """The loss of the first batch before any update (policy == reference, so log 2) and its tokens; the
    metrics that call stores are cleared so they do not reach training's."""
    import torch

    rows = trainer.train_dataset
    batch = trainer.data_collator([rows[i] for i in range(spec["batch"])])
    tokens = int(batch["attention_mask"].sum())
    if on_cuda(spec):
        batch = {k: v.to(trainer.args.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    with torch.no_grad(), autocast():
        loss = float(trainer.compute_loss(trainer.model, batch))
    if spec["arm"] in LARPO_VARIANTS.values():
        trainer._stored_metrics.clear()
    else:
        trainer._metrics["train"].clear()
    return loss, tokens


def timed_train(trainer, spec: dict) -> dict[str, Any]:
    """Train; the seconds and steps after warm-up, RSS before and at its peak, and on CUDA the GPU memory."""
    import torch

    from benchutil import PeakRSS, StepTimer, rss_bytes

    cuda = on_cuda(spec)
    timer = StepTimer()
    trainer.add_callback(timer)
    gpu: dict[str, Any] = {}
    if cuda:
        torch.cuda.synchronize()
        gpu["gpu_peak_before_train"] = torch.cuda.max_memory_allocated()  # model, reference pass, first loss
        gpu["gpu_before_train"] = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    rss_before_train = rss_bytes()
    with PeakRSS() as peak:
        result = trainer.train()
    if cuda:
        torch.cuda.synchronize()
        gpu["gpu_peak_train"] = torch.cuda.max_memory_allocated()
        gpu["device_name"] = torch.cuda.get_device_name()
        gpu["torch"] = f"{torch.__version__} (CUDA {torch.version.cuda})"
    seconds, steps = timer.seconds_after(spec["warmup"])
    return {"train_loss": result.training_loss, "seconds": seconds, "steps": steps,
            "rss_before_train": rss_before_train, "peak_train": peak.peak, **gpu}  # fmt: skip


def run_arm(spec: dict) -> dict:
    """Build the trainer of ``spec["arm"]``, check its first-batch loss, train, and report cost."""
    import torch

    import_trainers(spec)
    from benchutil import DIGITS, bench_llama, max_rss_bytes, rss_bytes, wide_alphabet
    from larpo.tiny import char_tokenizer

    torch.set_num_threads(spec["threads"])
    cuda = on_cuda(spec)
    if cuda and not torch.cuda.is_available():
        raise RuntimeError("--device cuda but torch.cuda.is_available() is False")
    autocast = autocast_of(spec)
    alphabet = wide_alphabet(spec["vocab"]) if spec["vocab"] else DIGITS
    tokenizer = char_tokenizer(alphabet)
    model = bench_llama(len(tokenizer), spec["hidden"], spec["layers"], spec["prompt"] + spec["response"] + 8)
    if cuda:  # before the trainer is built: larpo precomputes reference log-probs in its constructor
        model = model.to("cuda")
    data = synthetic_text(spec, alphabet)
    rss_start = rss_bytes()
    if spec["arm"] in LARPO_VARIANTS.values():
        trainer, token_rows, reference, settings = larpo_trainer(spec, model, tokenizer, data, autocast)
    else:
        trainer, token_rows, reference, settings = trl_trainer(spec, model, tokenizer, data)
    first_loss, tokens_per_step = first_batch_loss(trainer, spec, autocast)
    trained = timed_train(trainer, spec)
    seconds, steps = trained.pop("seconds"), trained.pop("steps")
    return {
        "arm": spec["arm"],
        "name": spec["name"],
        "first_loss": first_loss,
        "tokens_per_step": tokens_per_step,
        "tokens_per_s": tokens_per_step * steps / seconds,
        "step_s": seconds / steps,
        "ids": ids_digest(token_rows),
        "reference": reference[: spec["batch"]],
        "rss_start": rss_start,
        "max_rss": max_rss_bytes(),
        "logprob_settings": settings,
        **trained,
    }
