"""The ledger of benchmarks/study.py: every result the study measured, one JSON line each, in a file kept
beside its result files (``<docs>/<task>_study_ledger.jsonl``).

An entry is a validation or test evaluation of one run (``seed<N>/<arm>_lr<lr>``, or ``pretrained``) after
some iterations, with the settings it was measured with, the run's stage seconds per iteration, the date and
the machine. The run folders are the study's cache of models; the ledger is its record of results. A study
resumed in a new checkout, whose run folders are gone, takes every measurement the ledger holds for the same
settings instead of training again, and trains only what it lacks.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import sys
from pathlib import Path
from typing import Any

from larpo.run.manifest import changed_settings

Settings = dict[str, Any]
"""The settings of a run (``RunConfig.to_dict``; the model and generation settings for the pretrained one)."""


@dataclasses.dataclass(frozen=True)
class Ledger:
    """The ledger file of one study (created on the first record)."""

    path: Path
    machine: str = ""
    """The machine new entries are measured on (benchutil.machine_info)."""

    def entries(self) -> list[dict[str, Any]]:
        """Every entry, oldest first. A line that is not whole JSON (a write cut off by a crash) is skipped
        with a warning: its measurement is taken again."""
        if not self.path.exists():
            return []
        entries = []
        for number, line in enumerate(self.path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                print(f"warning: {self.path}:{number} is not a whole entry; skipped", file=sys.stderr)
        return entries

    def find(
        self, kind: str, run: str, settings: Settings, evaluation: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The newest ``kind`` entry (validation or test) of ``run`` after ``settings["iterations"]``
        iterations, evaluated as ``evaluation`` says (prompts, reward), its run's settings the same up to the
        ones a run may change on resume (the manifest's rule); None when there is none."""
        for entry in reversed(self.entries()):
            if (
                (entry["kind"], entry["run"], entry["iterations"]) == (kind, run, settings["iterations"])
                and entry["evaluation"] == evaluation
                and not changed_settings(entry["settings"], settings)
            ):  # fmt: skip
                return entry
        return None

    def iteration_seconds(self, run: str, settings: Settings) -> list[float]:
        """The longest record of ``run``'s stage seconds per iteration with these settings (any number of
        iterations): what an equal-compute extension knows of a run whose folder is gone."""
        known = [
            entry["iteration_seconds"]
            for entry in self.entries()
            if entry["run"] == run
            and entry["iteration_seconds"] is not None
            and not changed_settings(entry["settings"], settings)
        ]
        return max(known, key=len, default=[])

    def record(
        self,
        kind: str,
        run: str,
        settings: Settings,
        evaluation: dict[str, Any],
        result: dict[str, Any],
        iteration_seconds: list[float] | None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Append one measurement (a single write of one line) and return its entry. ``iteration_seconds``
        None: not recorded (a result carried over from a published table); ``extra``: more fields (its
        ``source``, and ``seconds``: the run's total stage seconds where the table gave only that)."""
        entry = {
            "kind": kind, "run": run, "iterations": settings["iterations"], "result": result,
            "iteration_seconds": iteration_seconds, "settings": settings, "evaluation": evaluation,
            "date": datetime.date.today().isoformat(), "machine": self.machine, **extra,
        }  # fmt: skip
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            cut_off = not self._ends_with_newline()  # a crash's partial line stays a line of its own
            handle.write(("\n" if cut_off else "") + json.dumps(entry) + "\n")
        return entry

    def _ends_with_newline(self) -> bool:
        """Whether the ledger is empty or its last line is whole (read from its last byte alone)."""
        with self.path.open("rb") as handle:
            if handle.seek(0, 2) == 0:
                return True
            handle.seek(-1, 2)
            return handle.read(1) == b"\n"

    def stage_seconds_by_run(self) -> dict[str, float]:
        """Each run's stage seconds as far as the ledger knows them (its longest record)."""
        longest: dict[str, list[float]] = {}
        for entry in self.entries():
            seconds = entry["iteration_seconds"] or []
            if len(seconds) >= len(longest.get(entry["run"], [])):
                longest[entry["run"]] = seconds
        return {run: sum(seconds) for run, seconds in longest.items()}
