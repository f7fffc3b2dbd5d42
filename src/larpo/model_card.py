"""Model cards: the README.md of a saved model directory, in the Hugging Face convention.

A YAML metadata header (``base_model``, ``library_name``, ``pipeline_tag``, ``tags``, and the base model's
``license`` when it declares one) and a body saying how the model was made: the objective and its options,
beta, the learning rate, the iterations so far, where the prompts and rewards came from, the latest
held-out metrics, and the larpo version and command that made it.

``base_model`` is the base's Hub id where it is known (the base itself when it is a Hub id; for a local
directory, the ``base_model`` of its own card, such as the one ``larpo import-gguf`` writes), otherwise
the base's absolute path (a relative one such as ``runs/smollm2`` would read as a Hub id).
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import larpo
from larpo.io import atomic_write_text

TAGS = ["larpo", "preference-optimization", "listwise"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
LICENSE_KEYS = ("license", "license_name", "license_link")
"""The keys of a card's license (``license_name`` and ``license_link`` go with ``license: other``)."""


@dataclass
class ModelCardInfo:
    """What a model card says; :meth:`from_manifest` fills it for a run's ``iter_<s>/model``.

    Attributes:
        base_model: the model training started from (a Hub id or a local directory).
        objective, objective_options, beta, learning_rate: the training objective and its settings.
        iterations: iterations trained so far (``None`` for a single ``larpo train``).
        planned_iterations: the run's ``iterations`` setting.
        prompts, reward, data: where the prompts, the rewards and (``larpo train``) the lists came from.
        metrics: the latest held-out metrics (as the eval stage records them); ``metrics_after`` is
            the iteration they were measured after (-1: the initial model).
        command: the command line; ``adapter``: the directory holds a PEFT adapter.
    """

    base_model: str
    objective: str
    objective_options: dict[str, Any] = field(default_factory=dict)
    beta: float | None = None
    learning_rate: float | None = None
    iterations: int | None = None
    planned_iterations: int | None = None
    prompts: str | None = None
    reward: str | None = None
    data: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    metrics_after: int | None = None
    command: str = field(default_factory=lambda: shlex.join(["larpo", *sys.argv[1:]]))
    adapter: bool = False
    larpo_version: str = larpo.__version__

    @classmethod
    def from_manifest(
        cls, data: Mapping[str, Any], iteration: int, command: str | None = None
    ) -> ModelCardInfo:
        """The card of iteration ``iteration``'s model from a run manifest's data: the run's config
        and the latest held-out evaluation recorded up to that iteration."""
        config, completed = data["config"], data["completed"]
        evaluated = [
            int(key)
            for key, stages in completed.items()
            if int(key) <= iteration and stages.get("eval") and not stages["eval"].get("skipped")
        ]
        latest = max(evaluated, default=None)
        return cls(
            base_model=str(config["model"]),
            objective=config["objective"],
            objective_options=dict(config.get("objective_options") or {}),
            beta=config.get("beta"),
            learning_rate=config.get("learning_rate"),
            iterations=iteration + 1,
            planned_iterations=config.get("iterations"),
            prompts=config.get("prompts"),
            reward=config.get("reward"),
            metrics=dict(completed[str(latest)]["eval"]) if latest is not None else {},
            metrics_after=latest,
            adapter=bool(config.get("peft")),
            **({"command": command} if command is not None else {}),
        )


def model_card(info: ModelCardInfo, base_card: Mapping[str, Any] | None = None) -> str:
    """The README.md text for ``info``; ``base_card`` is the YAML header of the base model's own card
    (:func:`base_card_metadata`), which lends its Hub id and license."""
    base_card = base_card or {}
    hub = base_hub_id(info.base_model, base_card)
    metadata: dict[str, Any] = {"base_model": hub or str(Path(info.base_model).absolute())}
    metadata["library_name"] = "peft" if info.adapter else "transformers"
    metadata.update({key: base_card[key] for key in LICENSE_KEYS if _text(base_card.get(key))})
    metadata["pipeline_tag"] = "text-generation"
    metadata["tags"] = [*TAGS, info.objective]
    return card_text(metadata, _body(info, hub))


def card_text(metadata: Mapping[str, Any], body: list[str]) -> str:
    """A model card: ``metadata`` as its YAML header, then the ``body`` lines."""
    header = yaml.safe_dump(dict(metadata), sort_keys=False, allow_unicode=True)
    return "\n".join(["---", header.rstrip(), "---", "", *body, ""])


def write_model_card(model_dir: str | Path, info: ModelCardInfo) -> Path:
    """Write ``<model_dir>/README.md`` (atomically), with what the base model's own card says
    (:func:`base_card_metadata`)."""
    path = Path(model_dir) / "README.md"
    atomic_write_text(path, model_card(info, base_card_metadata(info.base_model)))
    return path


