"""Errors the user can fix: the CLI prints them as one line ``larpo: error: ...`` and exits with code 2."""

from __future__ import annotations

import errno
import logging
import sys

RETRY = "fix the cause and run the same command again (a run resumes)"


class InputError(ValueError):
    """Bad input (a file, a config value, a model directory); the message names the problem."""


def user_message(error: BaseException) -> str | None:
    """The message of an error the user can fix: bad input, an operating-system error (disk full, read-only
    or missing directory) or a failed write of model weights; None for anything else (a bug)."""
    if isinstance(error, InputError):
        return str(error)
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        name = f" (errno {errno.errorcode.get(error.errno, error.errno)})" if error.errno else ""
        return f"{where}{error.strerror or error}{name}; {RETRY}"
    if type(error).__name__ == "SafetensorError" and "I/O error" in str(error):
        return f"cannot write the model weights ({error}); {RETRY}"
    return None


def one_line(message: str) -> str:
    """``message`` on one line: its non-blank lines, stripped, joined by spaces."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


class StderrHandler(logging.Handler):
    """Log records as ``larpo: warning: ...`` on whatever ``sys.stderr`` is at the time."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"larpo: {record.levelname.lower()}: {one_line(record.getMessage())}", file=sys.stderr)


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty), for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
