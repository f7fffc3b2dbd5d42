"""Training data in the shapes people have, read into ranked lists ``{"prompt", "responses", "scores"}``.

A JSONL file or a ``datasets`` folder (``Dataset.save_to_disk``) in one of these formats, detected
from its columns (``format=`` forces one):

- ``lists``: larpo's own lists, ``{"prompt", "responses": [...], "scores": [...]}``.
- ``ranked``: ``{"prompt", "responses": [best, ..., worst]}``; a list of ``n`` gets the scores
  ``n-1, ..., 0`` (a ``lists`` row without ``scores`` is read the same way).
- ``pairs``: TRL preference pairs ``{"prompt", "chosen", "rejected"}``, strings or message lists; a
  pair is a list of two scored ``1, 0``. Without ``prompt``, ``chosen`` and ``rejected`` are whole
  conversations and the prompt is the messages they share before they part (TRL's implicit prompt).
- ``rated``: UltraFeedback-style ``{"prompt", "completions": [{"response": ..., <rating>: ...}]}``
  (``instruction`` is read as ``prompt``). ``rating`` names the field to rank by, a dotted path into
  nested objects: ``overall_score``, ``annotations.helpfulness.Rating``. Numeric strings count as
  numbers; a missing rating (absent, null, ``""`` or ``"N/A"``) leaves the completion out.
- ``candidates``: scored candidate records (``larpo generate`` + ``larpo score``), grouped by prompt; lists
  keep the sampled token ids (``response_ids``, ``finished``) to train on them, as ``larpo run`` does.

A prompt stays as given (a string or a list of ``{"role", "content"}`` messages); a response given as
one assistant message becomes its text. Every format then follows the rules of
:func:`larpo.candidates.build_lists`: the same response twice in a list counts once, candidates are
ranked by score (ties by response text), a list with fewer than 2 distinct responses is skipped and
one whose scores are all tied is dropped, each counted in :class:`ReadStats`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from larpo.candidates import CandidateList, ListSettings, build_lists
from larpo.dataset_rows import ROW_READERS, Prompt, pair_row, row_prompt
from larpo.errors import InputError
from larpo.jsonl import check_sampled, read_jsonl
from larpo.store import CandidateRecord

FORMATS = ("lists", "ranked", "pairs", "rated", "candidates")
_RESPONSE_COLUMNS = frozenset({"responses", "chosen", "rejected", "completions", "response"})


@dataclass
class ReadStats:
    """What :func:`read_lists` did with the rows of a file.

    Attributes:
        format: the format the rows were read as.
        rows: rows (records) in the file.
        lists_built: lists returned.
        skipped_too_few: rows left with fewer than 2 distinct responses.
        dropped_all_tied: rows whose responses all share one score.
        duplicates_removed: responses dropped as repeats of one the row already has.
        missing_ratings: completions left out because they have no rating (``rated`` only).
    """

    format: str
    rows: int = 0
    lists_built: int = 0
    skipped_too_few: int = 0
    dropped_all_tied: int = 0
    duplicates_removed: int = 0
    missing_ratings: int = 0

    def as_dict(self) -> dict[str, int | str]:
        return asdict(self)

    def summary(self) -> str:
        """One line for the console."""
        line = f"{self.rows} rows read as {self.format}: {self.lists_built} lists"
        counts = (
            (self.skipped_too_few, "skipped with fewer than 2 distinct responses"),
            (self.dropped_all_tied, "dropped with all scores tied"),
            (self.duplicates_removed, "duplicate responses removed"),
            (self.missing_ratings, "completions without a rating left out"),
        )
        return line + "".join(f", {count} {what}" for count, what in counts if count)


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a JSONL file or of a ``datasets`` folder (one split), as dicts.

    Raises:
        InputError: unreadable file or folder, several splits, or no rows.
    """
    path = Path(path)
    if not path.is_dir():
        return read_jsonl(path)
    import datasets

    try:
        dataset = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as error:
        raise InputError(f"{path}: not a JSONL file or a datasets folder ({error})") from None
    if isinstance(dataset, datasets.DatasetDict):
        raise InputError(f"{path}: holds several splits ({', '.join(dataset)}); point to one split's folder")
    if len(dataset) == 0:
        raise InputError(f"{path}: no records")
    return list(dataset)


def detect_format(columns: Iterable[str], where: str | Path = "data") -> str:
    """The format a set of column names belongs to (see the module docstring)."""
    columns = set(columns)
    if {"chosen", "rejected"} <= columns:
        return "pairs"
    if "completions" in columns:
        return "rated"
    if "responses" in columns:
        return "lists" if "scores" in columns else "ranked"
    if {"prompt_id", "response", "score"} <= columns:
        return "candidates"
    raise InputError(
        f"{where}: cannot tell the format from the columns ({', '.join(sorted(columns)) or 'none'}); "
        "expected prompt + responses (+ scores), prompt + chosen + rejected, prompt + completions, "
        "or scored candidates; or name the format"
    )


