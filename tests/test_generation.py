"""The generation backend: SamplingParams validation, dedup, and TransformersGenerator on tiny models."""

import pytest
import torch

from larpo.errors import InputError
from larpo.generation import Generations, SamplingParams, TransformersGenerator, deduplicate
from larpo.tiny import char_tokenizer
from tests.helpers import ALPHABET, tiny_model_and_tokenizer

ANSWERS = {"12+3=": "15", "7*8=": "56", "9-4=": "5", "20+22=": "42"}
PROMPTS = ["12+3=", "7*8=", "1=", "abc de"]


def _memorised_model():
    """A tiny model overfit on ``ANSWERS`` (loss on answer + EOS only)."""
    model, tokenizer = tiny_model_and_tokenizer()
    sequences, prompt_lengths = [], []
    for prompt, answer in ANSWERS.items():
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        sequences.append(prompt_ids + answer_ids + [tokenizer.eos_token_id])
        prompt_lengths.append(len(prompt_ids))
    width = max(map(len, sequences))
    input_ids = torch.tensor([s + [tokenizer.pad_token_id] * (width - len(s)) for s in sequences])
    attention_mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences])
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    for row, length in enumerate(prompt_lengths):
        labels[row, :length] = -100
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(150):
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.01
    return model, tokenizer


@pytest.fixture(scope="module")
def memorised():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _memorised_model()


@pytest.fixture(scope="module")
def random_model():
    """A random tiny model with large enough weights that greedy output depends on the prompt."""
    model, tokenizer = tiny_model_and_tokenizer()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.3)
    return model, tokenizer


def test_greedy_returns_the_memorised_answers_and_finishes(memorised):
    generator = TransformersGenerator(*memorised, batch_size=3)
    assert generator.greedy(list(ANSWERS), max_new_tokens=8) == list(ANSWERS.values())
    out = generator.generate(list(ANSWERS), SamplingParams(num_samples=1, temperature=0.0, max_new_tokens=8))
    assert out.finished == [[True]] * 4
    assert out.duplicates == 0


def test_confident_model_with_top_p_collapses_to_one_response_per_prompt(memorised):
    # The memorised model puts > 0.5 on each answer token, so top_p 0.5 keeps only that token.
    generator = TransformersGenerator(*memorised)
    out = generator.generate(list(ANSWERS), SamplingParams(num_samples=8, top_p=0.5, max_new_tokens=8))
    assert out.responses == [[answer] for answer in ANSWERS.values()]
    assert out.finished == [[True]] * 4
    assert out.duplicates == 4 * 7


def test_max_new_tokens_cuts_the_response_and_marks_it_unfinished(memorised):
    generator = TransformersGenerator(*memorised)
    one = generator.generate(
        ["12+3=", "9-4="], SamplingParams(num_samples=1, temperature=0.0, max_new_tokens=1)
    )
    assert (one.responses, one.finished) == ([["1"], ["5"]], [[False], [False]])
    two = generator.generate(
        ["12+3=", "9-4="], SamplingParams(num_samples=1, temperature=0.0, max_new_tokens=2)
    )
    assert (two.responses, two.finished) == ([["15"], ["5"]], [[False], [True]])  # "5" had room for EOS


def test_cut_samples_have_at_most_max_new_tokens_tokens(random_model):
    model, tokenizer = random_model
    out = TransformersGenerator(model, tokenizer).generate(
        PROMPTS, SamplingParams(num_samples=5, max_new_tokens=3)
    )
    cut = [
        r
        for rs, fs in zip(out.responses, out.finished, strict=True)
        for r, f in zip(rs, fs, strict=True)
        if not f
    ]
    assert cut
    assert all(len(tokenizer(r, add_special_tokens=False)["input_ids"]) <= 3 for r in cut)


