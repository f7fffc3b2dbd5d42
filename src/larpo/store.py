"""The candidate store: ``<run_dir>/candidates/iter_<s>.jsonl``, one :class:`CandidateRecord` per line.

Files are only ever replaced whole (:func:`larpo.io.atomic_write_bytes`), so a file cut off mid-line
was damaged outside larpo: :func:`read_records` reports that torn last line, and any other malformed
line, with the file and line number.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from larpo.chat import PromptInput, check_prompt
from larpo.checks import is_token_ids
from larpo.errors import InputError
from larpo.io import atomic_write_bytes
from larpo.prompts import check_json_fields

_ITER_FILE = re.compile(r"iter_(\d+)\.jsonl")
_OPTIONAL = frozenset(
    {"reference_logp", "source", "response_ids", "finished", "original_prompt", "prompt_fields"}
)


class StoreError(InputError):
    """A candidate file is torn, corrupt or holds a record of the wrong shape."""


@dataclass(frozen=True)
class CandidateRecord:
    """One sampled response to one prompt.

    Attributes:
        prompt_id: stable id of the prompt.
        prompt: the prompt text.
        response: the sampled response text.
        score: the reranker's score, ``None`` until scored.
        iteration: the iteration ``s`` that sampled it.
        temperature: the sampling temperature.
        reference_logp: summed log-prob under the reference model, if computed.
        source: where the candidate came from (``policy``, ``random``, ``related``), if recorded.
        response_ids: the sampled token ids (with the stop token when it finished), if recorded; training
            and reference log-probs then score exactly these tokens instead of re-tokenizing ``response``.
        finished: whether the sample ended with a stop token (False: cut at ``max_new_tokens``), if recorded.
        original_prompt: the prompt as the prompts file holds it (a string or a message list), when it is not
            ``prompt`` itself (a chat template rendered it); the reward sees this one.
        prompt_fields: the prompt row's other fields (JSON values), when it has any; rewards that declare
            them receive them, so a resumed run and ``larpo score`` score as the run did.
    """

    prompt_id: str
    prompt: str
    response: str
    score: float | None
    iteration: int
    temperature: float
    reference_logp: float | None = None
    source: str | None = None
    response_ids: list[int] | None = None
    finished: bool | None = None
    original_prompt: PromptInput | None = None
    prompt_fields: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        for name in ("prompt_id", "prompt", "response"):
            _check_str(name, getattr(self, name))
        if self.source is not None:
            _check_str("source", self.source)
        if isinstance(self.iteration, bool) or not isinstance(self.iteration, int):
            raise StoreError(f"field 'iteration' must be an int, got {_type(self.iteration)}")
        for name in ("score", "temperature", "reference_logp"):
            value = getattr(self, name)
            if value is None and name != "temperature":
                continue
            object.__setattr__(self, name, _check_float(name, value))
        if self.response_ids is not None:
            object.__setattr__(self, "response_ids", _check_ids("response_ids", self.response_ids))
        if self.finished is not None and not isinstance(self.finished, bool):
            raise StoreError(f"field 'finished' must be a bool, got {_type(self.finished)}")
        if self.original_prompt is not None:
            try:
                check_prompt(self.original_prompt, "field 'original_prompt'")
            except InputError as err:
                raise StoreError(str(err)) from None
        if self.prompt_fields is not None:
            if not isinstance(self.prompt_fields, dict):
                raise StoreError(f"field 'prompt_fields' must be an object, got {_type(self.prompt_fields)}")
            try:
                check_json_fields(self.prompt_fields, "field 'prompt_fields'")
            except InputError as err:
                raise StoreError(str(err)) from None

    @property
    def reward_prompt(self) -> PromptInput:
        """The prompt as the reward sees it: as the prompts file holds it."""
        return self.prompt if self.original_prompt is None else self.original_prompt

    def to_json(self) -> str:
        """One JSON line (no newline); optional fields are left out when unset."""
        data = {
            name: value for name in _FIELDS if (value := getattr(self, name)) is not None or name == "score"
        }
        return json.dumps(data, ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes, *, where: str = "<json>") -> CandidateRecord:
        """Parse and validate one line; errors are :class:`StoreError` prefixed with ``where``."""
        try:
            data = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise StoreError(f"{where}: not valid JSON: {err}") from err
        return cls.from_dict(data, where=where)

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "<dict>") -> CandidateRecord:
        """Validate a decoded JSON object; unknown or missing fields are errors."""
        if not isinstance(data, dict):
            raise StoreError(f"{where}: expected a JSON object, got {_type(data)}")
        if unknown := sorted(set(data).difference(_FIELDS)):
            raise StoreError(f"{where}: unknown field(s) {unknown}")
        if missing := [name for name in _REQUIRED if name not in data]:
            raise StoreError(f"{where}: missing field(s) {missing}")
        try:
            return cls(**data)
        except StoreError as err:
            raise StoreError(f"{where}: {err}") from err


_FIELDS = tuple(f.name for f in fields(CandidateRecord))
_REQUIRED = tuple(name for name in _FIELDS if name not in _OPTIONAL)


def _type(value: Any) -> str:
    return type(value).__name__


def _check_str(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise StoreError(f"field {name!r} must be a str, got {_type(value)}")


def _check_ids(name: str, value: Any) -> list[int]:
    if not is_token_ids(value):
        raise StoreError(f"field {name!r} must be a list of token ids (ints >= 0)")
    return list(value)


def _check_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StoreError(f"field {name!r} must be a number, got {_type(value)}")
    if not math.isfinite(value):
        raise StoreError(f"field {name!r} must be finite, got {value!r}")
    return float(value)


def _encode(records: Iterable[CandidateRecord]) -> bytes:
    return "".join(record.to_json() + "\n" for record in records).encode("utf-8")


def group_by_prompt(records: Iterable[CandidateRecord]) -> dict[str, list[int]]:
    """Positions of each prompt's records, prompts in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for position, record in enumerate(records):
        groups.setdefault(record.prompt_id, []).append(position)
    return groups