def base_card_metadata(model: str | Path) -> dict[str, Any]:
    """The YAML header of a local model directory's README.md (``{}``: no directory, card or header)."""
    readme = Path(model) / "README.md"
    try:
        return read_card_metadata(readme.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}


def base_hub_id(model: str, base_card: Mapping[str, Any]) -> str | None:
    """The Hub id of the base model ``model``: the ``base_model`` its own card names (a local directory
    made from a Hub model), else ``model`` itself when it is a Hub id and no local path; None: unknown."""
    named = base_card.get("base_model")
    if isinstance(named, list) and len(named) == 1:
        named = named[0]
    if isinstance(named, str) and hub_id(named):
        return hub_id(named)
    return model if _HUB_ID.match(model) and not Path(model).exists() else None


def hub_id(text: str, kind: str = "") -> str | None:
    """``text`` as a Hub repository id: an id (``owner/name``, or a legacy ``name``), or a huggingface.co URL
    of one (``kind``: ``datasets`` for a dataset's URL); None when it is neither (an absolute path)."""
    prefix = re.match(rf"https?://(?:www\.)?huggingface\.co/{kind + '/' if kind else ''}", text)
    candidate = text[prefix.end() :].strip("/") if prefix else text
    return candidate if _HUB_ID.match(candidate) else None


def read_card_metadata(text: str) -> dict[str, Any]:
    """The YAML metadata header of a model card (``{}`` when it has none)."""
    match = re.match(r"---\r?\n(.*?)\r?\n---\r?\n", text, re.DOTALL)
    metadata = yaml.safe_load(match.group(1)) if match else None
    return metadata if isinstance(metadata, dict) else {}


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _body(info: ModelCardInfo, hub: str | None) -> list[str]:
    """The card's text below its header; ``hub``: the base model's Hub id, when known."""
    name = (hub or info.base_model).rstrip("/").split("/")[-1]
    trained = _base_description(info, hub) + (" (LoRA adapter)" if info.adapter else "")
    lines = [
        f"# {name}, trained with larpo ({info.objective})",
        "",
        f"This model is {trained} trained with [larpo](https://arxiv.org/abs/2502.03699): listwise "
        "preference optimization that treats the policy as a retriever and the reward model as a "
        "reranker (LarPO, Jin et al., ICML 2025).",
        "",
        "## Training",
        "",
        *table_lines(("setting", "value"), _settings(info, _base_description(info, hub))),
        "",
    ]
    if info.metrics:
        after = "the initial model" if info.metrics_after == -1 else f"iteration {info.metrics_after}"
        title = "## Held-out evaluation" + (f" (after {after})" if info.metrics_after is not None else "")
        lines += [title, "", *table_lines(("metric", "value"), _flat_metrics(info.metrics)), ""]
    return [*lines, "## Reproduce", "", f"larpo {info.larpo_version}:", "", "```", info.command, "```"]


def _base_description(info: ModelCardInfo, hub: str | None) -> str:
    """The base model as the card names it: its path or id, and the Hub id a local directory comes from."""
    if hub is None or hub == info.base_model:
        return f"`{info.base_model}`"
    return f"`{info.base_model}` (from `{hub}`)"


def _settings(info: ModelCardInfo, base: str) -> list[tuple[str, str]]:
    rows = [
        ("base model", base),
        ("objective", f"`{info.objective}`"),
        ("objective options", f"`{json.dumps(info.objective_options, sort_keys=True)}`"),
        ("beta", _number(info.beta)),
        ("learning rate", _number(info.learning_rate)),
    ]
    if info.iterations is not None:
        planned = f" of {info.planned_iterations}" if info.planned_iterations is not None else ""
        rows.append(("iterations", f"{info.iterations}{planned}"))
    for name, source in (("prompts", info.prompts), ("reward", info.reward), ("training lists", info.data)):
        if source is not None:
            rows.append((name, f"`{source}`"))
    return [(name, value) for name, value in rows if value is not None]


def _flat_metrics(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """One row per number: ``pass_at_k`` per k as ``pass@k``; ``None`` (not measured) left out."""
    rows = []
    for name, value in metrics.items():
        if isinstance(value, Mapping):
            label = "pass@{}" if name == "pass_at_k" else f"{name} {{}}"
            rows += [(label.format(k), _number(v)) for k, v in value.items() if v is not None]
        elif value is not None and not isinstance(value, bool):
            rows.append((name, _number(value)))
    return rows


def _number(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def table_lines(head: tuple[str, str], rows: list[tuple[str, str]]) -> list[str]:
    """A two-column Markdown table (``|`` in a cell escaped)."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    return [f"| {head[0]} | {head[1]} |", "| --- | --- |", *(f"| {cell(a)} | {cell(b)} |" for a, b in rows)]
