"""The objective registry: one place that says which objectives exist.

Configs, the CLI, the docs and the tests all read :data:`OBJECTIVES`; adding an objective is one
function plus one :func:`register_objective` call. A built-in objective is registered by the path of its
function (``"larpo.losses.pairwise:pairwise_loss"``): its options are read from the function's source and
the function (with torch) is imported on first call, so configs are checked without importing torch.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from torch import Tensor

LossFn = Callable[..., "Tensor"]
Kind = Literal["ranking", "baseline", "control"]
Reads = Literal["all", "best_and_worst", "best"]

# Arguments every objective takes positionally; anything else is an objective option.
_POSITIONAL = ("policy_logps", "reference_logps", "beta", "mask")


@dataclass(frozen=True)
class Objective:
    """A registered objective.

    Attributes:
        name: registry key, used in configs (``objective: contrastive``).
        target: the pure loss function ``fn(policy_logps, reference_logps, beta, mask, **options)``, or
            the ``"module:function"`` path it is imported from on first use (:attr:`fn`).
        kind: ``ranking`` (the paper's four), ``baseline`` (other preference losses) or ``control``.
        reference_free: True when the loss never reads ``reference_logps`` (no reference pass needed).
        summary: one line for ``larpo objectives`` and the docs.
        inert_tied_rows: True when a row outside :func:`larpo.losses.rows_with_gradient` adds exactly zero
            to the loss and its gradient (every built-in objective), so the trainer may skip its forward
            pass; False (a user's objective, unless it says so): every row is computed.
        reads: the candidates of a row the loss reads (:func:`larpo.losses.read_candidates`): ``all``,
            ``best_and_worst`` (the best and the worst, every tied one included: pairwise, simpo, ipo) or
            ``best`` (rft). With ``inert_tied_rows`` the trainer skips the forward pass of the others,
            whose values the loss multiplies by zero or never indexes.
    """

    name: str
    target: LossFn | str
    kind: Kind
    reference_free: bool
    summary: str
    inert_tied_rows: bool = False
    reads: Reads = "all"

    @property
    def fn(self) -> LossFn:
        """The loss function (imported from :attr:`target` when that is a path)."""
        if callable(self.target):
            return self.target
        module, _, function = self.target.partition(":")
        return getattr(importlib.import_module(module), function)

    @property
    def options(self) -> tuple[str, ...]:
        """Names of the keyword options this objective accepts."""
        return tuple(name for name in _parameters(self.target) if name not in _POSITIONAL)

    def __call__(self, *args, **kwargs) -> Tensor:
        return self.fn(*args, **kwargs)


OBJECTIVES: dict[str, Objective] = {}


def register_objective(
    name: str,
    fn: LossFn | str,
    *,
    kind: Kind,
    reference_free: bool = False,
    summary: str = "",
    inert_tied_rows: bool = False,
    reads: Reads = "all",
) -> Objective:
    """Add ``fn`` (a function, or the ``"module:function"`` path of one) to the registry under ``name``
    and return its entry."""
    if name in OBJECTIVES:
        raise ValueError(f"objective {name!r} is already registered")
    if callable(fn) and _parameters(fn)[: len(_POSITIONAL)] != _POSITIONAL:  # a path is read on first use
        raise TypeError(f"objective {name!r} must start with the arguments {', '.join(_POSITIONAL)}")
    entry = Objective(
        name=name, target=fn, kind=kind, reference_free=reference_free, summary=summary,
        inert_tied_rows=inert_tied_rows, reads=reads,
    )  # fmt: skip
    OBJECTIVES[name] = entry
    return entry


def get_objective(name: str) -> Objective:
    """The registered objective called ``name``; a ValueError lists the valid names otherwise."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; valid: {', '.join(sorted(OBJECTIVES))}") from None


def check_options(name: str, options: dict) -> None:
    """Raise ValueError naming any option that objective ``name`` does not accept."""
    accepted = get_objective(name).options
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"objective {name!r} does not take option(s) {', '.join(unknown)}; valid: {', '.join(accepted)}"
        )


def has_nll_term(name: str, nll_weight: float) -> bool:
    """Whether objective ``name`` with ``nll_weight`` trains an NLL term: a positive weight, or ``rft``,
    whose loss is that term."""
    return bool(nll_weight) or name == "rft"


def check_nll_min_score(name: str, nll_weight: float, use_scores: bool = True) -> None:
    """Raise ValueError when ``nll_min_score`` cannot act: objective ``name`` does not take it, or it has
    no NLL term to gate (``nll_weight`` 0, except for ``rft``, whose loss is that term), or no scores."""
    if "nll_min_score" not in get_objective(name).options:
        raise ValueError(f"objective {name!r} does not take nll_min_score")
    if not has_nll_term(name, nll_weight):
        raise ValueError("nll_min_score gates the NLL term: set nll_weight > 0 as well")
    if not use_scores:
        raise ValueError("nll_min_score reads the reranker scores: it needs use_scores")


def _parameters(target: LossFn | str) -> tuple[str, ...]:
    """The parameter names of a function, or of the function at a ``"module:function"`` path, read
    from its source without importing the module."""
    if callable(target):
        return tuple(inspect.signature(target).parameters)
    module, _, function = target.partition(":")
    arguments = _function_arguments(module).get(function)
    if arguments is None:
        raise ValueError(f"objective function {target!r}: no function {function!r} in {module}")
    return arguments


@functools.cache
def _function_arguments(module: str) -> dict[str, tuple[str, ...]]:
    """The parameter names of every top-level function of ``module``, from its source."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(f"objective module {module!r} not found")
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    return {
        node.name: tuple(a.arg for a in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs])
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
    }
