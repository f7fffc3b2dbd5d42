"""The crash-safe candidate store: ``<run_dir>/candidates/iter_<s>.jsonl``, one record per line.

A line is committed once its trailing newline is on disk: appends write whole lines in one go and
fsync, so a crash (even SIGKILL) can only leave a torn *last* line. :func:`read_records` detects that
tail and, with ``repair=True``, truncates it off; a malformed line anywhere else is corruption and
always an error. Whole-file rewrites go through a temp file and ``os.replace``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from larpo.errors import InputError
from larpo.faults import fault_point

logger = logging.getLogger(__name__)

_ITER_FILE = re.compile(r"iter_(\d+)\.jsonl")
_OPTIONAL = frozenset({"reference_logp", "source", "response_ids", "finished"})


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

    def to_json(self) -> str:
        """One JSON line (no newline); optional fields are left out when unset."""
        data = {k: v for k, v in asdict(self).items() if v is not None or k == "score"}
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
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise StoreError(f"{where}: unknown field(s) {unknown}")
        missing = [f.name for f in fields(cls) if f.name not in data and f.name not in _OPTIONAL]
        if missing:
            raise StoreError(f"{where}: missing field(s) {missing}")
        try:
            return cls(**data)
        except StoreError as err:
            raise StoreError(f"{where}: {err}") from err


def _type(value: Any) -> str:
    return type(value).__name__


def _check_str(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise StoreError(f"field {name!r} must be a str, got {_type(value)}")


def _check_ids(name: str, value: Any) -> list[int]:
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise StoreError(f"field {name!r} must be a list of token ids (ints >= 0)")
    return list(value)


def _check_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StoreError(f"field {name!r} must be a number, got {_type(value)}")
    if not math.isfinite(value):
        raise StoreError(f"field {name!r} must be finite, got {value!r}")
    return float(value)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_TEMP_FILE = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _encode(records: Iterable[CandidateRecord]) -> bytes:
    return "".join(record.to_json() + "\n" for record in records).encode("utf-8")


def group_by_prompt(records: Iterable[CandidateRecord]) -> dict[str, list[int]]:
    """Positions of each prompt's records, prompts in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for position, record in enumerate(records):
        groups.setdefault(record.prompt_id, []).append(position)
    return groups


def append_records(path: str | os.PathLike[str], records: Iterable[CandidateRecord]) -> None:
    """Append ``records`` as complete lines in one write, then fsync.

    Refuses to append after a torn last line (the new lines would be glued onto it); read the file
    with ``repair=True`` first.
    """
    path = Path(path)
    data = _encode(records)
    if not data:
        return
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            raise StoreError(f"{path}: last line is torn; read it with repair=True before appending")
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        _fsync_dir(path.parent)


def read_records(path: str | os.PathLike[str], *, repair: bool = False) -> list[CandidateRecord]:
    """Read every committed record of ``path``.

    A torn tail (bytes after the last newline, or else a final line that is not valid JSON) raises
    :class:`StoreError`, or with ``repair=True`` is truncated off the file and logged. Any other
    malformed line is corruption and always raises, naming its line number.
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
        dropped = len(data) - keep
        if not repair:
            raise StoreError(
                f"{path}:{len(lines) + 1}: torn last line ({dropped} bytes); read with repair=True to drop it"
            )
        _truncate(path, keep)
        logger.warning("%s: dropped a torn last line (%d bytes)", path, dropped)
    return [CandidateRecord.from_dict(obj, where=f"{path}:{n}") for n, obj in enumerate(parsed, start=1)]


def _truncate(path: Path, size: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data``: temp file in the same directory, fsync, ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        try:
            half = len(data) // 2
            _write_all(fd, data[:half])
            fault_point("write.partial")  # a crash here leaves a torn temp file, never a torn ``path``
            _write_all(fd, data[half:])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically replace ``path`` with UTF-8 ``text``."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically replace ``path`` with ``obj`` as indented, strict (no NaN) JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def write_records_atomic(path: str | os.PathLike[str], records: Iterable[CandidateRecord]) -> None:
    """Atomically replace the whole file ``path`` with ``records``."""
    atomic_write_bytes(path, _encode(records))


class CandidateStore:
    """The candidate files of one run directory, one file per iteration."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.directory = self.run_dir / "candidates"

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

    def read(self, iteration: int, *, repair: bool = False) -> list[CandidateRecord]:
        """All committed records of ``iteration`` (see :func:`read_records`)."""
        return read_records(self.path(iteration), repair=repair)

    def append(self, iteration: int, records: Iterable[CandidateRecord]) -> None:
        """Durably append ``records`` to ``iteration``'s file."""
        path = self.path(iteration)
        records = self._checked(iteration, records)
        self.directory.mkdir(parents=True, exist_ok=True)
        append_records(path, records)

    def replace(self, iteration: int, records: Iterable[CandidateRecord]) -> None:
        """Atomically rewrite ``iteration``'s file with ``records`` (e.g. after scoring)."""
        path = self.path(iteration)
        records = self._checked(iteration, records)
        self.directory.mkdir(parents=True, exist_ok=True)
        write_records_atomic(path, records)

    def read_all(
        self, iterations: Iterable[int] | None = None, *, repair: bool = False
    ) -> list[CandidateRecord]:
        """Records of ``iterations`` (all present ones when ``None``), concatenated in that order."""
        chosen = self.iterations() if iterations is None else iterations
        return [record for s in chosen for record in self.read(s, repair=repair)]

    @staticmethod
    def _checked(iteration: int, records: Iterable[CandidateRecord]) -> list[CandidateRecord]:
        records = list(records)
        for record in records:
            if record.iteration != iteration:
                raise StoreError(f"record of iteration {record.iteration} written to iteration {iteration}")
        return records


def remove_stale_temp_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the temp files that :func:`atomic_write_bytes` leaves when a process dies mid-write, under
    ``directory`` (recursively); returns them. Only names of the form ``.<name>.<12 hex>.tmp`` match."""
    stale = [p for p in Path(directory).rglob(".*.tmp") if _TEMP_FILE.fullmatch(p.name) and p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
