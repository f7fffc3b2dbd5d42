"""Reading user JSONL files with errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from larpo.chat import check_prompt
from larpo.checks import is_token_ids
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

    ``prompt`` may be a list of ``{"role", "content"}`` messages. ``scores`` is optional: without it the
    order of ``responses`` is the ranking (best first). ``response_ids`` and ``finished`` (as a run's
    ``lists.jsonl`` holds them) are optional too: per response, its sampled token ids and stop flag, or null.
    """
    rows = read_jsonl(path)
    for number, row in enumerate(rows, start=1):
        where = f"{path}: record {number}"
        check_prompt(row.get("prompt"), where)
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
        check_sampled(row, len(responses), where)
    return rows


def check_sampled(row: dict[str, Any], count: int, where: str) -> None:
    """A list's optional ``response_ids`` (token ids or null per response) and ``finished`` (bool or null)."""
    ids, finished = row.get("response_ids"), row.get("finished")
    if ids is not None and (
        not isinstance(ids, list) or len(ids) != count or not all(x is None or is_token_ids(x) for x in ids)
    ):
        raise InputError(f"{where}: 'response_ids' must hold, per response, a list of token ids or null")
    if finished is not None and (
        not isinstance(finished, list)
        or len(finished) != count
        or not all(f is None or isinstance(f, bool) for f in finished)
    ):
        raise InputError(f"{where}: 'finished' must hold, per response, true, false or null")
