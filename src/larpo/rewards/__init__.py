"""Rerankers: score a prompt's candidate responses (the paper's reranker / reward model).

:func:`load_reranker` turns a config string into a reranker: an existing directory is a local
Hugging Face reward model, anything else ``module:function`` or ``path/to/file.py:function``.
"""

from __future__ import annotations

from pathlib import Path

from larpo.rewards.base import Reranker, RewardError, check_scores
from larpo.rewards.callable import CallableReranker, load_callable
from larpo.rewards.hf import HFRewardModel
from larpo.rewards.table import TableReranker


def load_reranker(spec: str) -> Reranker:
    """Build the reranker a config names: model directory, ``module:function`` or ``file.py:function``."""
    if Path(spec).is_dir():
        return HFRewardModel(spec)
    if ":" not in spec:
        raise RewardError(
            f"reranker spec {spec!r} is neither an existing model directory nor "
            "'module:function' / 'path/to/file.py:function'"
        )
    return CallableReranker(spec)


__all__ = [
    "CallableReranker",
    "HFRewardModel",
    "Reranker",
    "RewardError",
    "TableReranker",
    "check_scores",
    "load_callable",
    "load_reranker",
]
