"""Rerankers: score validation, the callable loader, the table, and a tiny local HF reward model."""

import math
import os
import re
import textwrap

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from larpo.rewards import (  # noqa: E402
    CallableReranker,
    HFRewardModel,
    Reranker,
    RewardError,
    TableReranker,
    check_scores,
    load_callable,
    load_reranker,
)

LONG_PROMPT = "Why is the sky blue? " * 5


def length_score(prompt: str, responses: list[str]) -> list[float]:
    """A module-level reranker function: score = response length minus prompt length."""
    return [len(r) - len(prompt) for r in responses]


def test_check_scores_accepts_and_converts():
    import numpy as np

    out = check_scores(["a", "b"], [["x", "y"], []], [[1, np.float32(0.5)], []])
    assert out == [[1.0, 0.5], []]
    assert all(type(v) is float for v in out[0])


@pytest.mark.parametrize(
    ("scores", "message"),
    [
        ([[1.0, 2.0]], "reranker returned 1 score lists for 2 prompts"),
        ([[1.0, 2.0], [1.0]], f"prompt 2 ({LONG_PROMPT[:60]!r}): expected 3 scores, got 1"),
        (
            [[1.0, 2.0], [1.0, float("nan"), 0.0]],
            f"prompt 2 ({LONG_PROMPT[:60]!r}), response 2: non-finite score nan",
        ),
        ([[float("-inf"), 2.0], [1.0, 2.0, 3.0]], "prompt 1 ('short'), response 1: non-finite score -inf"),
        (
            [[1.0, True], [1.0, 2.0, 3.0]],
            "prompt 1 ('short'), response 2: score must be a real number, got bool",
        ),
        ([[1.0, "2"], [1.0, 2.0, 3.0]], "response 2: score must be a real number, got str"),
        ([[1.0, None], [1.0, 2.0, 3.0]], "response 2: score must be a real number, got NoneType"),
        ([[1.0, 2.0], 3.0], f"scores of prompt 2 ({LONG_PROMPT[:60]!r}) must be a list, got float"),
        ("12", "reranker output must be a list, got str"),
    ],
)
def test_check_scores_errors_name_the_prompt(scores, message):
    prompts = ["short", LONG_PROMPT]
    responses = [["a", "b"], ["c", "d", "e"]]
    with pytest.raises(RewardError, match=re.escape(message)):
        check_scores(prompts, responses, scores)


def test_reranker_score_validates_subclass_output():
    class Broken(Reranker):
        def _score(self, prompts, responses):
            return [[math.nan] * len(r) for r in responses]

    with pytest.raises(RewardError, match=re.escape("prompt 1 ('q'), response 1: non-finite score nan")):
        Broken().score(["q"], [["r"]])
    with pytest.raises(RewardError, match="got 1 prompts but 2 response lists"):
        Broken().score(["q"], [["r"], ["s"]])


def test_callable_reranker_from_module_spec():
    reranker = CallableReranker(f"{__name__}:length_score")
    assert reranker.fn is length_score
    assert reranker.score(["ab", "a"], [["abcd", "a"], ["xyz"]]) == [[2.0, -1.0], [2.0]]


def test_callable_reranker_from_file(tmp_path):
    script = tmp_path / "my_rm.py"
    script.write_text(
        textwrap.dedent("""
        from dataclasses import dataclass

        @dataclass
        class Weight:
            value: float

        W = Weight(0.5)

        def score(prompt, responses):
            return [W.value * r.count("!") for r in responses]
    """)
    )
    reranker = load_reranker(f"{script}:score")
    assert isinstance(reranker, CallableReranker)
    assert reranker.score(["p"], [["hi!", "no", "!!!"]]) == [[0.5, 0.0, 1.5]]


def test_callable_reranker_rejects_bad_output():
    reranker = CallableReranker(lambda prompt, responses: [1.0])
    with pytest.raises(RewardError, match=re.escape("prompt 1 ('q'): expected 2 scores, got 1")):
        reranker.score(["q"], [["a", "b"]])


