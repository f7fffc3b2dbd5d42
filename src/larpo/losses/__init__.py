"""Ranking objectives on the implicit reward ``g = beta * log(pi / pi_ref)`` (Jin et al. 2025, Table 1).

Every objective is a pure function ``fn(policy_logps, reference_logps, beta=0.1, mask=None, **options)``
over ``[B, m]`` candidate lists sorted best-first, and is registered in :data:`OBJECTIVES`. Importing this
package loads no torch: the functions are imported on first use.
"""

from __future__ import annotations

from typing import Any

from larpo.losses.registry import (
    OBJECTIVES,
    Objective,
    check_nll_min_score,
    check_options,
    get_objective,
    has_nll_term,
    register_objective,
)

_FUNCTIONS = {
    "pairwise_loss": "pairwise", "contrastive_loss": "contrastive", "lambdarank_loss": "lambdarank",
    "listmle_loss": "listmle", "simpo_loss": "baselines", "ipo_loss": "baselines", "rft_loss": "rft",
    "delta_ndcg_weights": "lambda_weights", "preference_pairs": "_lists", "rows_with_gradient": "_lists",
    "read_candidates": "_lists",
}  # fmt: skip
"""Functions of this package, each imported (with torch) from its module on first use."""


def _path(function: str) -> str:
    return f"larpo.losses.{_FUNCTIONS[function]}:{function}"


_BUILT_IN = {"inert_tied_rows": True}
"""What every built-in objective shares: an all-tied row outside its NLL term gets no gradient."""

register_objective(
    "pairwise", _path("pairwise_loss"), kind="ranking", summary="DPO: best vs last candidate",
    reads="best_and_worst", **_BUILT_IN,
)  # fmt: skip
register_objective(
    "contrastive", _path("contrastive_loss"), kind="ranking", summary="InfoNCE: best vs all others",
    **_BUILT_IN,
)  # fmt: skip
register_objective(
    "lambdarank", _path("lambdarank_loss"), kind="ranking", summary="logistic loss over all ordered pairs",
    **_BUILT_IN,
)  # fmt: skip
register_objective(
    "listmle", _path("listmle_loss"), kind="ranking", summary="Plackett-Luce likelihood of the order",
    **_BUILT_IN,
)  # fmt: skip
register_objective(
    "simpo",
    _path("simpo_loss"),
    kind="baseline",
    reference_free=True,
    summary="SimPO: reference-free, length-normalised",
    reads="best_and_worst",
    **_BUILT_IN,
)
register_objective(
    "ipo", _path("ipo_loss"), kind="baseline", summary="IPO: squared log-ratio margin",
    reads="best_and_worst", **_BUILT_IN,
)  # fmt: skip
register_objective(
    "rft",
    _path("rft_loss"),
    kind="control",
    reference_free=True,
    summary="control: NLL of the best candidate only",
    reads="best",
    **_BUILT_IN,
)


def __getattr__(name: str) -> Any:
    if name in _FUNCTIONS:
        import importlib

        return getattr(importlib.import_module(f"larpo.losses.{_FUNCTIONS[name]}"), name)
    raise AttributeError(f"module 'larpo.losses' has no attribute {name!r}")


__all__ = [
    "OBJECTIVES",
    "Objective",
    "check_nll_min_score",
    "check_options",
    "contrastive_loss",
    "delta_ndcg_weights",
    "get_objective",
    "has_nll_term",
    "ipo_loss",
    "lambdarank_loss",
    "listmle_loss",
    "pairwise_loss",
    "preference_pairs",
    "read_candidates",
    "register_objective",
    "rft_loss",
    "rows_with_gradient",
    "simpo_loss",
]
