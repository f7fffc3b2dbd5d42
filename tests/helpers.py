"""Shared by the tests: tiny offline models and candidate lists, the settings of a small `larpo run`, and
ways to run the command line (in-process, or as a subprocess that can be killed at a fault point)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from larpo.cli import main
from larpo.data import tokenize_list
from larpo.run import run as run_larpo
from larpo.run.config import load_run_config
from larpo.store import read_records
from larpo.tiny import char_tokenizer, tiny_llama

ALPHABET = "0123456789+-*= abcdefghijklmnopqrstuvwxyz"


def tiny_model_and_tokenizer(seed: int = 0, hidden_size: int = 32, num_heads: int = 2):
    tokenizer = char_tokenizer(ALPHABET)
    model = tiny_llama(len(tokenizer), hidden_size=hidden_size, num_heads=num_heads, seed=seed)
    return model, tokenizer


def arithmetic_lists(tokenizer, n_prompts: int = 6, size: int = 4):
    """Prompts `a+b=` with `size` candidates: the right answer and answers off by 1, 2, ...
    scored by closeness, so the list order is the reranker's order."""
    examples = []
    for i in range(n_prompts):
        a, b = 11 + 7 * i, 23 + 3 * i
        answers = [str(a + b + offset) for offset in range(size)]
        scores = [-float(offset) for offset in range(size)]
        examples.append(tokenize_list(tokenizer, f"{a}+{b}=", answers, scores))
    return examples


# ------------------------------------------------------------------ a small `larpo run`
REWARD = str(Path(__file__).with_name("rewards_for_tests.py")) + ":digit_overlap"
PROMPTS = 8
K = 4


def settings(workspace, run_dir, *overrides):
    return [
        f"model={workspace / 'model'}",
        f"prompts={workspace / 'prompts.jsonl'}",
        f"reward={REWARD}",
        f"output_dir={run_dir}",
        "iterations=2",
        f"num_candidates={K}",
        "max_new_tokens=4",
        "learning_rate=1e-3",
        "batch_size=4",
        "generation_batch_size=3",
        *overrides,
    ]


def run(workspace, run_dir, *overrides):
    run_larpo(load_run_config(None, settings(workspace, run_dir, *overrides)))
    return json.loads((run_dir / "manifest.json").read_text())


def read_lists(run_dir, s):
    return [json.loads(line) for line in (run_dir / f"iter_{s}" / "lists.jsonl").read_text().splitlines()]


def check_store(run_dir, manifest, iterations=2):
    """Every iteration's file holds that iteration's scored policy samples, as the manifest counts them."""
    for s in range(iterations):
        records = read_records(run_dir / "candidates" / f"iter_{s}.jsonl")
        generated = manifest["completed"][str(s)]["generate"]
        assert len(records) == generated["candidates"]
        assert generated["candidates"] + generated["duplicates"] == PROMPTS * K
        assert {r.iteration for r in records} == {s}
        assert all(r.score is not None and r.source == "policy" and r.temperature == 1.0 for r in records)
        pairs = [(r.prompt_id, r.response) for r in records]
        assert len(pairs) == len(set(pairs))  # exact duplicates removed per prompt
        assert {r.prompt_id for r in records} == {f"q{i}" for i in range(PROMPTS)}
        assert not (run_dir / "candidates" / f"iter_{s}.parts").exists()


# ------------------------------------------------------------------ shortened demos
def short_demo_settings():
    """`larpo demo`'s pipeline made small enough for CI (its full numbers: benchmarks/listwise_search.py --test)."""
    from larpo.tasks.arithmetic.demo import DemoSettings

    return DemoSettings(seed=0, reward="exact", heldout_prompts=400, sft_target_accuracy=0.3, iterations=2,
                        prompts_per_iteration=1000, eval_samples=2)  # fmt: skip


SHORT_DEMO = short_demo_settings()


def demo_start(output):
    """What `larpo demo --output OUTPUT` leaves for the next steps (the SFT model, the train and held-out
    prompt files), from a short SFT without the LarPO iterations: seconds, not minutes."""
    import dataclasses

    from rich.console import Console

    from larpo.tasks.arithmetic.demo import prepare_start

    settings = dataclasses.replace(SHORT_DEMO, heldout_prompts=12, sft_steps=5, sft_validation_prompts=8)
    prepare_start(output, settings, Console(quiet=True))
    return output


# ------------------------------------------------------------------ the command line
def run_cli(monkeypatch, capsys, *args):
    """Run `larpo ARGS` in-process; return (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["larpo", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def run_args(workspace, run_dir, *overrides):
    args = ["run"]
    for item in settings(workspace, run_dir, "iterations=1", *overrides):
        args += ["--set", item]
    return args


STAGE_FILES = ("manifest.json", "candidates/iter_0.jsonl", "candidates/iter_1.jsonl", "iter_0/lists.jsonl",
               "iter_1/lists.jsonl", "iter_1/model/model.safetensors")  # fmt: skip


def larpo_run(workspace, run_dir, kill_at=None, items=None):
    """`larpo run` as a subprocess with ``items`` (default: :func:`settings`), killed at ``kill_at``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("LARPO_KILL_AT", None)
    if kill_at:
        env["LARPO_KILL_AT"] = kill_at
    args = [sys.executable, "-m", "larpo.cli", "run"]
    for item in items or settings(workspace, run_dir):
        args += ["--set", item]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)


def snapshot(run_dir):
    """The run's results; the manifest without its output_dir, which differs between the two runs."""
    files = {name: (run_dir / name).read_bytes() for name in STAGE_FILES}
    manifest = json.loads(files["manifest.json"])
    assert manifest["config"].pop("output_dir") == str(run_dir)
    files["manifest.json"] = manifest
    return files


SMOLLM2_TOKENIZER = Path(__file__).parent / "data" / "smollm2_tokenizer"


def smollm2_tokenizer():
    """The real SmolLM2-135M-Instruct tokenizer (49k BPE, ChatML template, ``<|im_end|>`` = EOS = 2)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(SMOLLM2_TOKENIZER))


def tiny_chat_llama(
    tokenizer, *, seed: int = 0, hidden_size: int = 32, num_layers: int = 1, scale: float = 0.0
):
    """A randomly initialised 1-layer Llama over ``tokenizer``'s vocabulary, whose generation config ends
    a sample at the tokenizer's EOS; ``scale`` > 0 redraws the matrices with that std (a sharper model)."""
    import torch

    model = tiny_llama(
        len(tokenizer),
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=2,
        max_positions=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        seed=seed,
    )
    if scale:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            for parameter in model.parameters():
                if parameter.dim() > 1:
                    parameter.normal_(0.0, scale)
    return model.eval()
