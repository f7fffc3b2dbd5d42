"""Kill `larpo run` with SIGKILL inside generation, scoring and training; the resumed run must end
exactly where an uninterrupted run with the same seed ends."""

import json
import signal

from tests.helpers import STAGE_FILES, larpo_run, snapshot


def test_killed_in_every_stage_resumes_to_the_same_result(workspace, tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    # Each invocation dies at its kill point; the next one resumes from what the last left behind.
    for kill_at in (
        "generate.chunk#2",
        "score.chunk#2",
        "train.step#1",
        "lists.reference#1",
        "train.saved#1",
    ):
        result = larpo_run(workspace, run_dir, kill_at)
        assert result.returncode == -signal.SIGKILL, (kill_at, result.stderr[-2000:])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert "1" in manifest["completed"]  # the kills really happened at different stages
    assert larpo_run(workspace, run_dir).returncode == 0
    resumed = snapshot(run_dir)
    for name in STAGE_FILES:
        assert resumed[name] == uninterrupted[name], name
    leftovers = [p.name for p in (run_dir / "candidates").iterdir() if not p.name.endswith(".jsonl")]
    assert leftovers == []