def test_load_callable_errors(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    cases = {
        "no_colon_here": "must be 'module:function' or 'path/to/file.py:function'",
        "module:": "must be 'module:function' or 'path/to/file.py:function'",
        "larpo_no_such_module_xyz:fn": "cannot import reranker module 'larpo_no_such_module_xyz'",
        f"{tmp_path}/missing.py:fn": f"reranker file not found: {tmp_path}/missing.py",
        f"{broken}:fn": f"importing reranker file {broken} failed: RuntimeError: boom",
        f"{__name__}:no_such_fn": f"{__name__!r} has no attribute 'no_such_fn'",
        f"{__name__}:LONG_PROMPT": "'LONG_PROMPT' is a str, not callable",
    }
    for spec, message in cases.items():
        with pytest.raises(RewardError, match=re.escape(message)):
            load_callable(spec)


def test_load_reranker_rejects_plain_nonexistent_path(tmp_path):
    with pytest.raises(RewardError, match="neither an existing model directory nor"):
        load_reranker(str(tmp_path / "no_model"))


def test_table_reranker():
    table = {"q1": {"a": 1.0, "b": -2.0}, "q2": {"c": 0.5}}
    assert TableReranker(table).score(["q1", "q2"], [["b", "a"], ["c"]]) == [[-2.0, 1.0], [0.5]]
    with pytest.raises(RewardError, match=re.escape("no score for prompt 'q2', response 'zz'")):
        TableReranker(table).score(["q2"], [["c", "zz"]])
    assert TableReranker(table, default=0.0).score(["q2", "q3"], [["zz"], ["c"]]) == [[0.0], [0.0]]
    by_length = TableReranker(table, default=lambda p, r: float(len(r)))
    assert by_length.score(["q1"], [["a", "long"]]) == [[1.0, 4.0]]
    with pytest.raises(RewardError, match="non-finite score inf"):
        TableReranker({"q": {"a": math.inf}}).score(["q"], [["a"]])


# --- a tiny local Hugging Face reward model ---------------------------------------------------

CHARS = "abcdefghijklmnopqrstuvwxyz ?!.,"


def save_char_tokenizer(directory, *, with_pad: bool) -> None:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2} | {c: i + 3 for i, c in enumerate(CHARS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    special = {"pad_token": "<pad>"} if with_pad else {}
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>", **special)
    fast.save_pretrained(directory)


def save_tiny_llama(directory, *, num_labels: int = 1) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        num_labels=num_labels,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=None,
        initializer_range=0.5,
    )
    LlamaForSequenceClassification(config).save_pretrained(directory)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("rm")
    save_tiny_llama(directory)
    save_char_tokenizer(directory, with_pad=True)
    return directory


def manual_scores(model_dir, texts: list[str]) -> list[float]:
    """Score texts one at a time (no padding) with an independently loaded copy of the model."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        return [
            model(input_ids=tokenizer(t, return_tensors="pt")["input_ids"]).logits[0, 0].item() for t in texts
        ]


PROMPTS = ["what is two plus two? ", "say hi. "]
RESPONSES = [["four.", "it is four, of course!", "five"], ["hi", "hello there, friend."]]
TEXTS = [p + r for p, rs in zip(PROMPTS, RESPONSES, strict=True) for r in rs]


def test_hf_reward_model_matches_unpadded_forward(model_dir):
    rm = load_reranker(str(model_dir))
    assert isinstance(rm, HFRewardModel)
    rm.batch_size = 2  # batches mix lengths, so padding is exercised and crosses batch borders
    scores = rm.score(PROMPTS, RESPONSES)
    expected = manual_scores(model_dir, TEXTS)
    flat = [s for row in scores for s in row]
    assert [len(row) for row in scores] == [3, 2]
    assert flat == pytest.approx(expected, abs=1e-5)
    assert max(flat) - min(flat) > 1e-2  # the texts really get different scores
    assert rm.model.config.pad_token_id == 0 and rm.tokenizer.padding_side == "right"


def test_hf_reward_model_falls_back_to_eos_padding(tmp_path):
    save_tiny_llama(tmp_path)
    save_char_tokenizer(tmp_path, with_pad=False)
    rm = HFRewardModel(tmp_path, batch_size=8, device="cpu")
    assert rm.tokenizer.pad_token == "<eos>"
    assert rm.model.config.pad_token_id == 1
    expected = manual_scores(tmp_path, TEXTS)
    assert [s for row in rm.score(PROMPTS, RESPONSES) for s in row] == pytest.approx(expected, abs=1e-5)


def test_hf_reward_model_truncates_to_max_length(model_dir):
    (expected,) = manual_scores(model_dir, ["abcdef"])
    rm = HFRewardModel(model_dir, max_length=6)
    (row,) = rm.score(["abcdef"], [["ghijkl", "zzz"]])  # both keep only the prompt's 6 characters
    assert row == pytest.approx([expected, expected], abs=1e-5)


def test_hf_reward_model_load_errors(tmp_path, model_dir):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RewardError, match="is not a Hugging Face model directory"):
        load_reranker(str(tmp_path / "empty"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(RewardError, match=f"^cannot load reward model from {re.escape(str(bad))}: ") as err:
        HFRewardModel(bad)
    assert "\n" not in str(err.value)
    two = tmp_path / "two_labels"
    save_tiny_llama(two, num_labels=2)
    save_char_tokenizer(two, with_pad=True)
    with pytest.raises(RewardError, match="needs num_labels=1, got 2"):
        HFRewardModel(two)
