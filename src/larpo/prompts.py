"""The prompt set of a run: a JSONL file or a ``datasets`` folder with a ``prompt`` column.

A prompt is a string or a list of ``{"role", "content"}`` messages (TRL's conversational format). A row's
other fields (all but ``prompt`` and ``id``: a reference answer, unit tests, a constraint's arguments) are
kept as the prompt's ``fields``, which reward functions that declare them receive as keyword arguments.
:func:`load_prompts` with a tokenizer (or :func:`with_chat_template` later) renders each one to the
text the model sees (:class:`larpo.chat.ChatFormat`), which generation and training use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from larpo.chat import AUTO, ChatFormat, PromptInput, check_prompt
from larpo.errors import InputError
from larpo.jsonl import read_jsonl


@dataclass(frozen=True)
class Prompt:
    """One prompt of the set.

    Attributes:
        prompt_id: its stable id.
        text: the text the model sees: rendered in the chat template when one applies; before rendering,
            the prompt string itself (None for a message list, which only has text once rendered).
        original: the prompt as the file holds it (a string or a message list); defaults to ``text``.
        fields: the row's other fields (JSON values), for rewards that read them.
    """

    prompt_id: str
    text: str | None
    original: PromptInput | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.original is None:
            object.__setattr__(self, "original", self.text)


def with_chat_template(prompts: list[Prompt], tokenizer: Any, chat_template: str = AUTO) -> list[Prompt]:
    """``prompts`` with ``text`` rendered from ``original`` under ``chat_template`` (``auto``, ``none`` or a
    Jinja file; :meth:`larpo.chat.ChatFormat.render`). Prompts of a tokenizer without a template keep their
    text unchanged.

    Raises:
        InputError: a message-list prompt without a template, or a template that fails to render.
    """
    return rendered(prompts, ChatFormat(tokenizer, chat_template))


def rendered(prompts: list[Prompt], chat: ChatFormat, where: str = "") -> list[Prompt]:
    """``prompts`` with ``text`` rendered from ``original`` by ``chat``; ``where`` prefixes an error.

    Raises:
        InputError: a prompt ``chat`` cannot render (see :meth:`larpo.chat.ChatFormat.render`).
    """
    return [replace(p, text=chat.render(p.original, f"{where}prompt {p.prompt_id!r}")) for p in prompts]


def load_prompts(path: str | Path, tokenizer: Any = None, chat_template: str = AUTO) -> list[Prompt]:
    """Prompts with stable ids (the ``id`` field, else ``p<line>``), rendered with
    :func:`with_chat_template` when a ``tokenizer`` is given.

    Raises:
        InputError: unreadable or malformed file, a record whose ``prompt`` is not a non-empty string or
            a valid message list, an ``id`` that is not a string or integer, duplicate ids, a field that is
            not a JSON value, no prompts at all, or (with a tokenizer) a prompt the chat template cannot
            render.
    """
    path = Path(path)
    if path.is_dir():
        rows = _load_dataset_folder(path)
    else:
        rows = read_jsonl(path)
    prompts, seen = [], set()
    for number, row in enumerate(rows, start=1):
        if "prompt" not in row:
            raise InputError(
                f"{path}: record {number}: no 'prompt' field (fields: {', '.join(row) or 'none'})"
            )
        original = check_prompt(row["prompt"], f"{path}: record {number}")
        raw_id = row.get("id", f"p{number}")
        if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
            raise InputError(f"{path}: record {number}: 'id' must be a string or an integer")
        prompt_id = str(raw_id)
        if prompt_id in seen:
            raise InputError(f"{path}: record {number}: duplicate prompt id {prompt_id!r}")
        seen.add(prompt_id)
        fields = {name: value for name, value in row.items() if name not in ("prompt", "id")}
        check_json_fields(fields, f"{path}: record {number}")
        prompts.append(Prompt(prompt_id, original if isinstance(original, str) else None, original, fields))
    return prompts if tokenizer is None else with_chat_template(prompts, tokenizer, chat_template)


def _load_dataset_folder(path: Path) -> list[dict]:
    from larpo.dataset_formats import read_rows  # one reader of JSONL files and datasets folders

    rows = read_rows(path)
    if "prompt" not in rows[0]:
        raise InputError(f"{path}: the dataset has no 'prompt' column (columns: {', '.join(rows[0])})")
    return rows


def check_json_fields(fields: dict[str, Any], where: str) -> None:
    """Every value of ``fields`` is a JSON value (null, bool, finite number, string, list, object with string
    keys), so that it can be stored with the run's candidates and read back unchanged.

    Raises:
        InputError: naming the first field that is not.
    """
    for name, value in fields.items():
        if (problem := _json_problem(value)) is not None:
            raise InputError(f"{where}: field {name!r} is not a JSON value ({problem})")


def _json_problem(value: Any) -> str | None:
    if value is None or isinstance(value, bool | str):
        return None
    if isinstance(value, int | float):
        return None if math.isfinite(value) else f"non-finite number {value!r}"
    if isinstance(value, list | tuple):
        return next((p for item in value if (p := _json_problem(item)) is not None), None)
    if isinstance(value, dict):
        if bad := [key for key in value if not isinstance(key, str)]:
            return f"non-string key {bad[0]!r}"
        return next((p for item in value.values() if (p := _json_problem(item)) is not None), None)
    return f"a {type(value).__name__}"
