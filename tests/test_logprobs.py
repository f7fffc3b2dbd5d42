from types import SimpleNamespace

import pytest
import torch

from larpo.data import ListCollator, tokenize_list
from larpo.errors import InputError
from larpo.logprobs import list_logps, shared_prefix_logps
from tests.helpers import tiny_model_and_tokenizer


def slow_logp(model, prompt_ids, response_ids):
    """One sequence at a time, no padding: sum over response positions of log softmax."""
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]
    total = 0.0
    for t in range(len(prompt_ids), len(prompt_ids) + len(response_ids)):
        total += torch.log_softmax(logits[t - 1], dim=-1)[ids[0, t]].item()
    return total


def test_batched_logps_match_per_sequence_loop():
    model, tokenizer = tiny_model_and_tokenizer()
    model.eval()
    examples = [
        tokenize_list(tokenizer, "12+7=", ["19", "18", "1900"]),
        tokenize_list(tokenizer, "3+4=", ["7", "77777"]),  # shorter list: padded slot
        tokenize_list(tokenizer, "100+200=", ["300", "30", "3", "3000000"]),
    ]
    batch = ListCollator(pad_token_id=tokenizer.pad_token_id)(examples)
    with torch.no_grad():
        logps, lengths = list_logps(model, batch)
    assert logps.shape == (3, 4)
    assert batch["list_mask"].tolist() == [[True, True, True, False], [True, True, False, False], [True] * 4]
    for row, example in enumerate(examples):
        for col, response in enumerate(example["response_ids"]):
            expected = slow_logp(model, example["prompt_ids"], response)
            assert abs(logps[row, col].item() - expected) < 1e-4
            assert lengths[row, col].item() == len(response)  # digits + EOS
    assert logps[1, 2:].eq(0).all() and lengths[1, 2:].eq(0).all()


def test_scores_sort_candidates_best_first_and_collate_with_padding():
    _, tokenizer = tiny_model_and_tokenizer()
    example = tokenize_list(tokenizer, "1+1=", ["3", "2", "4"], scores=[0.5, 1.0, -2.0])
    assert [tokenizer.decode(r[:-1]) for r in example["response_ids"]] == ["2", "3", "4"]
    assert example["scores"] == [1.0, 0.5, -2.0]
    other = tokenize_list(tokenizer, "2+2=", ["4", "5"], scores=[1.0, 0.0])
    batch = ListCollator(pad_token_id=0)([example, other])
    assert batch["scores"].tolist() == [[1.0, 0.5, -2.0], [1.0, 0.0, 0.0]]
    assert "reference_logps" not in batch
    # prompt tokens are not scored; the response and its EOS are
    assert batch["response_mask"][0].sum().item() == 2


def test_a_list_without_reference_log_probs_collates_to_zeros_beside_lists_with_them():
    """Reference log-probs are left out only for lists that cannot train: a batch that mixes them keeps the
    others' values in their rows; a batch where none has them carries none."""
    _, tokenizer = tiny_model_and_tokenizer()
    with_values = {
        **tokenize_list(tokenizer, "1+1=", ["2", "3"], scores=[1.0, 0.0]),
        "reference_logps": [-1.5, -2.5],
    }
    without = {**tokenize_list(tokenizer, "2+2=", ["5", "6", "7"], scores=[0.0] * 3), "reference_logps": None}
    batch = ListCollator(pad_token_id=0)([without, with_values])
    assert batch["reference_logps"].tolist() == [[0.0, 0.0, 0.0], [-1.5, -2.5, 0.0]]
    assert batch["list_mask"].tolist() == [[True, True, True], [True, True, False]]
    assert "reference_logps" not in ListCollator(pad_token_id=0)(
        [without, {**with_values, "reference_logps": None}]
    )


def test_max_length_truncates_responses_and_rejects_long_prompts():
    _, tokenizer = tiny_model_and_tokenizer()
    example = tokenize_list(tokenizer, "1+1=", ["2222222"])
    example["response_ids"].append(example["response_ids"][0])
    batch = ListCollator(pad_token_id=0, max_length=6)([example])
    assert batch["input_ids"].shape == (2, 6) and batch["response_mask"][0].sum().item() == 2
    try:
        ListCollator(pad_token_id=0, max_length=4)([example])
    except ValueError as error:
        assert "prompt of 4 tokens does not fit max_length=4" in str(error)
    else:
        raise AssertionError("expected ValueError")


