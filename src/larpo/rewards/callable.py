"""A reranker backed by a plain Python function named as ``module:function`` or ``file.py:function``."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from larpo.rewards.base import Reranker, RewardError

ScoreFn = Callable[[str, list[str]], Any]


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


class CallableReranker(Reranker):
    """Scores with ``fn(prompt: str, responses: list[str]) -> list[float]``, called once per prompt.

    ``fn`` gets one prompt and all of its candidate responses and returns one score per response,
    in the same order; the scores must be finite real numbers. An exception raised by ``fn`` becomes a
    :class:`RewardError` naming the prompt and where in the function it was raised.
    """

    def __init__(self, fn: ScoreFn | str) -> None:
        self.fn = load_callable(fn) if isinstance(fn, str) else fn

    def _score(self, prompts: list[str], responses: list[list[str]]) -> list[Any]:
        scores = []
        for prompt, candidates in zip(prompts, responses, strict=True):
            try:
                scores.append(self.fn(prompt, list(candidates)))
            except Exception as err:
                raise RewardError(_describe_failure(err, prompt)) from err
        return scores


def _describe_failure(err: Exception, prompt: str) -> str:
    """``the reward function raised E on prompt P (file.py, line N): message``; the location is the
    innermost frame outside this module (none when the call itself failed, e.g. a wrong signature)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename != __file__]
    where = f" ({Path(frames[-1].filename).name}, line {frames[-1].lineno})" if frames else ""
    detail = str(err).strip().splitlines()
    message = f": {detail[0]}" if detail else ""
    return f"the reward function raised {type(err).__name__} on prompt {prompt[:60]!r}{where}{message}"
