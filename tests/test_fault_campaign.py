"""The fault campaign (slow; `python -m pytest -m slow tests/test_fault_campaign.py -s`).

SIGKILL `larpo run` at 20 fault points drawn at random (seeded) across all stages, including in the
middle of writing a candidate file, a manifest or a list file (``write.partial``) and between the
weights and the tokenizer of a checkpoint (``train.saving``); resume after each; then compare the
final candidate store, lists, manifest and weights with an uninterrupted run of the same seed.
"""

import json
import random
import shutil
import signal

import pytest

from larpo.store import read_records
from tests.helpers import STAGE_FILES, larpo_run, snapshot

POINTS = ["generate.chunk", "generate.merge", "score.chunk", "score.merge", "lists.write", "lists.reference",
          "train.step", "train.saving", "train.saved", "write.partial"]  # fmt: skip
FAULTS = 20


@pytest.mark.slow
def test_twenty_random_kills_resume_to_the_uninterrupted_result(workspace, tmp_path, uninterrupted):
    rng = random.Random(2025)
    run_dir = tmp_path / "run"
    injected, invocations, kills = 0, 0, []
    while injected < FAULTS:
        point = rng.choice(POINTS)
        kill_at = f"{point}#{rng.randint(1, 12 if point == 'write.partial' else 3)}"
        result = larpo_run(workspace, run_dir, kill_at)
        invocations += 1
        if result.returncode == -signal.SIGKILL:
            injected += 1
            kills.append(kill_at)
        else:  # the point was not reached this often before the run finished: start over
            assert result.returncode == 0, (kill_at, result.stderr[-2000:])
            manifest = json.loads((run_dir / "manifest.json").read_text())
            assert "train" in manifest["completed"].get("1", {})
            shutil.rmtree(run_dir)
    assert larpo_run(workspace, run_dir).returncode == 0
    resumed = snapshot(run_dir)
    differing = [name for name in STAGE_FILES if resumed[name] != uninterrupted[name]]
    rows = {s: read_records(run_dir / "candidates" / f"iter_{s}.jsonl") for s in (0, 1)}
    keys = [(s, r.prompt_id, r.response) for s, records in rows.items() for r in records]
    stale = list(run_dir.rglob("*.tmp")) + list(run_dir.rglob("*.parts"))
    figures = {"faults_injected": injected, "invocations": invocations, "kills": kills,
               "rows": len(keys), "rows_duplicated": len(keys) - len(set(keys)),
               "files_differing": differing, "stale_temp_files": [str(p) for p in stale]}  # fmt: skip
    print(json.dumps(figures))
    assert differing == [] and figures["rows_duplicated"] == 0 and stale == []
