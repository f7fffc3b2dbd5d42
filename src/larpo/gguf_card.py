"""The model card ``larpo import-gguf`` writes for the directory it makes, from the GGUF file's ``general.*``
metadata: the Hub id of the model the file holds, its license, languages and training datasets.

The Hub id becomes the card's ``base_model``, which the cards of models trained from the directory carry on
(:func:`larpo.model_card.base_hub_id`), so that a fine-tune links to the Hub model it started from.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import larpo
from larpo.io import atomic_write_text
from larpo.model_card import card_text, hub_id, table_lines

SOURCE_URL_KEYS = ("general.source.repo_url", "general.source.url", "general.repo_url", "general.url")
"""Keys whose huggingface.co URL names the model the file holds, most specific first."""
GGUF_LICENSE_KEYS = {"general.license": "license", "general.license.name": "license_name",
                "general.license.link": "license_link"}  # fmt: skip
"""GGUF license keys -> the model card's."""
_QUANTIZATION = re.compile(r"[.-](?:I?Q\d\w*|B?F16|F32)$", re.IGNORECASE)
"""The quantization suffix of a GGUF file's name (``.Q4_1``, ``-Q4_K_M``, ``-IQ3_XS``, ``.f16``)."""
_DATASET_URL = re.compile(r"general\.dataset\.(\d+)\.repo_url")


def write_import_card(gguf_file: Path, out_dir: Path, architecture: str) -> Path:
    """Write ``out_dir/README.md`` for the model imported from ``gguf_file`` (an ``architecture`` model)."""
    general = gguf_general(gguf_file)
    source, found_in = source_hub_id(general, gguf_file)
    body = _body(general, gguf_file, architecture, source, found_in)
    path = out_dir / "README.md"
    atomic_write_text(path, card_text(import_card_metadata(general, source), body))
    return path


def gguf_general(gguf_file: str | Path) -> dict[str, list[str]]:
    """The text values of a GGUF file's ``general.*`` keys (a list of one for a string, the strings of an
    array of strings; numbers left out)."""
    from gguf import GGUFReader, GGUFValueType

    values = {}
    for name, field in GGUFReader(str(gguf_file)).fields.items():
        if name.startswith("general.") and field.types and field.types[-1] == GGUFValueType.STRING:
            values[name] = [bytes(field.parts[i]).decode("utf-8", "replace") for i in field.data]
    return values


def source_hub_id(general: dict[str, list[str]], gguf_file: str | Path) -> tuple[str | None, str]:
    """The Hub id of the model a GGUF file holds, and where it was found: a huggingface.co URL (or
    ``owner/name``) under one of :data:`SOURCE_URL_KEYS`, else the file's ``general.organization`` with its
    file name less the quantization suffix (``SmolLM2-135M-Instruct.Q4_1.gguf`` of ``HuggingFaceTB``:
    ``HuggingFaceTB/SmolLM2-135M-Instruct``); ``(None, "")`` when neither gives a valid id."""
    for key in SOURCE_URL_KEYS:
        for value in general.get(key, []):
            if hub_id(value):
                return hub_id(value), key
    organization = _first(general, "general.organization")
    guessed = hub_id(f"{organization}/{_model_name(gguf_file)}") if organization else None
    return (guessed, "general.organization and the file name") if guessed else (None, "")


def import_card_metadata(general: dict[str, list[str]], source: str | None) -> dict[str, Any]:
    """The YAML header of an imported model's card: ``base_model`` (``source``, when known), the license,
    languages and Hub datasets the file records, ``library_name`` and ``pipeline_tag``."""
    metadata: dict[str, Any] = {"base_model": source} if source else {}
    metadata["library_name"] = "transformers"
    for key, card_key in GGUF_LICENSE_KEYS.items():
        if _first(general, key):
            metadata[card_key] = _first(general, key)
    if general.get("general.languages"):
        metadata["language"] = general["general.languages"]
    datasets = [hub_id(url, "datasets") for _, url in sorted(_dataset_urls(general))]
    if any(datasets):
        metadata["datasets"] = [dataset for dataset in datasets if dataset]
    metadata["pipeline_tag"] = "text-generation"
    return metadata


def _dataset_urls(general: dict[str, list[str]]) -> list[tuple[int, str]]:
    """(index, URL) of each ``general.dataset.<i>.repo_url`` of the file."""
    matches = ((_DATASET_URL.fullmatch(key), values) for key, values in general.items())
    return [(int(match.group(1)), values[0]) for match, values in matches if match and values]


def _body(
    general: dict[str, list[str]], gguf_file: Path, architecture: str, source: str | None, found_in: str
) -> list[str]:
    """The card's text below its header: what the directory is, and what the file says of the model."""
    title = (source or _model_name(gguf_file)).split("/")[-1]
    rows = [("GGUF file", f"`{gguf_file.name}`"), ("architecture", architecture)]
    rows += [(label, _first(general, key)) for label, key in (("name", "general.name"),
             ("organization", "general.organization"), ("license", "general.license"))]  # fmt: skip
    if source:
        rows.append(("Hub id", f"`{source}` (from {found_in})"))
    return [
        f"# {title}, imported from GGUF",
        "",
        f"`{gguf_file.name}` dequantized to float32 by `larpo import-gguf` (larpo {larpo.__version__}): the "
        "weights, the tokenizer with its chat template, and a generation config whose EOS ids include the "
        "template's end-of-turn token.",
        "",
        *table_lines(("source", "value"), [(label, value) for label, value in rows if value]),
    ]


def _model_name(gguf_file: str | Path) -> str:
    """The file's name without ``.gguf`` and its quantization suffix."""
    return _QUANTIZATION.sub("", Path(gguf_file).stem)


def _first(general: dict[str, list[str]], key: str) -> str | None:
    """The first non-blank text of ``key`` in the file's metadata."""
    values = [value.strip() for value in general.get(key, []) if value.strip()]
    return values[0] if values else None
