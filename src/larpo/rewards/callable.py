"""A reranker backed by a plain Python function named as ``module:function`` or ``file.py:function``."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from larpo.rewards.base import Fields, Reranker, RewardError, prompt_excerpt

ScoreFn = Callable[..., Any]
"""``fn(prompt, responses, **fields) -> scores``: the fields are those the function declares."""


def load_callable(spec: str) -> ScoreFn:
    """Resolve ``module:function`` or ``path/to/file.py:function`` to the named callable."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise RewardError(f"reranker spec {spec!r} must be 'module:function' or 'path/to/file.py:function'")
    module = _load_file(target) if target.endswith(".py") or "/" in target else _load_module(target)
    try:
        fn = getattr(module, name)
    except AttributeError:
        raise RewardError(f"reranker spec {spec!r}: {target!r} has no attribute {name!r}") from None
    if not callable(fn):
        raise RewardError(f"reranker spec {spec!r}: {name!r} is a {type(fn).__name__}, not callable")
    return fn


def _load_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise RewardError(f"cannot import reranker module {name!r}: {err}") from err
    except Exception as err:  # the module's own code failed
        raise RewardError(f"importing reranker module {name!r} failed: {type(err).__name__}: {err}") from err


def _load_file(target: str) -> ModuleType:
    path = Path(target).resolve()
    if not path.is_file():
        raise RewardError(f"reranker file not found: {target}")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    module_name = f"_larpo_reranker_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise RewardError(f"cannot load reranker file {target} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up here
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[module_name]
        raise RewardError(f"importing reranker file {target} failed: {type(err).__name__}: {err}") from err
    return module


@dataclass(frozen=True)
class FieldSignature:
    """Which of a prompt row's fields a reward function takes, read from its signature.

    Attributes:
        own: the names of its first two parameters (the prompt and the responses).
        declared: the parameters after those that can be passed by name: the fields it reads.
        required: those of ``declared`` without a default: every prompt must have them.
        takes_all: whether it has ``**kwargs``, which receives every field (TRL's convention).
    """

    own: tuple[str, ...] = ()
    declared: frozenset[str] = frozenset()
    required: frozenset[str] = frozenset()
    takes_all: bool = False

    @classmethod
    def of(cls, fn: Callable[..., Any]) -> FieldSignature:
        try:
            parameters = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):  # no signature to read (some builtins): pass no fields
            return cls()
        kind = inspect.Parameter
        own = [p for p in parameters if p.kind in (kind.POSITIONAL_ONLY, kind.POSITIONAL_OR_KEYWORD)][:2]
        named = [
            p
            for p in parameters
            if p not in own and p.kind in (kind.POSITIONAL_OR_KEYWORD, kind.KEYWORD_ONLY)
        ]
        return cls(
            own=tuple(p.name for p in own),
            declared=frozenset(p.name for p in named),
            required=frozenset(p.name for p in named if p.default is kind.empty),
            takes_all=any(p.kind is kind.VAR_KEYWORD for p in parameters),
        )

    def select(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments of one call: every field with ``**kwargs``, else the declared ones."""
        return dict(fields) if self.takes_all else {k: v for k, v in fields.items() if k in self.declared}

    def problem(self, fields: Mapping[str, Any]) -> str | None:
        """Why ``fields`` cannot be passed (a field named like the prompt or responses argument, or a
        declared field missing), or None."""
        if clash := sorted(set(self.select(fields)) & set(self.own)):
            return f"it has the field {clash[0]!r}, the name of the reward's own argument; rename the field"
        if missing := sorted(self.required - set(fields)):
            have = ", ".join(sorted(fields)) or "none"
            return f"it has no field {missing[0]!r}, which the reward declares (its fields: {have})"
        return None


class CallableReranker(Reranker):
    """Scores with ``fn(prompt, responses: list[str], **fields) -> list[float]``, called once per prompt.

    ``fn`` gets one prompt (as the prompts file holds it: a string or a message list) and all of its
    candidate responses and returns one score per response, in the same order; the scores must be finite
    real numbers. It also gets, as keyword arguments, the fields of the prompt's row that it declares by
    name, or all of them when it takes ``**kwargs`` (TRL's convention); ``fn(prompt, responses)`` gets none.
    A ``fn.check_fields(**fields)`` attribute, when present, validates each row's fields before anything runs
    (:meth:`check_fields`).
    An exception raised by ``fn`` becomes a :class:`RewardError` naming the prompt and where in the
    function it was raised.
    """

    def __init__(self, fn: ScoreFn | str) -> None:
        self.fn = load_callable(fn) if isinstance(fn, str) else fn
        self.signature = FieldSignature.of(self.fn)

    def check_fields(self, rows: Sequence[tuple[str, Mapping[str, Any]]], where: str = "") -> None:
        """Every row has the fields ``fn`` declares, none named like its own arguments, and, when ``fn``
        has a ``check_fields`` attribute, that function (called with the fields ``fn`` takes) accepts them
        (it raises ``ValueError`` or ``TypeError`` with the reason otherwise)."""
        validate = getattr(self.fn, "check_fields", None)
        name = getattr(self.fn, "__name__", "the reward function")
        for prompt_id, fields in rows:
            problem = self.signature.problem(fields)
            if problem is None and callable(validate):
                try:
                    validate(**self.signature.select(fields))
                except (ValueError, TypeError) as error:
                    problem = str(error)
            if problem is not None:
                raise RewardError(f"{where}prompt {prompt_id!r} cannot be scored by {name}: {problem}")

    def _score(self, prompts: list[Any], responses: list[list[str]]) -> list[Any]:
        return self._score_with_fields(prompts, responses, None)

    def _score_with_fields(
        self, prompts: list[Any], responses: list[list[str]], fields: Fields | None
    ) -> list[Any]:
        rows = fields if fields is not None else [{}] * len(prompts)
        scores = []
        for prompt, candidates, row in zip(prompts, responses, rows, strict=True):
            try:
                scores.append(self.fn(prompt, list(candidates), **self.signature.select(row)))
            except Exception as err:
                raise RewardError(_describe_failure(err, prompt)) from err
        return scores


def _describe_failure(err: Exception, prompt: Any) -> str:
    """``the reward function raised E on prompt P (file.py, line N): message``; the location is the
    innermost frame outside this module (none when the call itself failed, e.g. a wrong signature)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename != __file__]
    where = f" ({Path(frames[-1].filename).name}, line {frames[-1].lineno})" if frames else ""
    detail = str(err).strip().splitlines()
    message = f": {detail[0]}" if detail else ""
    return (
        f"the reward function raised {type(err).__name__} on prompt {prompt_excerpt(prompt)}{where}{message}"
    )