def test_k_samples_per_prompt_before_dedup(random_model):
    out = TransformersGenerator(*random_model, batch_size=3).generate(
        PROMPTS, SamplingParams(num_samples=20, max_new_tokens=1)
    )
    assert len(out.responses) == len(out.finished) == len(PROMPTS)
    assert sum(map(len, out.responses)) + out.duplicates == 20 * len(PROMPTS)
    assert out.duplicates > 0  # 20 one-token draws from 45 tokens repeat (birthday bound; seeded)
    for responses, finished in zip(out.responses, out.finished, strict=True):
        assert len(set(responses)) == len(responses) == len(finished)


def test_deduplicate_keeps_first_occurrence_order_and_flag():
    out = deduplicate(
        [["a", "b", "a", "c", "b"], ["x", "x"]], [[False, True, True, False, False], [True, False]]
    )
    assert out == Generations(
        responses=[["a", "b", "c"], ["x"]],
        finished=[[False, True, False], [True]],
        duplicates=3,
        counts=[[2, 2, 1], [2]],
    )


def test_same_seed_same_samples_other_seed_other_samples(random_model):
    generator = TransformersGenerator(*random_model)
    params = SamplingParams(num_samples=4, temperature=1.0, max_new_tokens=6, seed=7)
    first = generator.generate(PROMPTS, params)
    torch.rand(100)  # moving the global RNG must not matter
    assert generator.generate(PROMPTS, params) == first
    other = generator.generate(
        PROMPTS, SamplingParams(num_samples=4, temperature=1.0, max_new_tokens=6, seed=8)
    )
    assert other.responses != first.responses


def test_global_rng_state_is_unchanged(random_model):
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    TransformersGenerator(*random_model).generate(PROMPTS, SamplingParams(num_samples=3, max_new_tokens=4))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(torch.rand(5), expected)


def test_left_padded_batch_equals_each_prompt_alone(random_model):
    model = random_model[0]
    tokenizer = char_tokenizer(ALPHABET)
    tokenizer.padding_side = "right"  # padding is done by hand; the tokenizer setting must not matter
    generator = TransformersGenerator(model, tokenizer, batch_size=len(PROMPTS))
    alone = [generator.greedy([prompt], max_new_tokens=8)[0] for prompt in PROMPTS]
    assert len(set(alone)) == len(PROMPTS)  # the outputs depend on the prompt, so a mix-up would show
    assert generator.greedy(PROMPTS, max_new_tokens=8) == alone
    assert tokenizer.padding_side == "right"


def test_generate_call_arguments_eval_mode_and_training_flag_restored(random_model, monkeypatch):
    model, tokenizer = random_model
    calls = []
    original = model.generate

    def spy(**kwargs):
        calls.append({"training": model.training, "grad": torch.is_grad_enabled(), **kwargs})
        return original(**kwargs)

    monkeypatch.setattr(model, "generate", spy)
    generator = TransformersGenerator(model, tokenizer, batch_size=3)
    model.train()
    generator.generate(PROMPTS, SamplingParams(num_samples=2, temperature=0.7, top_p=0.9, max_new_tokens=5))
    assert model.training and all(module.training for module in model.modules())
    # 2 samples of each prompt: the rows are repeated per sample, in prompt order
    assert [call["input_ids"].shape[0] for call in calls] == [6, 2]
    first = calls[0]
    assert (first["training"], first["grad"]) == (False, False)
    prompt_row = [0] + tokenizer("7*8=", add_special_tokens=False)["input_ids"]
    assert first["input_ids"][2].tolist() == first["input_ids"][3].tolist() == prompt_row
    assert first["attention_mask"][2].tolist() == [0, 1, 1, 1, 1]
    expected = {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 0}
    expected |= {"max_new_tokens": 5, "pad_token_id": 0, "eos_token_id": 2}
    assert {key: first[key] for key in expected} == expected

    model.eval()
    calls.clear()
    generator.greedy(["1="], max_new_tokens=3)
    assert not model.training
    assert calls[0]["do_sample"] is False and "temperature" not in calls[0]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"num_samples": 2, "temperature": 0.0}, "temperature 0"),
        ({"num_samples": 0}, "num_samples"),
        ({"num_samples": 1, "top_p": 0.0}, "top_p"),
        ({"num_samples": 1, "top_p": 1.5}, "top_p"),
        ({"num_samples": 1, "max_new_tokens": 0}, "max_new_tokens"),
        ({"num_samples": 1, "temperature": -0.5}, "temperature"),
        ({"num_samples": 1.5}, "num_samples"),
    ],
)
def test_sampling_params_validation(kwargs, field):
    with pytest.raises(InputError, match=field):
        SamplingParams(**kwargs)


