"""The built-in arithmetic task: answers, splits, tokenizer, rewards, the tiny model and a short SFT."""

import pytest
import torch

from larpo.data import tokenize_list
from larpo.errors import InputError
from larpo.rewards import load_callable
from larpo.tasks.arithmetic import (
    ALPHABET,
    answer,
    answer_budget,
    build_model,
    build_tokenizer,
    exact_match,
    flawed_answer,
    graded_reward,
    make_problems,
    sft,
    train_and_heldout_splits,
)
from larpo.tasks.arithmetic.supervised import _collate, _example, _rows


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [("37+85=", "122"), ("12-47=", "-35"), ("50-50=", "0"), ("91-19=", "72"), ("123*7=", "861")],
)
def test_answer_computes_each_operator(prompt, expected):
    assert answer(prompt) == expected


@pytest.mark.parametrize("prompt", ["12/3=", "12+3", "-4+5=", "1+2=3", "a+b="])
def test_answer_rejects_what_is_not_a_problem(prompt):
    with pytest.raises(InputError, match="not an arithmetic prompt"):
        answer(prompt)


def test_splits_are_disjoint_seeded_and_large_enough():
    train, heldout = train_and_heldout_splits(12000, 1200, seed=0)
    assert (len(train), len(heldout)) == (12000, 1200)
    assert len(set(train) | set(heldout)) == 13200
    assert train_and_heldout_splits(12000, 1200, seed=0) == (train, heldout)
    other_train, other_heldout = train_and_heldout_splits(12000, 1200, seed=1)
    assert other_train != train and other_heldout != heldout


def test_mixed_problems_share_operators_equally():
    problems = make_problems(300, seed=3)
    assert [sum(op in p[1:] for p in problems) for op in "+-*"] == [100, 100, 100]
    assert all(p[3] == "*" and len(p) == 6 for p in problems if "*" in p)
    assert all(p[2] == "+" and len(p) == 6 for p in make_problems(50, seed=3, kind="add"))
    addsub = make_problems(200, seed=3, kind="addsub")
    assert [sum(op in p[1:] for p in addsub) for op in "+-*"] == [100, 100, 0]


def test_make_problems_rejects_unknown_kinds_and_too_many():
    with pytest.raises(InputError, match="unknown arithmetic kind"):
        make_problems(5, seed=0, kind="div")
    with pytest.raises(InputError, match="cannot draw 8101 problems"):
        make_problems(8101, seed=0, kind="add")
    with pytest.raises(InputError, match=r"per operator: \+ 8098"):
        make_problems(8100, seed=0, kind="add", exclude=frozenset({"10+10=", "99+99="}))


def test_make_problems_draws_around_excluded_problems():
    excluded = frozenset(make_problems(8000, seed=0, kind="add"))
    rest = make_problems(100, seed=0, kind="add", exclude=excluded)
    assert len(set(rest)) == 100 and not excluded & set(rest)
    assert make_problems(50, seed=4, exclude=frozenset()) == make_problems(50, seed=4)


def test_tokenizer_round_trips_prompt_and_answer(tokenizer):
    assert len(tokenizer) == 4 + len(ALPHABET)
    for prompt in ("123*7=", "12-47="):
        example = tokenize_list(tokenizer, prompt, [answer(prompt)])
        ids = example["prompt_ids"] + example["response_ids"][0]
        assert ids[-1] == tokenizer.eos_token_id
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == prompt + answer(prompt)


def test_exact_match_ignores_surrounding_whitespace_only():
    assert exact_match("37+85=", ["122", " 122\n", "121", "0122", "abc"]) == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_graded_reward_values_from_the_docstring():
    scores = graded_reward("37+85=", ["122", "121", "112", "22", "-122"])
    assert scores == pytest.approx([1.0, 0.7176, 0.5783, 0.4998, 0.5225], abs=1e-4)


def test_graded_reward_ranks_closer_wrong_answers_higher():
    right, near, far = graded_reward("12-47=", ["-35", "-36", "35"])
    assert right == 1.0 and right > near > far > 0.0
    assert near == pytest.approx(0.7176, abs=1e-4) and far == pytest.approx(0.5087, abs=1e-4)


def test_graded_reward_gives_zero_to_non_integers():
    assert graded_reward("37+85=", ["", "12a", "1.5", "+122", "- 1"]) == [0.0] * 5


