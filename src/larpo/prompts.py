"""The prompt set of a run: a JSONL file or a ``datasets`` folder with a ``prompt`` column."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from larpo.errors import InputError
from larpo.jsonl import read_jsonl


@dataclass(frozen=True)
class Prompt:
    prompt_id: str
    text: str


def load_prompts(path: str | Path) -> list[Prompt]:
    """Prompts with stable ids (the ``id`` field, else ``p<line>``).

    Raises:
        InputError: unreadable or malformed file, a record without a non-empty string ``prompt``, an
            ``id`` that is not a string or integer, duplicate ids, or no prompts at all.
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
        text = row["prompt"]
        if not isinstance(text, str):
            raise InputError(f"{path}: record {number}: 'prompt' must be a string, got {type(text).__name__}")
        if not text.strip():
            raise InputError(f"{path}: record {number}: empty prompt")
        raw_id = row.get("id", f"p{number}")
        if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
            raise InputError(f"{path}: record {number}: 'id' must be a string or an integer")
        prompt_id = str(raw_id)
        if prompt_id in seen:
            raise InputError(f"{path}: record {number}: duplicate prompt id {prompt_id!r}")
        seen.add(prompt_id)
        prompts.append(Prompt(prompt_id, text))
    return prompts


def _load_dataset_folder(path: Path) -> list[dict]:
    import datasets

    try:
        dataset = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as error:
        raise InputError(f"{path}: not a JSONL file or a datasets folder ({error})") from None
    if isinstance(dataset, datasets.DatasetDict):
        raise InputError(f"{path}: holds several splits ({', '.join(dataset)}); point to one split's folder")
    if "prompt" not in dataset.column_names:
        raise InputError(
            f"{path}: the dataset has no 'prompt' column (columns: {', '.join(dataset.column_names)})"
        )
    if len(dataset) == 0:
        raise InputError(f"{path}: no records")
    return list(dataset)
