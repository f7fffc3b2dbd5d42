"""The bad-input corpus (tests/data/bad/cases.yaml): every case through the real `larpo` command, each
in its own process, plus a read-only output directory, a full disk and a reward that raises.

Each case must exit with its code (2 for errors), end stderr with exactly one `larpo: error: ...` line
naming the problem, print no traceback, and leave every existing file alone: the corpus folder and,
for run commands, the run directory are snapshotted (path -> sha256) before and compared after.

The commands run in processes forked from one warm interpreter (tests/cli_forkserver.py), since a cold
`python -m larpo.cli` spends seconds importing torch; set LARPO_TEST_PLAIN_SUBPROCESS=1 to run each case
as `sys.executable -m larpo.cli ...` instead (same checks, several minutes).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BAD = ROOT / "tests" / "data" / "bad"
MANIFEST = yaml.safe_load((BAD / "cases.yaml").read_text(encoding="utf-8"))
CASES = MANIFEST["cases"]
REWARD = f"{ROOT / 'tests' / 'rewards_for_tests.py'}:digit_overlap"
PROMPTS = [(f"q{i}", f"{10 + i}+{20 + 3 * i}=") for i in range(6)]
BASE_RUN = ["model={model}", "prompts={prompts}", "reward={reward}", "output_dir={run}", "iterations=1",
            "num_candidates=4", "max_new_tokens=4", "batch_size=4", "generation_batch_size=2",
            "learning_rate=1e-3"]  # fmt: skip
PLAIN = os.environ.get("LARPO_TEST_PLAIN_SUBPROCESS") == "1"


class Larpo:
    """Runs `larpo ARGS` in a new process: forked from a warm interpreter, or a plain subprocess."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1",  # tiny models: more threads only contend for the shared cores
            "PYTHONDONTWRITEBYTECODE": "1",  # importing a corpus reward must not add files to the corpus
        }
        self.env.pop("LARPO_KILL_AT", None)
        self.calls = 0
        self.server = None
        if not PLAIN:
            self.server = subprocess.Popen(
                [sys.executable, str(ROOT / "tests" / "cli_forkserver.py")],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=self.env, cwd=ROOT,
            )  # fmt: skip

    def __call__(self, *args, env=None, fsize=None) -> subprocess.CompletedProcess:
        extra, env = env or {}, dict(self.env, **(env or {}))
        if "PYTHONPATH" in extra:  # in front of larpo's own
            env["PYTHONPATH"] = os.pathsep.join([extra["PYTHONPATH"], self.env["PYTHONPATH"]])
        args = [str(a) for a in args]
        if self.server is None:
            return subprocess.run(
                [sys.executable, "-m", "larpo.cli", *args], env=env, cwd=ROOT, capture_output=True,
                text=True, timeout=900, preexec_fn=None if fsize is None else lambda: _limit_size(fsize),
            )  # fmt: skip
        self.calls += 1
        out, err = self.scratch / f"{self.calls}.out", self.scratch / f"{self.calls}.err"
        request = {"args": args, "env": env, "cwd": str(ROOT), "stdout": str(out), "stderr": str(err),
                   "fsize": fsize}  # fmt: skip
        self.server.stdin.write(json.dumps(request) + "\n")
        self.server.stdin.flush()
        code = json.loads(self.server.stdout.readline())["code"]
        return subprocess.CompletedProcess(args, code, out.read_text(), err.read_text())

    def close(self) -> None:
        if self.server is not None:
            self.server.stdin.close()
            self.server.wait(timeout=60)


