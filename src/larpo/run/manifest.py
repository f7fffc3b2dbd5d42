"""The run manifest: which stage of which iteration has finished, with its statistics.

``<run_dir>/manifest.json`` is rewritten atomically after every finished stage, so it always describes
a consistent run: re-running the same command resumes after the last finished stage. It holds only
deterministic content (no timings), so an interrupted-and-resumed run and an uninterrupted run with
the same seed write the same manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from larpo.errors import InputError
from larpo.io import atomic_write_json

# Settings that may change between invocations of the same run without changing its results so far
# (the log-prob settings change speed and memory; a run started with their old defaults, true and 0,
# resumes under the new ones, auto; save_total_limit changes only which finished models are kept).
RESUMABLE_CHANGES = frozenset(
    {
        "iterations",
        "output_dir",
        "vllm_kwargs",
        "shared_prefix",
        "logprob_chunk_size",
        "report_to",
        "run_name",
        "save_total_limit",
    }
)
ADDED_SETTINGS = {
    "generator": "transformers", "vllm_kwargs": {}, "shared_prefix": True, "logprob_chunk_size": 0,
    "score_batch_size": None, "report_to": "none", "run_name": None,
    "chat_template": "auto", "keep_truncated": True, "nll_min_score": None,
    "save_total_limit": None,
}  # fmt: skip
"""Settings added after runs could be started, with the value a stored config without them meant."""


def changed_settings(stored: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """The settings of ``config`` that a run started with ``stored`` cannot take on resume (sorted): those
    outside RESUMABLE_CHANGES that differ, a setting ``stored`` lacks meaning its ADDED_SETTINGS value."""
    return sorted(
        key
        for key in set(config) | set(stored)
        if key not in RESUMABLE_CHANGES and config.get(key) != stored.get(key, ADDED_SETTINGS.get(key))
    )


def read_manifest(path: Path) -> dict[str, Any]:
    """The data of a manifest file; a file that is unreadable or of the wrong shape is an InputError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: unreadable manifest ({error})") from None
    if not (
        isinstance(data, dict)
        and isinstance(data.get("config"), dict)
        and isinstance(data.get("completed"), dict)
    ):
        raise InputError(
            f"{path}: unreadable manifest (expected a JSON object with 'config' and 'completed')"
        )
    return data


class Manifest:
    """The manifest of one run directory."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @classmethod
    def open(cls, run_dir: Path, config: dict[str, Any], version: str) -> Manifest:
        """Load the manifest of ``run_dir`` (checking the config matches) or start a new one in memory."""
        path = run_dir / "manifest.json"
        if not path.exists():
            return cls(path, {"larpo_version": version, "config": config, "completed": {}})
        data = read_manifest(path)
        changed = changed_settings(data.get("config", {}), config)
        if changed:
            raise InputError(
                f"{run_dir} was started with other settings ({', '.join(changed)}); "
                "resume with the same config or choose a new output_dir"
            )
        data["config"] = config
        return cls(path, data)

    def reload(self) -> None:
        """Read the manifest file again (another process has recorded stages)."""
        self.data = read_manifest(self.path)

    def save(self) -> None:
        """Write the manifest atomically (done before the first stage, so the run is recognised)."""
        atomic_write_json(self.path, self.data)

    def done(self, iteration: int, stage: str) -> bool:
        return stage in self.data["completed"].get(str(iteration), {})

    def stats(self, iteration: int, stage: str) -> dict[str, Any]:
        return self.data["completed"][str(iteration)][stage]

    def mark(self, iteration: int, stage: str, stats: dict[str, Any]) -> None:
        """Record ``stage`` of ``iteration`` as finished and write the manifest atomically."""
        self.data["completed"].setdefault(str(iteration), {})[stage] = stats
        self.save()
