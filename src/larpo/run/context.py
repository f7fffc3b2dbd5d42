"""What every stage of a run shares: its inputs, checked up front, and its run directory.

:meth:`RunContext.open` checks every input before anything is written (prompts, rewards, the model,
prompt lengths, the run directory and the manifest of a run to resume). The context then gives the
stages the paths of the run directory, the policy of an iteration (one model kept in memory), the
sampling backend, the part files that processes under ``accelerate launch`` share, the checkpoint
saving of the train stage and ``log.jsonl``.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from rich.console import Console

import larpo
from larpo.adapters import (
    LoraSettings,
    check_targets,
    is_adapter_dir,
    load_adapted,
    require_peft,
    save_merged,
)
from larpo.chat import ChatFormat
from larpo.distributed import check_data_parallel, check_launch, process_state
from larpo.errors import InputError
from larpo.faults import fault_point
from larpo.generation import Generator, TransformersGenerator, VLLMGenerator
from larpo.generation.vllm_backend import check_vllm_installed
from larpo.io import atomic_write_json
from larpo.model_card import ModelCardInfo, write_model_card
from larpo.model_io import check_prompt_lengths, load_policy, resolve_dtype
from larpo.progress import progress_bar
from larpo.prompts import Prompt, load_prompts, rendered
from larpo.reference import response_logps
from larpo.rewards import Reranker, load_reranker
from larpo.run.config import RunConfig
from larpo.run.manifest import Manifest
from larpo.store import CandidateStore
from larpo.tracking import IterationTracker, global_step


@dataclass
class RunContext:
    """One run directory and the checked inputs of its config; build it with :meth:`open`."""

    config: RunConfig
    console: Console
    prompts: list[Prompt]
    reranker: Reranker
    eval_prompts: list[Prompt]
    eval_reranker: Reranker
    manifest: Manifest
    tracker: IterationTracker | None = None
    """The run's trackers (``report_to``) on the main process while :func:`~larpo.run.runner.execute` runs."""
    chat: ChatFormat | None = None
    """How prompts and responses are framed for the policy (its chat template, end token, stop ids)."""
    _policies: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, config: RunConfig, console: Console | None = None) -> RunContext:
        """Check every input of ``config`` (an InputError names the first bad one); nothing is written."""
        state = process_state()
        check_launch(state.num_processes)  # first: places this process on its device
        check_data_parallel()
        console = (console or Console(stderr=True)) if state.is_main_process else Console(quiet=True)
        prompts = load_prompts(config.prompts)
        if config.prompts_per_iteration and config.prompts_per_iteration > len(prompts):
            raise InputError(
                f"prompts_per_iteration={config.prompts_per_iteration} but {config.prompts} holds "
                f"{len(prompts)} prompts"
            )
        reranker = load_reranker(config.reward)
        reranker.check_fields([(p.prompt_id, p.fields) for p in prompts], f"{config.prompts}: ")
        eval_prompts = load_prompts(config.eval_prompts) if config.eval_prompts else []
        eval_reranker = load_reranker(config.eval_reward) if config.eval_reward else reranker
        eval_reranker.check_fields(
            [(p.prompt_id, p.fields) for p in eval_prompts], f"{config.eval_prompts}: "
        )
        _check_backends(config, state.num_processes)
        run_dir = Path(config.output_dir)
        manifest = Manifest(run_dir / "manifest.json", {})  # replaced below, once the model has loaded
        context = cls(config, console, prompts, reranker, eval_prompts, eval_reranker, manifest)
        model, tokenizer = context.policy(config.model)  # a model directory that does not load fails here
        if config.lora:
            check_targets(model, config.lora)
        context.chat = ChatFormat(tokenizer, config.chat_template)
        context.prompts = rendered(prompts, context.chat, f"{config.prompts}: ")
        context.eval_prompts = rendered(eval_prompts, context.chat, f"{config.eval_prompts}: ")
        for path, items in ((config.prompts, context.prompts), (config.eval_prompts, context.eval_prompts)):
            check_prompt_lengths(
                model, tokenizer, [(repr(p.prompt_id), p.text) for p in items],
                max_new_tokens=config.max_new_tokens, max_length=config.max_length, where=f"{path}: ",
            )  # fmt: skip
        _check_output_dir(run_dir)
        context.manifest = Manifest.open(run_dir, config.to_dict(), larpo.__version__)
        return context

    # ------------------------------------------------------------------ processes
    @property
    def state(self) -> PartialState:
        """This process among those ``accelerate launch`` started (the only one without it)."""
        return process_state()

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run directory (always, without ``accelerate launch``)."""
        return self.state.is_main_process

    # ------------------------------------------------------------------ paths and models
    @property
    def run_dir(self) -> Path:
        return Path(self.config.output_dir)

    @cached_property
    def store(self) -> CandidateStore:
        """The run's candidate store (one object, so that its read cache lasts the run)."""
        return CandidateStore(self.run_dir)

    @property
    def lora(self) -> LoraSettings | None:
        return self.config.lora

    def iteration_dir(self, s: int) -> Path:
        """``<run_dir>/iter_<s>``: the lists, the model and the train stats of iteration ``s``."""
        return self.run_dir / f"iter_{s}"

    def model_path(self, iteration: int) -> str:
        """The policy after ``iteration`` (``-1`` is the initial model)."""
        return self.config.model if iteration < 0 else str(self.iteration_dir(iteration) / "model")

    def load(self, path: str, trainable: bool = False, dtype: str | None = None):
        """A fresh (model, tokenizer) of a model directory, or of the base model plus an adapter
        directory, in ``dtype`` (default: the run's)."""
        dtype = dtype or self.config.dtype
        if is_adapter_dir(path):
            return load_adapted(self.config.model, path, dtype, trainable=trainable)
        return load_policy(path, dtype)

    def policy(self, path: str):
        """(model, tokenizer) of a model directory in eval mode, kept for reuse (never train it)."""
        if path not in self._policies:
            self.release_policies()
            model, tokenizer = self.load(path)
            if torch.cuda.is_available():
                model = model.to("cuda")
            self._policies[path] = (model.eval(), tokenizer)
        return self._policies[path]

    def release_policies(self) -> None:
        """Drop the kept policy (training changes weights; a vLLM engine needs the memory)."""
        self._policies.clear()

    def generator(self, path: str) -> Generator:
        """The configured sampling backend on the model directory ``path``; use it in a ``with`` block.

        A vLLM engine is started on the saved directory and shut down when the block ends, freeing the
        accelerator for training; the kept transformers policy is dropped first to make room for it.
        """
        config = self.config
        if config.generator == "vllm":
            self.release_policies()
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            dtype = str(resolve_dtype(config.dtype)).removeprefix("torch.")  # as the trainer's
            if is_adapter_dir(path):  # LoRA: sample from the merged export of the same iteration
                path = str(Path(path).with_name("merged"))
            return VLLMGenerator(
                path, dtype=dtype, engine_kwargs=config.vllm_kwargs, chat_template=config.chat_template
            )
        model, tokenizer = self.policy(path)
        return TransformersGenerator(
            model,
            tokenizer,
            batch_size=config.generation_batch_size,
            stop_ids=self.chat.stop_token_ids(model),
        )

    def response_logps(
        self, model, tokenizer, pairs: list[tuple[str, str]], label: str, response_ids=None, finished=None
    ) -> list[float]:
        """:func:`larpo.reference.response_logps` with the run's truncation, LM-head chunking and end token,
        and a progress bar; pairs with sampled ``response_ids`` are scored on exactly those ids."""
        config = self.config
        with self.progress(label, len(pairs)) as advance:
            return response_logps(
                model, tokenizer, pairs, max_length=config.max_length, chunk_size=config.logprob_chunk_size,
                response_ids=response_ids, finished=finished, end_token_id=self.chat.end_token_id,
                on_progress=advance,
            )  # fmt: skip

    @property
    def records_ids(self) -> bool:
        """Whether candidates keep their sampled token ids: when a chat template frames the prompts (a
        plain-text run re-tokenizes its text, as it always has)."""
        return self.chat.template is not None

    @property
    def records_finished(self) -> bool:
        """Whether candidates keep their stop flag: with sampled ids, or to drop truncated samples."""
        return self.records_ids or not self.config.keep_truncated

    @cached_property
    def prompts_by_id(self) -> dict[str, Prompt]:
        """The run's prompts by id."""
        return {p.prompt_id: p for p in self.prompts}

    def prompts_for(self, s: int) -> list[Prompt]:
        """The prompts of iteration ``s``: all, or a seeded sample of ``prompts_per_iteration``."""
        count = self.config.prompts_per_iteration
        if not count:
            return self.prompts
        chosen = random.Random(f"{self.config.seed}/prompts/{s}").sample(range(len(self.prompts)), count)
        return [self.prompts[i] for i in sorted(chosen)]

    # ------------------------------------------------------------------ part files
    def missing_parts(self, parts: list[Path]) -> list[int]:
        """Indices of the part files this process owns (index modulo processes) that do not exist yet."""
        state = self.state
        return [
            index
            for index, part in enumerate(parts)
            if index % state.num_processes == state.process_index and not part.exists()
        ]

    def make_parts(self, label: str, indices: list[int], make: Callable[[int], None]) -> None:
        """``make(index)`` for each index, with a progress bar."""
        with self.progress(label, len(indices)) as advance:
            for index in indices:
                make(index)
                advance(1)

    def progress(self, label: str, total: int):
        """:func:`larpo.progress.progress_bar` on the run's console; ``with`` it to get ``advance(steps)``."""
        return progress_bar(label, total, self.console)

    # ------------------------------------------------------------------ checkpoints and logs
    def finished_checkpoint(self, s: int) -> dict[str, Any] | None:
        """The train stats of iteration ``s`` when its model is saved, else None (staging cleared)."""
        out = self.iteration_dir(s)
        if (out / "model").exists() and (out / "train_stats.json").exists():
            return json.loads((out / "train_stats.json").read_text(encoding="utf-8"))
        if self.is_main:
            shutil.rmtree(out / "model.tmp", ignore_errors=True)
        return None

    def save_checkpoint(self, s: int, model, tokenizer, stats: dict[str, Any]) -> None:
        """Save iteration ``s``'s trained policy as ``iter_<s>/model`` (and, with LoRA, its merged export
        when due), then its stats; a crash part-way leaves a staging directory that is redone."""
        out = self.iteration_dir(s)
        staging, merged_dir = out / "model.tmp", out / "merged"
        model.to(resolve_dtype(self.config.dtype)).save_pretrained(staging)
        fault_point("train.saving")  # a half-written checkpoint stays in staging, redone on resume
        tokenizer.save_pretrained(staging)
        if self.lora and self.lora.merge_after(s, self.config.iterations):
            shutil.rmtree(merged_dir, ignore_errors=True)
            save_merged(model, tokenizer, out / "merged.tmp")  # merges in place: the adapter is saved
            (out / "merged.tmp").rename(merged_dir)
        self.write_model_cards(s, staging)  # rewritten once the iteration's evaluation is recorded
        shutil.rmtree(out / "trainer", ignore_errors=True)
        atomic_write_json(out / "train_stats.json", stats)
        staging.rename(out / "model")
        fault_point("train.saved")

    def train_callbacks(self, s: int) -> list[Any]:
        """The TrainerCallbacks a train stage adds to iteration ``s``'s Trainer (whose own ``report_to``
        stays ``none``): the run's tracker, its steps continuing those of the iterations before."""
        if self.tracker is None:
            return []
        return [self.tracker.trainer_callback(global_step(self.manifest.data["completed"], s - 1))]

    def write_model_cards(self, s: int, model_dir: Path | None = None) -> None:
        """README.md of iteration ``s``'s saved model directories (``model_dir``: its staging directory
        instead of ``iter_<s>/model``) from the manifest as it is now: the settings and the latest
        held-out metrics recorded."""
        info = ModelCardInfo.from_manifest(self.manifest.data, s)
        out = self.iteration_dir(s)
        for directory, adapter in ((model_dir or out / "model", info.adapter), (out / "merged", False)):
            if directory.is_dir():
                write_model_card(directory, dataclasses.replace(info, adapter=adapter))

    def log(self, entry: dict[str, Any]) -> None:
        """Append one line to ``log.jsonl`` (timings: the one file a resumed run may write differently)."""
        with open(self.run_dir / "log.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")


