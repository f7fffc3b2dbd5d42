"""The policy as a retriever on held-out prompts: :mod:`~larpo.evaluation.held_out` (greedy accuracy,
pass@k, best-of-N, win rate, ranking quality), :mod:`~larpo.evaluation.metrics`,
:mod:`~larpo.evaluation.report` (a run's report.md) and :mod:`~larpo.evaluation.plots`.

The names of :mod:`~larpo.evaluation.held_out` are available here, imported on first use.
"""

from __future__ import annotations

from typing import Any

_HELD_OUT = (
    "EvalSettings", "evaluate_policy", "best_of_n", "implicit_rewards_of_lists", "ranking_quality",
    "export_alpaca_eval",
)  # fmt: skip

__all__ = list(_HELD_OUT)


def __getattr__(name: str) -> Any:
    if name in _HELD_OUT:
        from larpo.evaluation import held_out

        return getattr(held_out, name)
    raise AttributeError(f"module 'larpo.evaluation' has no attribute {name!r}")