def test_rewards_load_from_a_config_string():
    assert load_callable("larpo.tasks.arithmetic:graded_reward") is graded_reward
    assert load_callable("larpo.tasks.arithmetic:exact_match") is exact_match


def test_build_model_is_a_seeded_tiny_llama_with_head_dim_64(tokenizer):
    model = build_model(tokenizer, seed=0)
    config = model.config
    assert (config.hidden_size, config.num_attention_heads, config.head_dim) == (128, 2, 64)
    assert (config.vocab_size, config.num_hidden_layers, config.eos_token_id) == (18, 2, 2)
    weight = model.model.embed_tokens.weight
    assert torch.equal(weight, build_model(tokenizer, seed=0).model.embed_tokens.weight)
    assert not torch.equal(weight, build_model(tokenizer, seed=1).model.embed_tokens.weight)


def test_sft_sequences_mask_the_prompt(tokenizer):
    examples = [_example(tokenizer, "9-12=", "-3"), _example(tokenizer, "123*7=", "861")]
    batch = _collate(examples, tokenizer.pad_token_id)
    expected = tokenizer("123*7=861", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert batch["input_ids"][1].tolist() == expected
    assert batch["labels"][1].tolist() == [-100] * 6 + expected[6:]
    minus_three = tokenizer("-3", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert batch["labels"][0].tolist() == [-100] * 5 + minus_three + [-100] * 2
    assert batch["attention_mask"][0].tolist() == [1] * 8 + [0] * 2
    # a batch taken from the table of all examples is the batch collated alone, cut to its own width
    examples.append(_example(tokenizer, "1+1=", "2"))
    table = _collate(examples, tokenizer.pad_token_id)
    taken = _rows(table, table["attention_mask"].sum(dim=1), [2, 0])
    alone = _collate([examples[2], examples[0]], tokenizer.pad_token_id)
    assert taken.keys() == alone.keys() and all(torch.equal(taken[k], alone[k]) for k in alone)
    assert taken["input_ids"].shape == (2, 8)


def test_short_sft_lowers_the_loss_deterministically(tokenizer):
    train, heldout = train_and_heldout_splits(2000, 50, seed=0)
    history = sft(
        build_model(tokenizer, seed=0),
        tokenizer,
        train,
        steps=60,
        batch_size=32,
        learning_rate=1e-3,
        seed=0,
        eval_prompts=heldout,
        eval_every=20,
    )
    assert [record.step for record in history] == [20, 40, 60]
    assert history[0].loss - history[-1].loss > 0.4
    assert [record.accuracy for record in history] == [0.0, 0.0, 0.0]
    again = sft(
        build_model(tokenizer, seed=0), tokenizer, train, steps=20, batch_size=32, learning_rate=1e-3, seed=0
    )
    assert [(again[0].step, again[0].loss, again[0].accuracy)] == [(20, history[0].loss, None)]


def test_sft_stops_once_the_target_accuracy_is_reached(tokenizer):
    train, heldout = train_and_heldout_splits(200, 20, seed=0)
    model = build_model(tokenizer, seed=0)
    history = sft(
        model,
        tokenizer,
        train,
        steps=100,
        batch_size=8,
        learning_rate=1e-3,
        seed=0,
        eval_prompts=heldout,
        target_accuracy=0.0,
        eval_every=5,
    )
    assert [(record.step, record.accuracy) for record in history] == [(5, 0.0)]
    assert not model.training


def test_answer_budget_fits_the_longest_answer_and_eos():
    assert answer_budget(["12+3=", "999*9=", "10-99="]) == 5


def test_sft_rejects_a_target_without_eval_prompts(tokenizer):
    with pytest.raises(InputError, match="needs eval_prompts"):
        sft(
            build_model(tokenizer, seed=0),
            tokenizer,
            ["1+1="],
            steps=1,
            batch_size=1,
            learning_rate=1e-3,
            seed=0,
            target_accuracy=0.5,
        )


@pytest.mark.parametrize(
    ("prompt", "flawed"),
    [("85+37=", "112"), ("12+34=", "46"), ("99+99=", "188"), ("123*7=", "741"), ("111*2=", "222"),
     ("52-37=", "25"), ("37-85=", "-52"), ("50-50=", "0"), ("10-19=", "-9"), ("91-19=", "88")],
)  # fmt: skip
def test_flawed_answer_drops_carries_and_takes_smaller_from_larger(prompt, flawed):
    assert flawed_answer(prompt) == flawed