def chunked(items: list, size: int) -> list[list]:
    """``items`` in consecutive chunks of ``size`` (the last may be shorter)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def _check_backends(config: RunConfig, processes: int) -> None:
    """peft installed for a ``peft`` section; vLLM installed, in one process, on full model directories."""
    if config.lora:
        require_peft()
    if config.generator != "vllm":
        return
    if processes > 1:
        raise InputError(
            "config: generator 'vllm' runs in one process (its tensor_parallel_size spreads it over "
            "GPUs); start larpo run without accelerate launch"
        )
    check_vllm_installed()
    if config.lora and config.lora.merge_export != "every":
        raise InputError(
            "config: generator 'vllm' loads full model directories; with peft set merge_export: every"
        )


def _check_output_dir(run_dir: Path) -> None:
    """The run directory is a larpo run directory, or an empty or new one that can be created."""
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"{run_dir}: output_dir exists and is not a directory")
    existing = next(p for p in (run_dir, *run_dir.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise InputError(f"{run_dir}: cannot create the run directory ({existing} is not a directory)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{run_dir}: cannot write the run directory ({existing} is not writable)")
    if run_dir.exists() and any(run_dir.iterdir()) and not (run_dir / "manifest.json").exists():
        raise InputError(f"{run_dir}: exists and is not a larpo run directory; choose a new output_dir")
