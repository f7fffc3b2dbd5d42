"""Reading user JSONL files with errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from larpo.errors import InputError


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every line of ``path`` as a JSON object; blank lines are skipped.

    Raises:
        InputError: the file is missing or unreadable, not UTF-8, a line is not a JSON object, or the
            file holds no object at all.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a JSONL file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise InputError(f"{path}:{line}: not UTF-8 text (byte {error.start})") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"{path}:{number}: malformed JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    if not rows:
        raise InputError(f"{path}: no records")
    return rows


def read_ranked_lists(path: str | Path) -> list[dict[str, Any]]:
    """Candidate lists ``{"prompt": str, "responses": [str, ...], "scores": [float, ...]}`` from JSONL.

    ``scores`` is optional: without it the order of ``responses`` is the ranking (best first).
    """
    rows = read_jsonl(path)
    for number, row in enumerate(rows, start=1):
        where = f"{path}: record {number}"
        if not isinstance(row.get("prompt"), str):
            raise InputError(f"{where}: 'prompt' must be a string")
        responses = row.get("responses")
        if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
            raise InputError(f"{where}: 'responses' must be a list of strings")
        if len(responses) < 2:
            raise InputError(f"{where}: a list needs at least 2 responses, got {len(responses)}")
        scores = row.get("scores")
        if scores is not None:
            if not isinstance(scores, list) or len(scores) != len(responses):
                raise InputError(f"{where}: 'scores' must be a list with one number per response")
            if not all(isinstance(s, int | float) and not isinstance(s, bool) for s in scores):
                raise InputError(f"{where}: 'scores' must hold numbers")
            if not all(float("-inf") < s < float("inf") for s in scores):
                raise InputError(f"{where}: 'scores' must be finite")
    return rows
