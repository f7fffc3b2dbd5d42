"""The prompt set of a run: a JSONL file or a ``datasets`` folder with a ``prompt`` column.

A prompt is a string or a list of ``{"role", "content"}`` messages (TRL's conversational format).
:func:`load_prompts` with a tokenizer (or :func:`with_chat_template` later) renders each one to the
text the model sees (:class:`larpo.chat.ChatFormat`), which generation and training use.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    """

    prompt_id: str
    text: str | None
    original: PromptInput | None = None

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
    return [
        Prompt(p.prompt_id, chat.render(p.original, f"{where}prompt {p.prompt_id!r}"), p.original)
        for p in prompts
    ]


def load_prompts(path: str | Path, tokenizer: Any = None, chat_template: str = AUTO) -> list[Prompt]:
    """Prompts with stable ids (the ``id`` field, else ``p<line>``), rendered with
    :func:`with_chat_template` when a ``tokenizer`` is given.

    Raises:
        InputError: unreadable or malformed file, a record whose ``prompt`` is not a non-empty string or
            a valid message list, an ``id`` that is not a string or integer, duplicate ids, no prompts at
            all, or (with a tokenizer) a prompt the chat template cannot render.
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
        prompts.append(Prompt(prompt_id, original if isinstance(original, str) else None, original))
    return prompts if tokenizer is None else with_chat_template(prompts, tokenizer, chat_template)


def _load_dataset_folder(path: Path) -> list[dict]:
    from larpo.dataset_formats import read_rows  # one reader of JSONL files and datasets folders

    rows = read_rows(path)
    if "prompt" not in rows[0]:
        raise InputError(f"{path}: the dataset has no 'prompt' column (columns: {', '.join(rows[0])})")
    return rows
