"""The objective registry: one place that says which objectives exist.

Configs, the CLI, the docs and the tests all read :data:`OBJECTIVES`; adding an objective is one
function plus one :func:`register_objective` call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

LossFn = Callable[..., Tensor]
Kind = Literal["ranking", "baseline", "control"]

# Arguments every objective takes positionally; anything else is an objective option.
_POSITIONAL = ("policy_logps", "reference_logps", "beta", "mask")


@dataclass(frozen=True)
class Objective:
    """A registered objective.

    Attributes:
        name: registry key, used in configs (``objective: contrastive``).
        fn: the pure loss function ``fn(policy_logps, reference_logps, beta, mask, **options)``.
        kind: ``ranking`` (the paper's four), ``baseline`` (other preference losses) or ``control``.
        reference_free: True when the loss never reads ``reference_logps`` (no reference pass needed).
        summary: one line for ``larpo objectives`` and the docs.
    """

    name: str
    fn: LossFn
    kind: Kind
    reference_free: bool
    summary: str

    @property
    def options(self) -> tuple[str, ...]:
        """Names of the keyword options this objective accepts."""
        params = inspect.signature(self.fn).parameters
        return tuple(name for name in params if name not in _POSITIONAL)

    def __call__(self, *args, **kwargs) -> Tensor:
        return self.fn(*args, **kwargs)


OBJECTIVES: dict[str, Objective] = {}


def register_objective(
    name: str, fn: LossFn, *, kind: Kind, reference_free: bool = False, summary: str = ""
) -> Objective:
    """Add ``fn`` to the registry under ``name`` and return its entry."""
    if name in OBJECTIVES:
        raise ValueError(f"objective {name!r} is already registered")
    params = tuple(inspect.signature(fn).parameters)
    if params[: len(_POSITIONAL)] != _POSITIONAL:
        raise TypeError(f"objective {name!r} must start with the arguments {', '.join(_POSITIONAL)}")
    entry = Objective(name=name, fn=fn, kind=kind, reference_free=reference_free, summary=summary)
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