class FullLogitsOnly(torch.nn.Module):
    """A causal LM without ``logits_to_keep`` in its signature: always returns every position's logits."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask=None, use_cache=False):
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=use_cache).logits
        return SimpleNamespace(logits=logits)


def test_logits_only_after_the_prompt_match_full_logits():
    model, tokenizer = tiny_model_and_tokenizer()
    model.eval()
    examples = [
        tokenize_list(tokenizer, "123456+7=", ["19", "18", "1900"]),
        tokenize_list(tokenizer, "100003+4=", ["7", "77777"]),
    ]
    batch = ListCollator(pad_token_id=tokenizer.pad_token_id)(examples)
    widths = []
    handle = model.lm_head.register_forward_hook(lambda _module, _inputs, out: widths.append(out.shape[1]))
    full = FullLogitsOnly(model)
    with torch.no_grad():
        kept, kept_lengths = list_logps(model, batch)
        reference, reference_lengths = list_logps(full, batch)
    handle.remove()
    width = batch["input_ids"].shape[1]
    assert widths == [width - 8, width]  # prompts of 9 tokens: logits from position 8 (predicts token 9) on
    assert torch.allclose(kept, reference, atol=1e-5)
    assert torch.equal(kept_lengths, reference_lengths)


def _shared_prefix_batch(tokenizer):
    examples = [
        tokenize_list(tokenizer, "12+7=", ["19", "18", "1900"]),
        tokenize_list(tokenizer, "3+4=", ["7", "77777"]),  # shorter prompt, shorter list
        tokenize_list(tokenizer, "100+200=", ["300", "30", "3", "3000000"]),
        tokenize_list(tokenizer, "5-5=", ["0"]),  # a list of one
    ]
    return ListCollator(pad_token_id=tokenizer.pad_token_id)(examples)


def test_shared_prefix_matches_one_pass_per_candidate_in_value_and_gradient():
    model, tokenizer = tiny_model_and_tokenizer()
    batch = _shared_prefix_batch(tokenizer)
    calls = []
    handle = model.model.register_forward_hook(lambda _m, _i, out: calls.append(out.last_hidden_state.shape))
    grads = []
    for shared in (False, True):
        model.zero_grad()
        logps, lengths = list_logps(model, batch, shared_prefix=shared)
        (logps * torch.arange(1.0, logps.numel() + 1).view_as(logps)).sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        if shared:
            shared_logps, shared_lengths = logps, lengths
        else:
            plain_logps, plain_lengths = logps, lengths
    handle.remove()
    assert torch.allclose(shared_logps, plain_logps, atol=1e-5)
    assert torch.equal(shared_lengths, plain_lengths)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(*grads, strict=True))
    # plain: 10 sequences of 14 tokens; shared: 4 prefixes ("12+7" is the longest of "1","3","100+200")
    # of 7 tokens, then 10 suffixes of last prompt token + response (+EOS), at most 1 + 7 + 1 = 9 tokens
    n, width = batch["input_ids"].shape
    assert calls == [(n, width, 32), (4, 7, 32), (n, 9, 32)]


def test_shared_prefix_falls_back_where_the_model_cannot_take_it():
    model, tokenizer = tiny_model_and_tokenizer()
    model.eval()
    batch = _shared_prefix_batch(tokenizer)
    inputs = (
        batch["input_ids"],
        batch["attention_mask"],
        batch["response_mask"],
        batch["list_mask"].nonzero()[:, 0],
    )
    with torch.no_grad():
        expected, _ = list_logps(model, batch)
        assert shared_prefix_logps(FullLogitsOnly(model), *inputs) is None  # no logits_to_keep: falls back
        no_keep, _ = list_logps(FullLogitsOnly(model), batch, shared_prefix=True)
        getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
        assert shared_prefix_logps(model, *inputs) is None  # checkpointing re-runs forward without a cache
        checkpointed, _ = list_logps(model, batch, shared_prefix=True)
    assert torch.allclose(no_keep, expected, atol=1e-5)
    assert torch.allclose(checkpointed, expected, atol=1e-5)


def test_response_logps_groups_same_prompt_pairs_and_keeps_input_order():
    from larpo.reference import response_logps

    model, tokenizer = tiny_model_and_tokenizer()
    model.eval()
    pairs = [
        ("12+7=", "19"),
        ("12+7=", "18"),
        ("12+7=", "1900"),
        ("3+4=", "7"),
        ("12+7=", "9"),
        ("3+4=", "77"),
    ]
    expected = [
        slow_logp(model, tokenizer(p, add_special_tokens=False)["input_ids"],
                  tokenizer(r, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
        for p, r in pairs
    ]  # fmt: skip
    for batch_size in (1, 2, 256):  # lists split across batches, batches of whole lists, one batch
        got = response_logps(model, tokenizer, pairs, batch_size=batch_size)
        assert got == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("shared", [False, True])
def test_chunked_logps_match_unchunked_in_value_and_gradient_and_bound_the_head(shared):
    model, tokenizer = tiny_model_and_tokenizer()
    batch = _shared_prefix_batch(tokenizer)
    n = int(batch["list_mask"].sum())  # 10 sequences
    head_rows = []
    handle = model.lm_head.register_forward_hook(
        lambda _m, _i, out: head_rows.append(out.reshape(-1, out.shape[-1]).shape[0])
    )
    results = {}
    for chunk in (0, 3, 7, 10_000):
        model.zero_grad()
        head_rows.clear()
        logps, lengths = list_logps(model, batch, shared_prefix=shared, chunk_size=chunk)
        (logps * torch.arange(1.0, logps.numel() + 1).view_as(logps)).sum().backward()
        results[chunk] = (
            logps.detach(),
            lengths,
            [p.grad.clone() for p in model.parameters()],
            list(head_rows),
        )
    handle.remove()
    plain_logps, plain_lengths, plain_grads, plain_rows = results[0]
    prefix = [4] if shared else []  # shared: first the 4 prompts' prefixes, last position only
    for chunk in (3, 7, 10_000):
        logps, lengths, grads, rows = results[chunk]
        assert torch.allclose(logps, plain_logps, atol=1e-5)
        assert torch.equal(lengths, plain_lengths)
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grads, plain_grads, strict=True))
        # the model's own head call and the check see the n last positions; then chunks of at most
        # `chunk` positions, each run twice (forward, then recomputed in backward)
        skip = len(prefix) + 2
        assert rows[:skip] == prefix + [n, n]
        assert max(rows[skip:]) <= chunk
        # the positions of the unchunked call but the last of each sequence, twice
        assert sum(rows[skip:]) == 2 * (plain_rows[-1] - n)
    # unchunked: one head call over every kept position of every sequence
    assert plain_rows[:-1] == prefix and plain_rows[-1] > 3 * n


def test_chunked_logps_refuse_a_model_with_soft_capped_logits():
    model, tokenizer = tiny_model_and_tokenizer()
    batch = _shared_prefix_batch(tokenizer)

    def soft_cap(_module, _inputs, output):
        output.logits = 2.0 * torch.tanh(output.logits / 2.0)
        return output

    model.register_forward_hook(soft_cap)
    with pytest.raises(InputError, match="set logprob_chunk_size to 0"):
        list_logps(model, batch, chunk_size=4)


def test_shared_prefix_gradients_are_bitwise_reproducible_on_two_threads():
    """The prefix cache is expanded to the candidates without a scatter-add in backward, so the same
    batch gives the same gradient bit for bit on a multi-threaded CPU. (Advanced indexing with repeated
    rows accumulated its gradient with atomic adds across threads, in an order that varied from run to
    run; two trainings on the same lists drifted apart by a point of held-out accuracy in six iterations.)"""
    model, tokenizer = tiny_model_and_tokenizer(hidden_size=128)
    # one long list: every candidate's gradient flows into the same prefix cache rows
    examples = [tokenize_list(tokenizer, "123*45=", [str(5535 + d) for d in range(64)])]
    batch = ListCollator(pad_token_id=tokenizer.pad_token_id)(examples)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    grads = []
    try:
        for _ in range(6):
            model.zero_grad()
            logps, _ = list_logps(model, batch, shared_prefix=True)
            (logps * torch.linspace(0.5, 1.5, logps.numel()).view_as(logps)).sum().backward()
            grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(grads[0], g) for g in grads[1:])