def test_greedy_with_one_sample_is_valid():
    assert SamplingParams(num_samples=1, temperature=0.0).greedy


def test_empty_prompt_is_an_input_error(random_model):
    with pytest.raises(InputError, match="prompt 2 "):  # counted from 1
        TransformersGenerator(*random_model).generate(["1=", ""], SamplingParams(num_samples=1))


def test_samples_from_the_shared_prompt_cache_are_those_of_the_plain_call(random_model):
    model, tokenizer = random_model
    prompts = [*PROMPTS, "5", "123456789+1="]  # one-token and long prompts: left padding on both sides
    params = SamplingParams(num_samples=6, temperature=1.0, max_new_tokens=6, seed=3)
    shared = TransformersGenerator(model, tokenizer, batch_size=4).generate(prompts, params)
    plain = TransformersGenerator(model, tokenizer, batch_size=4, share_prompt_cache=False).generate(
        prompts, params
    )
    assert shared.token_ids == plain.token_ids
    assert (shared.responses, shared.counts) == (plain.responses, plain.counts)
    distinct = {tuple(map(tuple, ids)) for ids in plain.token_ids}
    assert len(distinct) == len(prompts)  # the samples depend on the prompt, so a mix-up would show


def test_generate_gets_the_prompts_encoded_once_but_their_last_token(random_model, monkeypatch):
    model, tokenizer = random_model
    caches = []
    original = model.generate

    def spy(**kwargs):
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        caches.append((cache.get_seq_length(), cache.layers[0].keys.shape[0]))
        return original(**kwargs)

    monkeypatch.setattr(model, "generate", spy)
    TransformersGenerator(model, tokenizer, batch_size=3).generate(PROMPTS, SamplingParams(num_samples=4))
    widest = [max(len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in batch)
              for batch in (PROMPTS[:3], PROMPTS[3:])]  # fmt: skip
    assert caches == [(widest[0] - 1, 3 * 4), (widest[1] - 1, 4)]


def test_a_static_cache_model_samples_without_the_shared_prompt_cache(random_model, monkeypatch):
    model, tokenizer = random_model
    calls = []
    original = model.generate
    monkeypatch.setattr(model, "generate", lambda **kwargs: calls.append(kwargs) or original(**kwargs))
    monkeypatch.setattr(model.generation_config, "cache_implementation", "static")
    TransformersGenerator(model, tokenizer, batch_size=4).generate(PROMPTS, SamplingParams(num_samples=2))
    assert [(call["input_ids"].shape[0], call["num_return_sequences"]) for call in calls] == [(4, 2)]
    assert not any(key in calls[0] for key in ("cache", "past_key_values"))


def test_a_cache_that_cannot_be_repeated_turns_the_shared_prompt_cache_off_once(random_model, monkeypatch):
    import larpo.generation.transformers_backend as backend

    model, tokenizer = random_model
    checked, calls = [], []
    monkeypatch.setattr(backend, "shareable_cache", lambda cache: checked.append(cache) or False)
    original = model.generate
    monkeypatch.setattr(model, "generate", lambda **kwargs: calls.append(kwargs) or original(**kwargs))
    generator = TransformersGenerator(model, tokenizer, batch_size=2)
    generator.generate(PROMPTS, SamplingParams(num_samples=3))
    assert len(checked) == 1 and not generator.share_prompt_cache  # one prefix pass, not one per batch
    assert [(call["input_ids"].shape[0], call["num_return_sequences"]) for call in calls] == [(2, 3), (2, 3)]
