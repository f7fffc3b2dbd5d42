import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


import json  # noqa: E402

import pytest  # noqa: E402

PROMPTS = 8


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny random model (char tokenizer over digits) and 8 addition prompts."""
    from larpo.tiny import char_tokenizer, tiny_llama

    root = tmp_path_factory.mktemp("loop")
    tokenizer = char_tokenizer("0123456789+=", root / "model")
    tiny_llama(len(tokenizer), hidden_size=32, seed=0).save_pretrained(root / "model")
    with open(root / "prompts.jsonl", "w") as handle:
        for i in range(PROMPTS):
            handle.write(json.dumps({"id": f"q{i}", "prompt": f"{10 + i}+{20 + 3 * i}="}) + "\n")
    return root


@pytest.fixture(scope="module")
def uninterrupted(workspace, tmp_path_factory):
    """The result files of an uninterrupted `larpo run` that crash tests compare a resumed run with."""
    from tests.helpers import larpo_run, snapshot

    run_dir = tmp_path_factory.mktemp("baseline") / "run"
    result = larpo_run(workspace, run_dir)
    assert result.returncode == 0, result.stderr
    return snapshot(run_dir)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny random model directory with a character tokenizer over digits, operators and space."""
    from larpo.tiny import char_tokenizer, tiny_llama

    directory = tmp_path_factory.mktemp("tiny")
    tokenizer = char_tokenizer("0123456789+-*= ", directory)
    tiny_llama(len(tokenizer), hidden_size=32).save_pretrained(directory)
    return directory