def _limit_size(size: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


@pytest.fixture(scope="module")
def larpo(tmp_path_factory):
    runner = Larpo(tmp_path_factory.mktemp("larpo_io"))
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """The placeholders of cases.yaml: a copy of the corpus, a tiny model, good inputs."""
    from larpo.tiny import char_tokenizer, tiny_llama

    root = tmp_path_factory.mktemp("bad_inputs")
    bad = root / "bad"
    shutil.copytree(BAD, bad, ignore=shutil.ignore_patterns("__pycache__"))
    spec = MANIFEST["tiny_model"]
    tokenizer = char_tokenizer(spec["alphabet"], root / "model")
    model = tiny_llama(len(tokenizer), hidden_size=spec["hidden_size"], seed=spec["seed"])
    model.save_pretrained(root / "model")
    for name in MANIFEST["with_tiny_weights"]:
        assert json.loads((bad / name / "config.json").read_text())["vocab_size"] == len(tokenizer)
        shutil.copy(root / "model" / "model.safetensors", bad / name)
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": i, "prompt": p}) + "\n" for i, p in PROMPTS))
    candidates = root / "candidates.jsonl"
    candidates.write_text("".join(
        json.dumps({"prompt_id": i, "prompt": p, "response": r, "score": None, "iteration": 0, "temperature": 1.0})
        + "\n" for i, p in PROMPTS for r in ("1", "22")
    ))  # fmt: skip
    return {"bad": str(bad), "model": str(root / "model"), "prompts": str(prompts), "reward": REWARD,
            "candidates": str(candidates), "lists": str(ROOT / "examples" / "data" / "arithmetic_lists.jsonl")}  # fmt: skip


@pytest.fixture(scope="module")
def finished_run(larpo, places, tmp_path_factory):
    """A finished one-iteration run with the base settings (copied for `run: existing` cases)."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    result = larpo("run", *set_args(BASE_RUN, dict(places, run=str(run_dir))))
    assert result.returncode == 0, result.stderr
    return run_dir


def set_args(items, places):
    return [x for item in items for x in ("--set", fill(item, places))]


def fill(value, places):
    return value.format(**places) if isinstance(value, str) else value


def snapshot(directory: Path) -> dict[str, str]:
    """Every file below ``directory`` as path -> sha256 of its bytes."""
    if not directory.exists():
        return {}
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def check_error(result, code, message, *, only_line=True):
    """Exit ``code``, no traceback, stderr ends with one `larpo: error:` line holding ``message``."""
    err = result.stderr
    assert result.returncode == code, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    assert lines[-1].startswith("larpo: error: "), err[-3000:]
    assert message in lines[-1], lines[-1]
    assert sum(line.startswith("larpo: error:") for line in lines) == 1, err[-3000:]
    if only_line:
        assert len(lines) == 1, err[-3000:]


def test_corpus_is_large_and_well_formed():
    ids = [case["id"] for case in CASES]
    assert len(ids) >= 30 and len(set(ids)) == len(ids)
    for case in CASES:
        assert {"id", "covers", "cmd", "code", "message"} <= set(case), case["id"]
        assert case.get("run", "fresh") in ("fresh", "existing", "started"), case["id"]


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_bad_input(case, larpo, places, tmp_path, request):
    tmp = tmp_path / "case"
    tmp.mkdir()
    run_dir = tmp / "run"
    places = dict(places, tmp=str(tmp), run=str(run_dir))
    args = [fill(a, places) for a in case["cmd"]]
    if args[0] == "run" and case.get("base", True):
        args[1:1] = set_args(BASE_RUN, places)
    env = {key: fill(value, places) for key, value in case.get("env", {}).items()}
    message = fill(case["message"], places)
    mode = case.get("run", "fresh")
    if mode == "existing":
        shutil.copytree(request.getfixturevalue("finished_run"), run_dir)
    corpus = snapshot(Path(places["bad"]))
    before = snapshot(run_dir)

    result = larpo(*args, env=env)
    if case["code"] == 0:
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
        warnings = [line for line in result.stderr.splitlines() if line.startswith("larpo: warning: ")]
        assert len(warnings) == 1 and message in warnings[0], result.stderr[-3000:]
    else:
        check_error(result, case["code"], message, only_line=mode != "started")

    if mode == "fresh" and args[0] == "run":
        assert not run_dir.exists(), "a run that failed on bad input wrote its run directory"
    elif mode == "existing":
        assert snapshot(run_dir) == before
    elif mode == "started":
        # The run directory now holds the work done before the error; the same command again must
        # fail the same way without changing, adding or removing a file.
        assert (run_dir / "manifest.json").is_file()
        before = snapshot(run_dir)
        check_error(larpo(*args, env=env), case["code"], message, only_line=False)
        assert snapshot(run_dir) == before
    for path in case.get("absent", []):
        assert not Path(fill(path, places)).exists(), path
    assert snapshot(Path(places["bad"])) == corpus, "a case changed the corpus"


def run_args(places, run_dir, *overrides):
    return ["run", *set_args(BASE_RUN, dict(places, run=str(run_dir))), *set_args(overrides, places)]


def test_read_only_output_directory(larpo, places, tmp_path):
    """A parent directory without write permission. Root ignores permission bits, so as root the test
    is skipped; the corpus case run-dir-parent-is-a-file covers an uncreatable run dir for everyone."""
    parent = tmp_path / "read_only"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        if os.access(parent, os.W_OK):
            pytest.skip("running as root: chmod 0o555 does not stop writes")
        result = larpo(*run_args(places, parent / "run"))
        check_error(result, 2, f"{parent / 'run'}: cannot write the run directory ({parent} is not writable)")
        assert list(parent.iterdir()) == []
    finally:
        parent.chmod(0o755)


def comparable(run_dir: Path) -> dict[str, object]:
    """What an uninterrupted and a resumed run must share: the store, lists, stats, weights, manifest."""
    files = snapshot(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["config"].pop("output_dir") == str(run_dir)
    names = ("candidates/iter_0.jsonl", "iter_0/lists.jsonl", "iter_0/train_stats.json",
             "iter_0/model/model.safetensors")  # fmt: skip
    return {"manifest": manifest, **{name: files[name] for name in names}}


def test_full_disk_stops_cleanly_and_the_rerun_resumes(larpo, places, tmp_path, finished_run):
    """Files may not grow past 64 KiB (RLIMIT_FSIZE; SIGXFSZ ignored, so the write fails with EFBIG):
    generation, scoring and lists fit, the 136 KB model does not. One error line, exit 2; the rerun
    without the limit resumes at training and ends with the same files as an uninterrupted run."""
    run_dir = tmp_path / "run"
    result = larpo(*run_args(places, run_dir), fsize=64 * 1024)
    check_error(result, 2, "File too large (os error 27)); fix the cause and run the same command again")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert list(manifest["completed"]["0"]) == ["generate", "score", "lists"]
    result = larpo(*run_args(places, run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert comparable(run_dir) == comparable(finished_run)
    assert not (run_dir / "iter_0" / "model.tmp").exists()


RAISES = """def score(prompt, responses):
    if prompt.startswith("13+"):
        raise ValueError("the answer service is down")
    return [float(len(r)) for r in responses]
"""
FIXED = """def score(prompt, responses):
    return [float(len(r)) for r in responses]
"""


def test_reward_raising_on_some_prompts_keeps_the_work_and_a_fixed_reward_resumes(larpo, places, tmp_path):
    from larpo.store import read_records

    reward, run_dir = tmp_path / "reward.py", tmp_path / "run"
    reward.write_text(RAISES)
    args = run_args(places, run_dir, f"reward={reward}:score")
    result = larpo(*args)  # no .pyc is written, so the fixed file below is read from source
    check_error(result, 2, "the reward function raised ValueError on prompt '13+29=' (reward.py, line 3): "
                "the answer service is down", only_line=False)  # fmt: skip
    assert list(json.loads((run_dir / "manifest.json").read_text())["completed"]["0"]) == ["generate"]
    generated = read_records(run_dir / "candidates" / "iter_0.jsonl")
    assert {r.prompt_id for r in generated} == {i for i, _ in PROMPTS} and all(
        r.score is None for r in generated
    )
    # prompts 10+20= and 11+23= (the first chunk of 2) were scored before 13+29= raised
    assert [p.name for p in (run_dir / "candidates" / "iter_0.scores").iterdir()] == ["000000.json"]

    reward.write_text(FIXED)
    result = larpo(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    scored = read_records(run_dir / "candidates" / "iter_0.jsonl")
    assert [(r.prompt_id, r.response) for r in scored] == [(r.prompt_id, r.response) for r in generated]
    assert all(r.score == float(len(r.response)) for r in scored)