def read_records(path: str | os.PathLike[str]) -> list[CandidateRecord]:
    """Every record of ``path``.

    A torn tail (bytes after the last newline, or else a final line that is not valid JSON) and any
    other malformed line raise :class:`StoreError`, naming the line.
    """
    path = Path(path)
    data = path.read_bytes()
    *lines, tail = data.split(b"\n")  # ``tail``, after the last newline, was never committed
    parsed: list[Any] = []
    for lineno, line in enumerate(lines, start=1):
        try:
            parsed.append(json.loads(line))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            if lineno < len(lines) or tail:
                raise StoreError(
                    f"{path}:{lineno}: malformed line (corruption, not a torn write): {err}"
                ) from err
    if len(parsed) < len(lines):  # a bad final line is the torn write itself
        lines.pop()
    keep = sum(len(line) + 1 for line in lines)
    if keep < len(data):
        raise StoreError(
            f"{path}:{len(lines) + 1}: torn last line ({len(data) - keep} bytes cut off mid-write)"
        )
    return [CandidateRecord.from_dict(obj, where=f"{path}:{n}") for n, obj in enumerate(parsed, start=1)]


def read_candidates(path: str | os.PathLike[str]) -> list[CandidateRecord]:
    """The candidate records of a user's file: at least one, and one prompt text per prompt id."""
    records = read_records(path)
    if not records:
        raise InputError(f"{path}: no records")
    prompts: dict[str, str] = {}
    for number, record in enumerate(records, start=1):
        if prompts.setdefault(record.prompt_id, record.prompt) != record.prompt:
            raise InputError(f"{path}:{number}: prompt id {record.prompt_id!r} was used for another prompt")
    return records


def _file_version(path: Path) -> tuple[int, int, int]:
    """(inode, modification time in ns, size) of ``path``: changes whenever the file is replaced."""
    stat = path.stat()
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def write_records_atomic(path: str | os.PathLike[str], records: Iterable[CandidateRecord]) -> None:
    """Atomically replace the whole file ``path`` with ``records``."""
    atomic_write_bytes(path, _encode(records))


CACHE_BYTES = 32 * 2**20
"""File bytes of candidate records a :class:`CandidateStore` keeps parsed between reads."""


class CandidateStore:
    """The candidate files of one run directory, one file per iteration.

    The stages of an iteration read the same files several times, so the records of the files read or
    written last (up to ``CACHE_BYTES`` of file) stay parsed. A cached file is used only while it is
    unchanged on disk (same inode, modification time and size): files are only ever replaced whole, so
    a write by anything else shows as a new inode.
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.directory = self.run_dir / "candidates"
        self._cache: dict[Path, tuple[tuple[int, int, int], list[CandidateRecord]]] = {}

    def path(self, iteration: int) -> Path:
        """The file of ``iteration``: ``<run_dir>/candidates/iter_<iteration>.jsonl``."""
        if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0:
            raise StoreError(f"iteration must be a non-negative int, got {iteration!r}")
        return self.directory / f"iter_{iteration}.jsonl"

    def iterations(self) -> list[int]:
        """Sorted iterations that have a candidate file."""
        if not self.directory.is_dir():
            return []
        found = (_ITER_FILE.fullmatch(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def read(self, iteration: int) -> list[CandidateRecord]:
        """All records of ``iteration`` (see :func:`read_records`)."""
        path = self.path(iteration)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == _file_version(path):
            return list(cached[1])
        records = read_records(path)
        self._remember(path, records)
        return list(records)

    def replace(self, iteration: int, records: Iterable[CandidateRecord]) -> None:
        """Atomically rewrite ``iteration``'s file with ``records`` (e.g. after scoring)."""
        path = self.path(iteration)
        records = self._checked(iteration, records)
        self.directory.mkdir(parents=True, exist_ok=True)
        write_records_atomic(path, records)
        self._remember(path, records)

    def _remember(self, path: Path, records: list[CandidateRecord]) -> None:
        """Keep ``path``'s records parsed, dropping the oldest kept files beyond ``CACHE_BYTES``."""
        version = _file_version(path)
        self._cache.pop(path, None)
        self._cache[path] = (version, records)
        while sum(version[2] for version, _ in self._cache.values()) > CACHE_BYTES:
            del self._cache[next(iter(self._cache))]

    def read_all(self, iterations: Iterable[int] | None = None) -> list[CandidateRecord]:
        """Records of ``iterations`` (all present ones when ``None``), concatenated in that order."""
        chosen = self.iterations() if iterations is None else iterations
        return [record for s in chosen for record in self.read(s)]

    @staticmethod
    def _checked(iteration: int, records: Iterable[CandidateRecord]) -> list[CandidateRecord]:
        records = list(records)
        for record in records:
            if record.iteration != iteration:
                raise StoreError(f"record of iteration {record.iteration} written to iteration {iteration}")
        return records
