"""Kill `larpo run` with SIGKILL inside generation, scoring and training; the resumed run must end
exactly where an uninterrupted run with the same seed ends."""

import json
import os
import signal
import subprocess
import sys

from tests.test_loop import settings

STAGE_FILES = ("manifest.json", "candidates/iter_0.jsonl", "candidates/iter_1.jsonl", "iter_0/lists.jsonl",
               "iter_1/lists.jsonl", "iter_1/model/model.safetensors")  # fmt: skip


def larpo_run(workspace, run_dir, kill_at=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("LARPO_KILL_AT", None)
    if kill_at:
        env["LARPO_KILL_AT"] = kill_at
    args = [sys.executable, "-m", "larpo.cli", "run"]
    for item in settings(workspace, run_dir):
        args += ["--set", item]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)


def snapshot(run_dir):
    """The run's results; the manifest without its output_dir, which differs between the two runs."""
    files = {name: (run_dir / name).read_bytes() for name in STAGE_FILES}
    manifest = json.loads(files["manifest.json"])
    assert manifest["config"].pop("output_dir") == str(run_dir)
    files["manifest.json"] = manifest
    return files


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
