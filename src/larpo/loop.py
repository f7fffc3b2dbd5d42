"""The iterative LarPO run (Jin et al. 2025, Algorithm 1) as a resumable state machine.

For s = 0..T-1, each stage writes its output atomically, then is recorded in the manifest:

- ``generate``: the policy of iteration s-1 (the retriever) samples k candidates per prompt at the
  iteration's temperature(s); optional off-policy negatives are added. -> ``candidates/iter_<s>.jsonl``
- ``score``: the reranker scores every candidate. -> the same file, with scores
- ``lists``: candidate lists are built from the current (and, with memorization, earlier) iterations'
  candidates, and reference log-probs are computed (cached in the store when the reference is the
  initial model). -> ``iter_<s>/lists.jsonl``
- ``train``: the policy is trained on the lists with the ranking objective. -> ``iter_<s>/model``
  (with a ``peft`` section: only LoRA adapters are trained and ``iter_<s>/model`` is the adapter
  directory, loaded onto the base model ``model``; ``merge_export`` adds a full ``iter_<s>/merged``)
- ``eval`` (with ``eval_prompts``): greedy accuracy, pass@k and ranking quality on held-out prompts.
  -> ``eval/iter_<s>.json`` (the initial model's is ``eval/initial.json``, iteration -1 in the manifest)

Generation and scoring work in chunks saved as separate files, so a crash loses at most one chunk;
re-running the same command resumes after the last finished stage (or chunk) and ends with the same
store, manifest and weights as an uninterrupted run with the same seed (on CPU).

Under ``accelerate launch`` with N processes, process r samples and scores the chunks whose index is r
modulo N (each chunk is seeded by its index, so the store does not depend on N), training runs on all
processes (the Trainer shards the lists), and the main process alone merges the chunks, builds the lists,
evaluates and writes every other file of the run directory while the others wait.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from rich.console import Console
from rich.progress import Progress
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback

import larpo
from larpo.adapters import (
    add_lora,
    check_targets,
    is_adapter_dir,
    load_adapted,
    require_peft,
    save_merged,
    without_adapters,
)
from larpo.candidates import (
    ListSettings,
    RankedList,
    build_lists,
    sample_external_negatives,
    split_samples,
    temperature_for,
)
from larpo.config import ListwiseConfig
from larpo.data import tokenize_list
from larpo.distributed import check_data_parallel, check_launch, process_state
from larpo.errors import InputError
from larpo.evaluation import EvalSettings, evaluate_policy, implicit_rewards_of_lists, ranking_quality
from larpo.faults import fault_point
from larpo.generation import Generator, SamplingParams, TransformersGenerator, VLLMGenerator
from larpo.generation.vllm_backend import check_vllm_installed
from larpo.manifest import STAGES, Manifest
from larpo.model_io import check_prompt_lengths, load_policy, resolve_dtype
from larpo.prompts import Prompt, load_prompts
from larpo.reference import response_logps
from larpo.rewards import Reranker, load_reranker
from larpo.run_config import RunConfig
from larpo.store import (
    CandidateRecord,
    CandidateStore,
    atomic_write_json,
    atomic_write_text,
    group_by_prompt,
    read_records,
    remove_stale_temp_files,
)
from larpo.store import write_records_atomic as write_records
from larpo.trainer import ListwiseTrainer

SHARDED_STAGES = frozenset({"generate", "score", "train"})
"""Stages every process runs; the main process alone runs the others."""


class LarpoRun:
    """One run directory: validates its inputs up front, then executes or resumes the iterations."""

    def __init__(self, config: RunConfig, console: Console | None = None) -> None:
        self.config = config
        check_launch(self.state.num_processes)  # first: places this process on its device
        check_data_parallel()
        self.console = (console or Console(stderr=True)) if self.is_main else Console(quiet=True)
        self.run_dir = Path(config.output_dir)
        self.store = CandidateStore(self.run_dir)
        # Everything below can fail on bad input; nothing has been written yet.
        self.prompts = load_prompts(config.prompts)
        if config.prompts_per_iteration and config.prompts_per_iteration > len(self.prompts):
            raise InputError(
                f"prompts_per_iteration={config.prompts_per_iteration} but {config.prompts} holds "
                f"{len(self.prompts)} prompts"
            )
        self.reranker: Reranker = load_reranker(config.reward)
        self.eval_prompts = load_prompts(config.eval_prompts) if config.eval_prompts else []
        self.eval_reranker = load_reranker(config.eval_reward) if config.eval_reward else self.reranker
        self.lora = config.lora
        if self.lora:
            require_peft()
        if config.generator == "vllm":
            if self.state.num_processes > 1:
                raise InputError(
                    "config: generator 'vllm' runs in one process (its tensor_parallel_size spreads it over "
                    "GPUs); start larpo run without accelerate launch"
                )
            check_vllm_installed()
            if self.lora and self.lora.merge_export != "every":
                raise InputError(
                    "config: generator 'vllm' loads full model directories; with peft set merge_export: every"
                )
        self._policy_cache: dict[str, Any] = {}
        model, tokenizer = self.policy(config.model)  # a model directory that does not load fails here
        if self.lora:
            check_targets(model, self.lora)
        for path, prompts in ((config.prompts, self.prompts), (config.eval_prompts, self.eval_prompts)):
            check_prompt_lengths(
                model, tokenizer, [(repr(p.prompt_id), p.text) for p in prompts],
                max_new_tokens=config.max_new_tokens, max_length=config.max_length, where=f"{path}: ",
            )  # fmt: skip
        _check_output_dir(self.run_dir)
        if (
            self.run_dir.exists()
            and any(self.run_dir.iterdir())
            and not (self.run_dir / "manifest.json").exists()
        ):
            raise InputError(
                f"{self.run_dir}: exists and is not a larpo run directory; choose a new output_dir"
            )
        self.manifest = Manifest.open(self.run_dir, config.to_dict(), larpo.__version__)

    # ------------------------------------------------------------------ driver
    def execute(self) -> dict[str, Any]:
        """Run every unfinished stage of every iteration; return the manifest's data."""
        self.state.wait_for_everyone()  # every process has checked its inputs before anything is written
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(self.run_dir)  # torn temp files of a crashed write
            self.manifest.save()
        if self.eval_prompts and not self.manifest.done(-1, "eval"):
            self._run_stage(-1, "eval")
        for s in range(self.config.iterations):
            for stage in STAGES:
                if not self.manifest.done(s, stage):
                    self._run_stage(s, stage)
            self.console.print(self.summary(s), soft_wrap=True, highlight=False)
        return self.manifest.data

    def _run_stage(self, s: int, stage: str) -> None:
        """Run one stage (on every process, or on the main one while the others wait) and record it."""
        stages: dict[str, Callable[[int], dict[str, Any]]] = {
            "generate": self.generate,
            "score": self.score,
            "lists": self.build,
            "train": self.train,
            "eval": self.evaluate,
        }
        started = time.perf_counter()
        stats = stages[stage](s) if stage in SHARDED_STAGES or self.is_main else {}
        if self.is_main:
            self.manifest.mark(s, stage, stats)
            if s >= 0:  # the initial evaluation is not timed
                seconds = round(time.perf_counter() - started, 3)
                self._log({"iteration": s, "stage": stage, "seconds": seconds})
        self.state.wait_for_everyone()
        if not self.is_main:
            self.manifest.reload()  # every process sees the stages the main process recorded

    def summary(self, s: int) -> str:
        """One line per iteration from the manifest."""
        g, sc = self.manifest.stats(s, "generate"), self.manifest.stats(s, "score")
        li, tr = self.manifest.stats(s, "lists"), self.manifest.stats(s, "train")
        loss = f"{tr['loss']:.4f}" if tr.get("loss") is not None else "-"
        accuracy = f"{tr['ranking_accuracy']:.3f}" if tr.get("ranking_accuracy") is not None else "-"
        line = (
            f"iter {s}: {g['candidates']} candidates ({g['duplicates']} duplicates), "
            f"{li['lists_built']} lists ({li['skipped_too_few'] + li['dropped_all_tied']} skipped), "
            f"loss {loss}, ranking acc {accuracy}, mean reward {sc['mean_reward']:.4f}"
        )
        ev = self.manifest.stats(s, "eval")
        if "greedy_accuracy" in ev:
            line += f", held-out greedy acc {ev['greedy_accuracy']:.3f}"
        return line

    # ------------------------------------------------------------------ helpers
    @property
    def state(self) -> PartialState:
        """This process among those ``accelerate launch`` started (the only one without it)."""
        return process_state()

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run directory (always, without ``accelerate launch``)."""
        return self.state.is_main_process

    def model_path(self, iteration: int) -> str:
        """The policy after ``iteration`` (``-1`` is the initial model)."""
        return self.config.model if iteration < 0 else str(self.run_dir / f"iter_{iteration}" / "model")

    def load(self, path: str, trainable: bool = False, dtype: str | None = None):
        """(model, tokenizer) of a model directory, or of the base model plus an adapter directory, in
        ``dtype`` (default: the run's)."""
        dtype = dtype or self.config.dtype
        if is_adapter_dir(path):
            return load_adapted(self.config.model, path, dtype, trainable=trainable)
        return load_policy(path, dtype)

    def policy(self, path: str):
        """(model, tokenizer) of a model directory, kept for reuse (never trained in place)."""
        if path not in self._policy_cache:
            self._policy_cache.clear()
            model, tokenizer = self.load(path)
            if torch.cuda.is_available():
                model = model.to("cuda")
            self._policy_cache[path] = (model.eval(), tokenizer)
        return self._policy_cache[path]

    def generator(self, path: str) -> Generator:
        """The configured sampling backend on the model directory ``path``; use it in a ``with`` block.

        A vLLM engine is started on the saved directory and shut down when the block ends, freeing the
        accelerator for training; the cached transformers policy is dropped first to make room for it.
        """
        if self.config.generator == "vllm":
            self._policy_cache.clear()
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            dtype = str(resolve_dtype(self.config.dtype)).removeprefix("torch.")  # as the trainer's
            if is_adapter_dir(path):  # LoRA: sample from the merged export of the same iteration
                path = str(Path(path).with_name("merged"))
            return VLLMGenerator(path, dtype=dtype, engine_kwargs=self.config.vllm_kwargs)
        model, tokenizer = self.policy(path)
        return TransformersGenerator(model, tokenizer, batch_size=self.config.generation_batch_size)

    def prompts_for(self, s: int) -> list[Prompt]:
        """The prompts of iteration ``s``: all, or a seeded sample of ``prompts_per_iteration``."""
        count = self.config.prompts_per_iteration
        if not count:
            return self.prompts
        chosen = random.Random(f"{self.config.seed}/prompts/{s}").sample(range(len(self.prompts)), count)
        return [self.prompts[i] for i in sorted(chosen)]

    def _chunks(self, items: list, size: int) -> list[list]:
        return [items[i : i + size] for i in range(0, len(items), size)]

    def _my_missing(self, parts: list[Path]) -> list[int]:
        """Indices of the part files this process owns (index modulo processes) that do not exist yet."""
        state = self.state
        return [
            index
            for index, part in enumerate(parts)
            if index % state.num_processes == state.process_index and not part.exists()
        ]

    def _make_parts(self, label: str, indices: list[int], make: Callable[[int], None]) -> None:
        """``make(index)`` for each index, with a progress bar."""
        with Progress(console=self.console, transient=True) as progress:
            task = progress.add_task(label, total=len(indices))
            for index in indices:
                make(index)
                progress.advance(task)

    def _log(self, entry: dict[str, Any]) -> None:
        with open(self.run_dir / "log.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")

    # ------------------------------------------------------------------ stages
    def generate(self, s: int) -> dict[str, Any]:
        """Sample k candidates per prompt with the policy of iteration s-1, chunk by chunk."""
        config = self.config
        final, parts = self.store.path(s), self.store.path(s).with_suffix(".parts")
        prompts = self.prompts_for(s)
        temperature = temperature_for(s, config.temperature)
        mix = split_samples(config.num_candidates, config.temperature_mix or [temperature])
        if not (final.exists() and not parts.exists()):
            parts.mkdir(parents=True, exist_ok=True)
            chunks = self._chunks(prompts, config.generation_batch_size)
            paths = [parts / f"{index:06d}.jsonl" for index in range(len(chunks))]
            if missing := self._my_missing(paths):
                with self.generator(self.model_path(s - 1)) as generator:

                    def sample(index: int) -> None:
                        records = self._sample_chunk(generator, chunks[index], s, index, mix)
                        write_records(paths[index], records)
                        fault_point("generate.chunk")

                    self._make_parts(f"iter {s}: generating", missing, sample)
            self.state.wait_for_everyone()
            if not self.is_main:
                return {}
            records = [r for path in paths for r in read_records(path)]
            if config.negative_source != "policy":
                seed = hash_seed(config.seed, "negatives", s)
                records += sample_external_negatives(records, config.negatives, config.negative_source, seed)
            write_records(final, records)
            fault_point("generate.merge")
            shutil.rmtree(parts)
        records = self.store.read(s)
        policy_records = [r for r in records if r.source in (None, "policy")]
        return {
            "prompts": len(prompts),
            "candidates": len(policy_records),
            "duplicates": len(prompts) * config.num_candidates - len(policy_records),
            "external_negatives": len(records) - len(policy_records),
            "temperatures": [t for t, _ in mix],
        }

    def _sample_chunk(self, generator, chunk: list[Prompt], s: int, index: int, mix) -> list[CandidateRecord]:
        """Every sample of one chunk of prompts, deduplicated per prompt across temperatures."""
        per_prompt: list[dict[str, float]] = [{} for _ in chunk]
        for group, (temperature, count) in enumerate(mix):
            params = SamplingParams(
                num_samples=count,
                temperature=temperature,
                top_p=self.config.top_p,
                max_new_tokens=self.config.max_new_tokens,
                seed=hash_seed(self.config.seed, "generate", s, index, group),
            )
            generations = generator.generate([p.text for p in chunk], params)
            for seen, responses in zip(per_prompt, generations.responses, strict=True):
                for response in responses:
                    seen.setdefault(response, temperature)
        return [
            CandidateRecord(p.prompt_id, p.text, response, None, s, temperature, source="policy")
            for p, seen in zip(chunk, per_prompt, strict=True)
            for response, temperature in seen.items()
        ]

    def score(self, s: int) -> dict[str, Any]:
        """Score every candidate of iteration ``s`` with the reranker, chunk by chunk."""
        records = self.store.read(s)
        parts = self.store.path(s).with_suffix(".scores")
        if any(r.score is None for r in records):
            parts.mkdir(parents=True, exist_ok=True)
            groups = group_by_prompt(records)
            chunks = self._chunks(list(groups.values()), self.config.generation_batch_size)
            paths = [parts / f"{index:06d}.json" for index in range(len(chunks))]

            def score_chunk(index: int) -> None:
                responses = [[records[i].response for i in group] for group in chunks[index]]
                prompts = [records[group[0]].prompt for group in chunks[index]]
                atomic_write_json(paths[index], self.reranker.score(prompts, responses))
                fault_point("score.chunk")

            self._make_parts(f"iter {s}: scoring", self._my_missing(paths), score_chunk)
            self.state.wait_for_everyone()
            if self.is_main:
                records = _with_scores(records, chunks, paths)
                self.store.replace(s, records)
                fault_point("score.merge")
        if not self.is_main:
            return {}
        shutil.rmtree(parts, ignore_errors=True)
        policy_scores = [r.score for r in records if r.source in (None, "policy")]
        best: dict[str, float] = {}
        for r in records:
            if r.source in (None, "policy"):
                best[r.prompt_id] = max(best.get(r.prompt_id, r.score), r.score)
        return {
            "mean_reward": sum(policy_scores) / max(len(policy_scores), 1),
            "mean_best_reward": sum(best.values()) / max(len(best), 1),
        }

    def build(self, s: int) -> dict[str, Any]:
        """Build iteration ``s``'s candidate lists and attach reference log-probs."""
        config = self.config
        window = {"current": [s], "previous": [s - 1, s], "all": list(range(s + 1))}[config.memorization]
        iterations = [i for i in window if i >= 0]
        records = self.store.read_all(iterations)
        settings = ListSettings(
            memorization=config.memorization,
            dedup=config.dedup,
            positives=config.positives,
            negatives=config.negatives,
            max_candidates=config.max_candidates,
            drop_all_tied=config.drop_all_tied,
            negative_source=config.negative_source,
        )
        lists, stats = build_lists(records, s, settings)
        if config.reference == "initial":
            lists = self._cached_reference_logps(lists, iterations, s)
        else:
            lists = self._fresh_reference_logps(lists, self.model_path(s - 1))
        path = self.run_dir / f"iter_{s}" / "lists.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, "".join(json.dumps(_list_to_json(item)) + "\n" for item in lists))
        fault_point("lists.write")
        return stats.as_dict()

    def _cached_reference_logps(
        self, lists: list[RankedList], iterations: list[int], s: int
    ) -> list[RankedList]:
        """Reference = initial model: compute each (prompt, response) once, keep it in the store.

        With adapters, the initial model is the current policy with its adapters disabled (no second
        model is loaded).
        """
        by_iteration = {i: self.store.read(i) for i in iterations}
        cache = {
            (r.prompt_id, r.response): r.reference_logp
            for records in by_iteration.values()
            for r in records
            if r.reference_logp is not None
        }
        missing = sorted(
            {(x.prompt_id, x.prompt, y) for x in lists for y in x.responses if (x.prompt_id, y) not in cache}
        )
        if missing:
            model, tokenizer = self.policy(self.model_path(s - 1) if self.lora else self.config.model)
            with without_adapters(model):
                values = self._response_logps(model, tokenizer, [(p, y) for _, p, y in missing])
            cache.update({(pid, y): v for (pid, _, y), v in zip(missing, values, strict=True)})
            for i, records in by_iteration.items():
                updated = [
                    _with(r, reference_logp=cache.get((r.prompt_id, r.response), r.reference_logp))
                    for r in records
                ]
                if updated != records:
                    self.store.replace(i, updated)
                    fault_point("lists.reference")
        return [_with(x, reference_logps=[cache[(x.prompt_id, y)] for y in x.responses]) for x in lists]

    def _fresh_reference_logps(self, lists: list[RankedList], reference_path: str) -> list[RankedList]:
        """Reference = previous iteration's policy: computed for every list candidate."""
        model, tokenizer = self.policy(reference_path)
        pairs = [(x.prompt, y) for x in lists for y in x.responses]
        values = iter(self._response_logps(model, tokenizer, pairs))
        return [_with(x, reference_logps=[next(values) for _ in x.responses]) for x in lists]

    def _response_logps(self, model, tokenizer, pairs: list[tuple[str, str]]) -> list[float]:
        """:func:`larpo.reference.response_logps` with the run's truncation and LM-head chunking."""
        config = self.config
        return response_logps(
            model, tokenizer, pairs, max_length=config.max_length, chunk_size=config.logprob_chunk_size
        )

    def train(self, s: int) -> dict[str, Any]:
        """Train the policy of iteration s-1 on iteration ``s``'s lists; save it as ``iter_<s>/model``.

        With adapters: iteration 0 adds fresh LoRA adapters to the base model, later iterations load
        the previous adapter; only adapter weights train and only they are saved.
        """
        config = self.config
        out = self.run_dir / f"iter_{s}"
        model_dir, stats_path = out / "model", out / "train_stats.json"
        if model_dir.exists() and stats_path.exists():
            return json.loads(stats_path.read_text(encoding="utf-8"))
        staging, merged_dir = out / "model.tmp", out / "merged"
        if self.is_main:
            shutil.rmtree(staging, ignore_errors=True)
        lists = [json.loads(line) for line in (out / "lists.jsonl").read_text(encoding="utf-8").splitlines()]
        self._policy_cache.clear()  # training changes the weights: never reuse a cached copy
        low_precision = resolve_dtype(config.dtype)
        mixed = config.mixed_precision and low_precision != torch.float32
        # mixed precision: fp32 master weights, bf16/fp16 autocast; saved back in the run's dtype
        model, tokenizer = self.load(self.model_path(s - 1), trainable=True, dtype="float32" if mixed else None)
        if self.lora and s == 0:
            model = add_lora(model, self.lora, seed=hash_seed(config.seed, "lora") % (2**31))
        if not lists:
            stats: dict[str, Any] = {"lists": 0, "steps": 0, "loss": None, "ranking_accuracy": None}
        else:
            examples = []
            for item in lists:
                example = tokenize_list(tokenizer, item["prompt"], item["responses"])
                example["scores"], example["reference_logps"] = item["scores"], item["reference_logps"]
                examples.append(example)
            args = ListwiseConfig(
                output_dir=str(out / "trainer"),
                objective=config.objective,
                objective_options=config.objective_options,
                beta=config.beta,
                nll_weight=config.nll_weight,
                learning_rate=config.learning_rate,
                num_train_epochs=config.epochs,
                per_device_train_batch_size=config.batch_size,
                gradient_accumulation_steps=config.gradient_accumulation_steps,
                lr_scheduler_type=_with_warmup(config.lr_scheduler_type, config.warmup_ratio),
                warmup_steps=config.warmup_ratio,
                max_length=config.max_length,
                shared_prefix=config.shared_prefix,
                logprob_chunk_size=config.logprob_chunk_size,
                seed=hash_seed(config.seed, "train", s) % (2**31),
                logging_steps=1,
                save_strategy="no",
                report_to="none",
                disable_tqdm=not self.console.is_terminal,
                dataloader_pin_memory=False,
                bf16=low_precision == torch.bfloat16,
                fp16=low_precision == torch.float16,
            )
            trainer = ListwiseTrainer(model, args, examples, processing_class=tokenizer)
            trainer.remove_callback(PrinterCallback)  # the summary line reports the iteration
            trainer.add_callback(_FaultCallback())
            trainer.train()
            steps = [h for h in trainer.state.log_history if "loss" in h]
            stats = {
                "lists": len(lists),
                "steps": trainer.state.global_step,
                "loss": sum(h["loss"] for h in steps) / len(steps),
                "ranking_accuracy": sum(h["ranking_accuracy"] for h in steps) / len(steps),
                "margin": sum(h["margin"] for h in steps) / len(steps),
                "final_loss": steps[-1]["loss"],
            }
        if not self.is_main:
            return stats  # the main process saves the model (the weights are the same on every process)
        if self.lora:
            stats["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        model.to(low_precision).save_pretrained(staging)
        fault_point("train.saving")  # a half-written checkpoint stays in staging, redone on resume
        tokenizer.save_pretrained(staging)
        if self.lora and self.lora.merge_after(s, config.iterations):
            shutil.rmtree(merged_dir, ignore_errors=True)
            save_merged(model, tokenizer, out / "merged.tmp")  # merges in place: the adapter is saved
            (out / "merged.tmp").rename(merged_dir)
        shutil.rmtree(out / "trainer", ignore_errors=True)
        atomic_write_json(stats_path, stats)
        staging.rename(model_dir)
        fault_point("train.saved")
        return stats

    def evaluate(self, s: int) -> dict[str, Any]:
        """Evaluate the policy after iteration ``s`` (-1: the initial model) on the held-out prompts."""
        config = self.config
        last = s == config.iterations - 1
        if not self.eval_prompts or (s >= 0 and (s + 1) % config.eval_every and not last):
            return {"skipped": True}
        path = self.run_dir / "eval" / ("initial.json" if s < 0 else f"iter_{s}.json")
        if not path.exists():
            samples = config.eval_samples
            if 0 <= s < config.iterations - 1 and config.eval_samples_between is not None:
                samples = config.eval_samples_between  # cheaper checks between the first and last
            settings = EvalSettings(
                num_samples=samples,
                temperatures=config.eval_temperatures,
                ks=[k for k in config.eval_ks if k <= samples],
                max_new_tokens=config.max_new_tokens,
                correct_threshold=config.eval_threshold,
                seed=hash_seed(config.seed, "eval") % (2**31),
            )
            texts = [p.text for p in self.eval_prompts]
            keep = s >= 0 and config.eval_ranking_prompts > 0
            with self.generator(self.model_path(s)) as generator:
                result = evaluate_policy(generator, self.eval_reranker, texts, settings, keep_samples=keep)
            samples = result.pop("samples", None)
            if samples:
                result.update(self._held_out_ranking(s, texts, samples))
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, result)
        result = json.loads(path.read_text(encoding="utf-8"))
        keys = ("greedy_accuracy", "mean_reward", "pass_at_k", "ndcg", "kendall_tau")
        return {key: result[key] for key in keys if key in result}

    def _held_out_ranking(self, s: int, prompts: list[str], samples: dict[str, list]) -> dict[str, Any]:
        """NDCG / Kendall tau of the implicit reward on the policy's held-out sample lists."""
        chosen = [
            i for i, (responses, scores) in enumerate(zip(samples["responses"], samples["scores"], strict=True))
            if len(responses) > 1 and len(set(scores)) > 1
        ][: self.config.eval_ranking_prompts]  # fmt: skip
        if not chosen:
            return {"ndcg": None, "kendall_tau": None}
        policy, tokenizer = self.policy(self.model_path(s))
        if self.lora and self.config.reference == "initial":
            reference = None  # the policy with its adapters disabled
        else:
            reference_path = (
                self.config.model if self.config.reference == "initial" else self.model_path(s - 1)
            )
            reference = self.load(reference_path)[0].to(policy.device)
        rewards = implicit_rewards_of_lists(
            policy, reference, tokenizer, [prompts[i] for i in chosen],
            [samples["responses"][i] for i in chosen], self.config.beta,
        )  # fmt: skip
        return ranking_quality(rewards, [samples["scores"][i] for i in chosen])


class _FaultCallback(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        fault_point("train.step")


def _check_output_dir(run_dir: Path) -> None:
    """The run directory exists as a writable directory, or can be created as one."""
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"{run_dir}: output_dir exists and is not a directory")
    existing = next(p for p in (run_dir, *run_dir.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise InputError(f"{run_dir}: cannot create the run directory ({existing} is not a directory)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{run_dir}: cannot write the run directory ({existing} is not writable)")


def hash_seed(*parts: Any) -> int:
    """A deterministic 63-bit seed from any parts (stable across processes, unlike ``hash``)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _with_scores(records: list[CandidateRecord], chunks: list[list[list[int]]], parts: list[Path]):
    """``records`` with the scores of each chunk's part file (a list of scores per prompt group)."""
    scores: list[float | None] = [None] * len(records)
    for chunk, part in zip(chunks, parts, strict=True):
        for group, group_scores in zip(chunk, json.loads(part.read_text(encoding="utf-8")), strict=True):
            for position, value in zip(group, group_scores, strict=True):
                scores[position] = value
    return [_with(r, score=v) for r, v in zip(records, scores, strict=True)]


def _with(item, **changes):
    """A copy of a frozen dataclass with ``changes``."""
    return dataclasses.replace(item, **changes)


def _list_to_json(item: RankedList) -> dict[str, Any]:
    return dataclasses.asdict(item)


def _with_warmup(scheduler: str, warmup_ratio: float) -> str:
    """transformers' ``constant`` schedule ignores warmup; with a warmup it is ``constant_with_warmup``."""
    return "constant_with_warmup" if scheduler == "constant" and warmup_ratio > 0 else scheduler
