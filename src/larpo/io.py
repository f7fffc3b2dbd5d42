"""Crash-safe file writes: a file is replaced whole or not at all (temp file, fsync, ``os.replace``).

Every file of a run directory is written this way, so a crash (even SIGKILL) leaves the old file or
the new one, never a torn one; :func:`remove_stale_temp_files` clears the temp files such a crash leaves.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from larpo.faults import fault_point


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


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data``: temp file in the same directory, fsync, ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")  # secrets.token_hex(6), unimported
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


def atomic_write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> None:
    """Atomically replace ``path`` with one JSON line per row."""
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def remove_stale_temp_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the temp files that :func:`atomic_write_bytes` leaves when a process dies mid-write, under
    ``directory`` (recursively); returns them. Only names of the form ``.<name>.<12 hex>.tmp`` match."""
    stale = [p for p in Path(directory).rglob(".*.tmp") if _TEMP_FILE.fullmatch(p.name) and p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
