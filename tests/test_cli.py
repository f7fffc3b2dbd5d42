import json

import pytest
import torch

from larpo.data import ListCollator, tokenize_list
from larpo.evaluation.metrics import implicit_rewards, ranking_stats
from larpo.jsonl import read_ranked_lists
from larpo.logprobs import list_logps
from larpo.model_io import load_policy
from tests.helpers import run_cli

EXAMPLE_LISTS = "examples/data/arithmetic_lists.jsonl"


def ranking_accuracy(model_dir, reference_dir, path):
    rows = read_ranked_lists(path)
    model, tokenizer = load_policy(model_dir)
    reference, _ = load_policy(reference_dir)
    batch = ListCollator(tokenizer.pad_token_id)(
        [tokenize_list(tokenizer, r["prompt"], r["responses"], r["scores"]) for r in rows]
    )
    with torch.no_grad():
        policy, _ = list_logps(model.eval(), batch)
        ref, _ = list_logps(reference.eval(), batch)
    rewards = implicit_rewards(policy, ref, 0.1, batch["list_mask"])
    return ranking_stats(rewards, batch["list_mask"], batch["scores"])["ranking_accuracy"]


def test_train_saves_a_model_that_ranks_the_lists_better(monkeypatch, capsys, tiny_dir, tmp_path):
    out = tmp_path / "trained"
    code, stdout, _ = run_cli(
        monkeypatch,
        capsys,
        "train",
        "--model",
        tiny_dir,
        "--data",
        EXAMPLE_LISTS,
        "--output",
        out,
        "--objective",
        "lambdarank",
        "--learning-rate",
        "1e-2",
        "--epochs",
        "3",
        "--batch-size",
        "8",
    )
    assert code == 0
    assert "trained on 64 lists with lambdarank" in stdout
    assert "(shared_prefix true, logprob_chunk_size 0)" in stdout  # auto, decided for a CPU and these lists
    log = json.loads((out / "train_log.json").read_text())
    assert log[-1]["step"] == 24  # 64 lists / 8 per step * 3 epochs
    assert ranking_accuracy(out, tiny_dir, EXAMPLE_LISTS) > 0.65  # an untrained policy is near 0.5


def write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda d, t: ["--data", t / "missing.jsonl"], "missing.jsonl: file not found"),
        (
            lambda d, t: [
                "--data",
                write(t / "bad.jsonl", '{"prompt": "a", "responses": ["1", "2"]}\n{oops\n'),
            ],
            "bad.jsonl:2: malformed JSON",
        ),
        (
            lambda d, t: ["--data", write(t / "one.jsonl", '{"prompt": "a", "responses": ["1"]}\n')],
            "no prompt has 2 differently scored candidates to rank (1 rows read as ranked: 0 lists",
        ),
        (
            lambda d, t: [
                "--data",
                write(t / "nan.jsonl", '{"prompt": "a", "responses": ["1", "2"], "scores": [1, NaN]}\n'),
            ],
            "'scores' must be finite",
        ),
        (lambda d, t: ["--data", write(t / "empty.jsonl", "\n")], "empty.jsonl: no records"),
        (lambda d, t: ["--objective", "dpo"], "unknown objective 'dpo'; valid: contrastive"),
        (
            lambda d, t: ["--config", write(t / "c.yaml", "lerning_rate: 0.1\n")],
            "unknown training setting 'lerning_rate' (did you mean 'learning_rate'?)",
        ),
        (lambda d, t: ["--config", write(t / "c.yaml", "- a\n")], "a config must be a mapping"),
        (lambda d, t: ["--model", t], "not a Hugging Face model directory (no config.json)"),
        (lambda d, t: ["--beta", "-1"], "beta must be positive"),
    ],
)
def test_bad_input_exits_2_with_one_line(monkeypatch, capsys, tiny_dir, tmp_path, make_args, message):
    out = tmp_path / "out"
    args = {"--model": tiny_dir, "--data": EXAMPLE_LISTS, "--output": out}
    extra = make_args(tiny_dir, tmp_path)
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        args[flag] = value
    code, _, err = run_cli(monkeypatch, capsys, "train", *[x for kv in args.items() for x in kv])
    assert code == 2
    assert err.strip() == f"larpo: error: {err.strip().removeprefix('larpo: error: ')}"
    assert len(err.strip().splitlines()) == 1
    assert message in err
    assert not out.exists()


def test_output_holding_a_model_is_not_overwritten(monkeypatch, capsys, tiny_dir):
    before = (tiny_dir / "model.safetensors").read_bytes()
    code, _, err = run_cli(
        monkeypatch, capsys, "train", "--model", tiny_dir, "--data", EXAMPLE_LISTS, "--output", tiny_dir
    )
    assert code == 2 and "already holds a model" in err
    assert (tiny_dir / "model.safetensors").read_bytes() == before


def test_objectives_lists_the_registry(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "objectives")
    assert code == 0
    for name in ("pairwise", "contrastive", "lambdarank", "listmle", "simpo", "ipo", "rft"):
        assert name in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--objective", "dpo"], "unknown objective 'dpo'"),
        (["--reward", "fuzzy"], "unknown demo reward 'fuzzy'"),
        (["--error-rate", "1.5"], "--error-rate must be in [0, 1], got 1.5"),
        (["--iterations", "0"], "--iterations must be at least 1, got 0"),
    ],
)
def test_demo_rejects_bad_choices_before_writing(monkeypatch, capsys, tmp_path, args, message):
    code, _, err = run_cli(monkeypatch, capsys, "demo", "--output", tmp_path / "demo", *args)
    assert code == 2 and message in err
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (["--version"], 0, "larpo 0.1.0"),
        (["--help"], 0, "usage: larpo"),
        (["run", "--help"], 0, "prompts_per_iteration"),
        (["objectives"], 0, "lambdarank"),
        (
            ["run", "--set", "lerning_rate=1e-6"],
            2,
            "unknown key 'lerning_rate' (did you mean 'learning_rate'?)",
        ),
        (
            [
                "run",
                *(f"--set={key}=x" for key in ("model", "prompts", "reward", "output_dir")),
                "--set",
                "objective=dpo",
            ],
            2,
            "'objective' must be one of contrastive, ipo, lambdarank",
        ),
    ],
)
def test_answers_that_need_no_model_never_import_torch(args, code, expected):
    """The command line parses and checks before importing torch or transformers (so it answers fast)."""
    import subprocess
    import sys

    script = ("import sys\nfrom larpo.cli import main\nsys.argv = ['larpo', *sys.argv[1:]]\ntry:\n    main()\n"
              "finally:\n    print('heavy:', sorted(m for m in ('torch', 'transformers', 'rich') if m in sys.modules), "
              "file=sys.stderr)\n")  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == code, result.stderr
    assert expected in result.stdout + result.stderr
    assert "heavy: []" in result.stderr