def read_lists(
    path: str | Path, format: str | None = None, *, rating: str = "rating", drop_all_tied: bool = True
) -> tuple[list[dict[str, Any]], ReadStats]:
    """Ranked lists ``{"prompt", "responses", "scores"}`` (best first) from a file of any format.

    Args:
        format: one of :data:`FORMATS`; ``None`` detects it from the columns.
        rating: for ``rated``: the completion field (dotted path) to rank by.
        drop_all_tied: drop (and count) lists whose scores are all equal.

    Raises:
        InputError: an unknown format, a malformed row (the message names the file, the record
            number counting from 1 and the problem), or no list to train on.
    """
    path = Path(path)
    format = _check_format(format)
    rows = read_rows(path)
    format = format or detect_format({key for row in rows for key in row}, path)
    if format == "candidates":
        records, window = _candidate_records(path), "all"
    else:
        records, window = _row_records(rows, format, path, rating), "current"
    prompts = {record.prompt_id: prompt for record, prompt in records}
    groups = len(prompts) if format == "candidates" else len(rows)
    missing = sum(record.score is None for record, _ in records)
    scored = [record for record, _ in records if record.score is not None]
    last = max((r.iteration for r in scored), default=0)
    settings = ListSettings(memorization=window, drop_all_tied=drop_all_tied)
    built, list_stats = build_lists(scored, last, settings)
    stats = ReadStats(
        format=format,
        rows=len(rows),
        lists_built=list_stats.lists_built,
        skipped_too_few=groups - list_stats.lists_built - list_stats.dropped_all_tied,
        dropped_all_tied=list_stats.dropped_all_tied,
        duplicates_removed=list_stats.duplicates_removed,
        missing_ratings=missing,
    )
    if not built:
        raise InputError(f"{path}: no prompt has 2 differently scored candidates to rank ({stats.summary()})")
    return [_list_row(prompts[x.prompt_id], x) for x in built], stats


def _list_row(prompt: Prompt, ranked: CandidateList) -> dict[str, Any]:
    """One list of :func:`read_lists`; sampled candidates keep their token ids and stop flags."""
    row = {"prompt": prompt, "responses": ranked.responses, "scores": ranked.scores}
    extras = {"response_ids": ranked.response_ids, "finished": ranked.finished}
    return row | {key: value for key, value in extras.items() if value is not None}


def prompt_rows(path: str | Path, format: str | None = None) -> list[dict[str, Any]]:
    """``{"prompt": ...}`` (with ``id`` where the row has one) for every row of a file of any format,
    in order: the prompt set of a run taken from a training file (implicit pair prompts included)."""
    path = Path(path)
    format = _check_format(format)
    rows = read_rows(path)
    columns = {key for row in rows for key in row}
    if format is None:  # a plain prompt file has none of the columns that tell a format
        format = detect_format(columns, path) if columns & _RESPONSE_COLUMNS else "prompt"
    prompts = []
    for number, row in enumerate(rows, start=1):
        where = f"{path}: record {number}"
        if format == "pairs":
            prompt = pair_row(row, where)[0]
        else:
            prompt = row_prompt(row, where, "instruction" if format == "rated" else None)
        prompts.append({"prompt": prompt, **({"id": row["id"]} if "id" in row else {})})
    return prompts


def _row_records(
    rows: list[dict[str, Any]], format: str, path: Path, rating: str
) -> list[tuple[CandidateRecord, Prompt]]:
    """One record per candidate, the row number as prompt id (each row is its own list)."""
    records = []
    for number, row in enumerate(rows, start=1):
        where = f"{path}: record {number}"
        prompt, candidates = ROW_READERS[format](row, where, rating)
        ids, finished = _sampled_ids(row, format, len(candidates), where)
        pid = str(number)
        records += [
            (CandidateRecord(pid, pid, text, score, 0, 1.0, response_ids=token_ids, finished=done), prompt)
            for (text, score), token_ids, done in zip(candidates, ids, finished, strict=True)
        ]
    if format == "rated" and records and all(record.score is None for record, _ in records):
        raise InputError(f"{path}: no completion has a rating {rating!r}; name the rating field to rank by")
    return records


def _sampled_ids(row: dict[str, Any], format: str, count: int, where: str) -> tuple[list, list]:
    """The sampled token ids and stop flags of a row's ``count`` responses: a ``lists`` row's own (as a
    run's ``lists.jsonl`` keeps them), None where it has none."""
    if format != "lists":
        return [None] * count, [None] * count
    check_sampled(row, count, where)
    return row.get("response_ids") or [None] * count, row.get("finished") or [None] * count


def _candidate_records(path: Path) -> list[tuple[CandidateRecord, Prompt]]:
    """Scored candidate records, one prompt text per prompt id."""
    from larpo.store import read_records

    if path.is_dir():
        raise InputError(f"{path}: scored candidates are read from a JSONL file, not a datasets folder")
    records = read_records(path)
    prompts: dict[str, str] = {}
    for number, record in enumerate(records, start=1):
        if prompts.setdefault(record.prompt_id, record.prompt) != record.prompt:
            raise InputError(f"{path}:{number}: prompt id {record.prompt_id!r} was used for another prompt")
    if any(record.score is None for record in records):
        raise InputError(f"{path}: candidates without a score; run `larpo score` first")
    return [(record, record.prompt) for record in records]


# ---------------------------------------------------------------- fields
def _check_format(format: str | None) -> str | None:
    if format is not None and format not in FORMATS:
        raise InputError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
    return format
