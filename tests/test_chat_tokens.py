"""Sampled token ids end to end on the real SmolLM2 vocabulary: generation stops at ``<|im_end|>`` and keeps
its ids, lists score exactly the sampled tokens, truncated samples get no end token, the store keeps them."""

import json

import pytest
import torch

from larpo.chat import ChatFormat
from larpo.data import ListCollator, tokenize_list
from larpo.generation import SamplingParams, TransformersGenerator, deduplicate
from larpo.logprobs import list_logps
from larpo.losses import get_objective, pairwise_loss
from larpo.reference import response_logps
from larpo.store import CandidateRecord, StoreError
from tests.helpers import smollm2_tokenizer, tiny_chat_llama

IM_END, ENDOFTEXT = 2, 0


@pytest.fixture(scope="module")
def tokenizer():
    return smollm2_tokenizer()


@pytest.fixture(scope="module")
def prompt(tokenizer):
    return ChatFormat(tokenizer).render("Say hello.")


def manual_logp(model, tokenizer, prompt, response_ids):
    """Summed log-prob of ``response_ids`` after ``prompt``, from one plain forward pass."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + list(response_ids)])
    with torch.no_grad():
        logps = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
    targets = ids[0, 1:]
    return logps[torch.arange(len(targets)), targets][len(prompt_ids) - 1 :].sum().item()


def biased_head(model, token_id, bias):
    """Give the LM head a bias that favours ``token_id`` by ``bias`` logits."""
    head = model.lm_head
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
        biased.bias[token_id] = bias
    model.lm_head = biased
    return model


def test_generation_stops_at_im_end_when_eos_is_another_token(prompt):
    tokenizer = smollm2_tokenizer()
    tokenizer.eos_token = "<|endoftext|>"  # so only the template's end-of-turn token can stop <|im_end|>
    model = biased_head(tiny_chat_llama(tokenizer), IM_END, 10.5)  # p(<|im_end|>) about 0.4
    model.generation_config.eos_token_id = ENDOFTEXT
    generator = TransformersGenerator(model, tokenizer, batch_size=2)
    assert generator.stop_ids == [ENDOFTEXT, IM_END]
    out = generator.generate([prompt, prompt + "x"], SamplingParams(num_samples=24, max_new_tokens=4, seed=3))
    flat = [
        (t, d, ids)
        for row in zip(out.responses, out.finished, out.token_ids, strict=True)
        for t, d, ids in zip(*row, strict=True)
    ]
    lengths = {len(ids) for _, done, ids in flat if done}
    assert any(done for _, done, _ in flat) and any(not done for _, done, _ in flat)
    assert len(lengths) > 1  # stopped after different numbers of steps
    for text, done, ids in flat:
        if done:
            assert ids[-1] == IM_END and IM_END not in ids[:-1] and ENDOFTEXT not in ids
        else:
            assert len(ids) == 4 and IM_END not in ids
        assert text == tokenizer.decode([i for i in ids if i != IM_END], skip_special_tokens=True)
        assert "<|im_end|>" not in text


def test_greedy_stop_at_first_step_gives_empty_finished_response(prompt, tokenizer):
    model = biased_head(tiny_chat_llama(tokenizer), IM_END, 50.0)
    out = TransformersGenerator(model, tokenizer).generate([prompt], SamplingParams(1, 0.0, max_new_tokens=5))
    assert (out.responses, out.finished, out.token_ids) == ([[""]], [[True]], [[[IM_END]]])


def test_deduplicate_keeps_ids_aligned_with_texts():
    out = deduplicate([["a", "b", "a"]], [[True, False, True]], [[[5, 2], [6], [7, 8, 2]]])
    assert (out.responses, out.finished, out.token_ids, out.counts) == (
        [["a", "b"]],
        [[True, False]],
        [[[5, 2], [6]]],
        [[2, 1]],
    )


def split_hello(tokenizer):
    """Ids of "hello" sampled as two tokens, where the tokenizer encodes it as one token."""
    pieces = tokenizer.convert_tokens_to_ids(["hel", "lo"])
    assert tokenizer.decode(pieces) == "hello"
    assert tokenizer("hello", add_special_tokens=False)["input_ids"] != pieces
    return pieces


def test_sampled_ids_are_scored_not_their_retokenization(tokenizer, prompt):
    model = tiny_chat_llama(tokenizer, scale=0.2)
    sampled = [*split_hello(tokenizer), IM_END]
    example = tokenize_list(tokenizer, prompt, ["hello"], response_ids=[sampled], end_token_id=IM_END)
    assert example["response_ids"] == [sampled]
    [from_ids] = response_logps(model, tokenizer, [(prompt, "hello")], response_ids=[sampled])
    [from_text] = response_logps(model, tokenizer, [(prompt, "hello")], end_token_id=IM_END)
    assert from_ids == pytest.approx(manual_logp(model, tokenizer, prompt, sampled), abs=1e-4)
    retokenized = tokenizer("hello", add_special_tokens=False)["input_ids"] + [IM_END]
    assert from_text == pytest.approx(manual_logp(model, tokenizer, prompt, retokenized), abs=1e-4)
    assert abs(from_ids - from_text) > 1e-2


def test_end_tokens_of_text_responses(tokenizer, prompt):
    end = ChatFormat(tokenizer).end_token_id
    hello = tokenizer("hello", add_special_tokens=False)["input_ids"]
    example = tokenize_list(
        tokenizer,
        prompt,
        ["hello", "hello", "hello"],
        [0.0, 2.0, 1.0],
        response_ids=[None, None, [9, 10]],
        finished=[True, False, False],
        end_token_id=end,
    )
    # best first: the truncated text (no end token), the truncated sampled ids as they are, the finished text
    assert example["response_ids"] == [hello, [9, 10], hello + [IM_END]]
    assert example["scores"] == [2.0, 1.0, 0.0]


def test_mixed_list_log_probs_follow_input_order(tokenizer, prompt):
    model = tiny_chat_llama(tokenizer, scale=0.2)
    sampled = [*split_hello(tokenizer), IM_END]
    pairs = [(prompt, "hello"), (prompt, "hello"), (prompt, "bye")]
    values = response_logps(
        model,
        tokenizer,
        pairs,
        response_ids=[None, sampled, None],
        finished=[False, True, True],
        end_token_id=IM_END,
        batch_size=2,
    )
    hello = tokenizer("hello", add_special_tokens=False)["input_ids"]
    bye = tokenizer("bye", add_special_tokens=False)["input_ids"] + [IM_END]
    wanted = [manual_logp(model, tokenizer, prompt, ids) for ids in (hello, sampled, bye)]
    assert values == pytest.approx(wanted, abs=1e-4)


def test_two_sampled_candidates_equal_dpo(tokenizer, prompt):
    policy, reference = (
        tiny_chat_llama(tokenizer, seed=0, scale=0.2),
        tiny_chat_llama(tokenizer, seed=1, scale=0.2),
    )
    chosen, rejected = [*split_hello(tokenizer), IM_END], tokenizer.convert_tokens_to_ids(["by", "e"])
    example = tokenize_list(tokenizer, prompt, ["hello", "bye"], [1.0, 0.0], response_ids=[chosen, rejected])
    batch = ListCollator(pad_token_id=tokenizer.pad_token_id)([example])
    with torch.no_grad():
        policy_logps, _ = list_logps(policy, batch)
        reference_logps, _ = list_logps(reference, batch)
    loss = get_objective("contrastive")(policy_logps, reference_logps, 0.5, batch["list_mask"])
    margin = sum(
        sign * (manual_logp(policy, tokenizer, prompt, ids) - manual_logp(reference, tokenizer, prompt, ids))
        for sign, ids in ((1, chosen), (-1, rejected))
    )
    assert loss.item() == pytest.approx(
        -torch.nn.functional.logsigmoid(torch.tensor(0.5 * margin)).item(), abs=1e-4
    )
    assert loss.item() == pytest.approx(pairwise_loss(policy_logps, reference_logps, 0.5).item(), abs=1e-6)


def test_record_keeps_response_ids_and_finished():
    record = CandidateRecord(
        "p1", "prompt", "hello", 1.0, 0, 1.0, source="policy", response_ids=[5, 2], finished=True
    )
    line = record.to_json()
    assert json.loads(line)["response_ids"] == [5, 2] and json.loads(line)["finished"] is True
    assert CandidateRecord.from_json(line) == record
    old = '{"prompt_id": "p1", "prompt": "x", "response": "y", "score": null, "iteration": 0, "temperature": 1.0}'
    parsed = CandidateRecord.from_json(old)
    assert (parsed.response_ids, parsed.finished) == (None, None)
    assert "response_ids" not in parsed.to_json() and "finished" not in parsed.to_json()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("response_ids", [1, "2"], "list of token ids"),
        ("response_ids", [-1], "list of token ids"),
        ("response_ids", "12", "list of token ids"),
        ("response_ids", [True], "list of token ids"),
        ("finished", 1, "'finished' must be a bool"),
    ],
)
def test_record_rejects_bad_token_fields(field, value, message):
    data = {
        "prompt_id": "p",
        "prompt": "x",
        "response": "y",
        "score": None,
        "iteration": 0,
        "temperature": 1.0,
        field: value,
    }
    with pytest.raises(StoreError, match=message):
        CandidateRecord.from_dict(data, where="line 3")


@pytest.fixture(scope="module")
def chat_reward_dir(tmp_path_factory, tokenizer):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    directory = tmp_path_factory.mktemp("chat_rm")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForSequenceClassification(config)
        with torch.no_grad():
            model.model.embed_tokens.weight.normal_(0.0, 1.0)
            model.score.weight.normal_(0.0, 1.0)
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory


def direct_score(rm, text, add_special_tokens):
    ids = rm.tokenizer(text, add_special_tokens=add_special_tokens, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return rm.model(input_ids=ids).logits[0, 0].item()


def test_reward_model_scores_the_conversation_in_its_template(chat_reward_dir, tokenizer):
    from larpo.rewards import HFRewardModel

    rm = HFRewardModel(chat_reward_dir, batch_size=2, device="cpu")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    prompts, responses = ["Say hi.", messages], [["hi", "hello there, friend"], ["4"]]
    conversations = [
        [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "hi"}],
        [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "hello there, friend"}],
        [*messages, {"role": "assistant", "content": "4"}],
    ]
    texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in conversations]
    assert [rm.format(p, r) for p, rs in zip(prompts, responses, strict=True) for r in rs] == texts
    assert texts[0].endswith("<|im_start|>assistant\nhi<|im_end|>\n")
    scores = [s for row in rm.score(prompts, responses) for s in row]
    assert scores == pytest.approx([direct_score(rm, t, False) for t in texts], abs=1e-5)
    assert max(scores) - min(scores) > 1e-3

    plain = HFRewardModel(chat_reward_dir, device="cpu", chat_template="none")
    assert plain.format("Say hi.", "hi") == "Say hi.hi"
    assert plain.score(["Say hi."], [["hi"]])[0] == pytest.approx(
        [direct_score(plain, "Say hi.hi", True)], abs=1e-5
    )


def test_tokenize_chat_list_renders_once_and_ends_turns(tokenizer, prompt):
    from larpo.data import tokenize_chat_list
    from larpo.tiny import char_tokenizer
    from tests.helpers import ALPHABET

    chat = ChatFormat(tokenizer)
    hello = tokenizer("hello", add_special_tokens=False)["input_ids"]
    example = tokenize_chat_list(chat, "Say hello.", ["hello", "hel"], [0.0, 1.0], finished=[True, False])
    assert example["prompt_ids"] == tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert example["response_ids"] == [
        tokenizer("hel", add_special_tokens=False)["input_ids"],
        hello + [IM_END],
    ]
    assert tokenize_chat_list(chat, prompt, ["hello"]) == tokenize_list(
        tokenizer, prompt, ["hello"], end_token_id=IM_END
    )
    chars = char_tokenizer(ALPHABET)  # no template: exactly the plain tokenize_list of today
    assert tokenize_chat_list(ChatFormat(chars), "12+3=", ["15", "16"], [0.0, 1.0]) == tokenize_list(
        chars, "12+3=", ["15", "16"], [0.0, 1.0]
    )


def test_lists_tokenized_from_one_batched_call_equal_those_tokenized_one_by_one(tokenizer, prompt):
    from larpo.data import encode_texts, untokenized_texts

    responses, ids = [" 42", "forty-two", "4 2\n", "hello"], [None, None, None, [9, 10, IM_END]]
    texts = untokenized_texts(prompt, responses, ids)
    assert texts == [prompt, " 42", "forty-two", "4 2\n"]  # sampled ids are not tokenized again
    encoded = encode_texts(tokenizer, texts + texts)
    assert list(encoded) == texts
    options = {"response_ids": ids, "finished": [True, False, True, True], "end_token_id": IM_END}
    one_by_one = tokenize_list(tokenizer, prompt, responses, [0.0, 3.0, 1.0, 2.0], **options)

    class NoCalls:  # the tokenizer is only asked for the end token
        eos_token_id = tokenizer.eos_token_id

        def __call__(self, *args, **kwargs):
            raise AssertionError("tokenized again")

    batched = tokenize_list(NoCalls(), prompt, responses, [0.0, 3.0, 1.0, 2.0], encoded=encoded, **options)
    assert batched == one_by_one
    assert one_by_one["response_ids"][0] == tokenizer("forty-two", add_special_tokens=False)["input_ids"]
    batched["prompt_ids"].append(0)  # an example's ids are its own, not the shared encoded ones
    assert encoded[prompt] == one_by_one["prompt_ids"]
