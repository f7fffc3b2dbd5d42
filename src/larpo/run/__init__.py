"""An iterative LarPO run (Jin et al. 2025, Algorithm 1) as a resumable state machine.

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

Layout: :mod:`~larpo.run.config` (the settings), :mod:`~larpo.run.manifest`, :mod:`~larpo.run.context`
(checked inputs, paths, models, part files, checkpoints), one module per stage, and
:mod:`~larpo.run.runner` (the stage list and the loop). ``run(config, stages={"train": fn})`` swaps a stage.
Importing this package or its config loads no torch; the stages are imported on first use.
"""

from __future__ import annotations

from typing import Any

from larpo.run.config import RunConfig, load_run_config

__all__ = ["STAGES", "RunConfig", "RunContext", "Stage", "execute", "load_run_config", "run"]

_LAZY = {"run": "runner", "execute": "runner", "STAGES": "runner", "Stage": "runner", "RunContext": "context"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"larpo.run.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'larpo.run' has no attribute {name!r}")
