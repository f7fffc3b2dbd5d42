"""VLLMGenerator against TransformersGenerator on the SFT-warmed arithmetic demo model (fp32 both sides).

Needs vLLM (``pip install 'larpo[vllm]'``; on CPU see docs/vllm.md); skipped when it is not importable.
One engine is started for the module (about a minute on CPU).
"""

import json
import os

import pytest

pytest.importorskip("vllm")

import torch  # noqa: E402

from larpo.generation import SamplingParams, TransformersGenerator, VLLMGenerator  # noqa: E402
from larpo.run import run  # noqa: E402
from larpo.run.config import load_run_config  # noqa: E402
from larpo.store import read_records  # noqa: E402
from larpo.tasks.arithmetic import (  # noqa: E402
    answer_budget,
    build_model,
    build_tokenizer,
    sft,
    train_and_heldout_splits,
)

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache on CPU; the model is tiny

TRAIN, HELD_OUT = train_and_heldout_splits(2000, 50, seed=0)
MAX_NEW_TOKENS = answer_budget(HELD_OUT)
ENGINE_KWARGS = {"max_model_len": 32, "enforce_eager": True}


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    """The demo tokenizer and model after a short SFT warm-up, saved; (directory, model, tokenizer)."""
    directory = tmp_path_factory.mktemp("vllm_policy")
    tokenizer = build_tokenizer(directory)
    model = build_model(tokenizer, seed=0)
    sft(model, tokenizer, TRAIN, steps=100, batch_size=32, learning_rate=1e-3, seed=0)
    model.save_pretrained(directory)
    return directory, model.eval(), tokenizer


@pytest.fixture(scope="module")
def engine(policy):
    with VLLMGenerator(policy[0], dtype="float32", engine_kwargs=ENGINE_KWARGS) as generator:
        yield generator


@pytest.fixture(scope="module")
def reference(policy):
    _, model, tokenizer = policy
    return TransformersGenerator(model, tokenizer, batch_size=64)


def test_greedy_matches_transformers_greedy(engine, reference):
    ours = engine.greedy(HELD_OUT, MAX_NEW_TOKENS)
    theirs = reference.greedy(HELD_OUT, MAX_NEW_TOKENS)
    mismatches = [(p, a, b) for p, a, b in zip(HELD_OUT, ours, theirs, strict=True) if a != b]
    assert not mismatches, f"{len(mismatches)}/{len(HELD_OUT)} greedy outputs differ: {mismatches[:5]}"
    assert len(set(ours)) >= 5, f"the warmed-up model should answer prompts differently, got {set(ours)}"
    print(
        f"greedy agreement {len(HELD_OUT) - len(mismatches)}/{len(HELD_OUT)}, {len(set(ours))} distinct outputs"
    )


def test_finished_flags_and_token_ids_match_transformers(engine, reference):
    flags = []
    for budget in (2, MAX_NEW_TOKENS):  # 2 tokens cut most answers; the full budget lets them end
        params = SamplingParams(num_samples=1, temperature=0.0, max_new_tokens=budget)
        ours, theirs = engine.generate(HELD_OUT, params), reference.generate(HELD_OUT, params)
        assert ours.responses == theirs.responses
        assert ours.finished == theirs.finished
        assert ours.token_ids == theirs.token_ids  # with the stop token when finished, never padding
        flags += [flag for row in ours.finished for flag in row]
    assert True in flags and False in flags


def test_k_samples_per_prompt_and_temperature(engine):
    prompts, k = HELD_OUT[:10], 16
    cold = engine.generate(prompts, SamplingParams(num_samples=k, temperature=1e-4, max_new_tokens=8, seed=1))
    hot = engine.generate(prompts, SamplingParams(num_samples=k, temperature=1.5, max_new_tokens=8, seed=1))
    for result in (cold, hot):
        assert [sum(counts) for counts in result.counts] == [k] * len(prompts)
        assert sum(map(len, result.responses)) + result.duplicates == k * len(prompts)
        assert (
            [len(r) for r in result.responses]
            == [len(c) for c in result.counts]
            == [len(f) for f in result.finished]
        )
    # Near-zero temperature: (almost) every sample is the greedy one; a near-tie of two logits (within
    # ~1e-3 after 100 SFT steps) can still let the runner-up through, so allow a few such samples.
    greedy = engine.greedy(prompts, 8)
    share = sum(
        dict(zip(r, c, strict=True)).get(g, 0)
        for r, c, g in zip(cold.responses, cold.counts, greedy, strict=True)
    )
    assert share >= 0.9 * k * len(prompts), (cold.responses, cold.counts, greedy)
    assert all(r[c.index(max(c))] == g for r, c, g in zip(cold.responses, cold.counts, greedy, strict=True))
    assert sum(len(r) > 1 for r in hot.responses) >= len(prompts) // 2
    print(
        f"T=1e-4: {share}/{k * len(prompts)} samples greedy; T=1.5: distinct per prompt {[len(r) for r in hot.responses]}"
    )


def test_first_token_distribution_matches_the_softmax(engine, policy):
    """Empirical first-token frequencies of 4,000 vLLM samples vs the transformers softmax at T."""
    _, model, tokenizer = policy
    prompt, temperature, samples = HELD_OUT[0], 1.5, 4000
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=ids).logits[0, -1] / temperature, dim=-1)
    expected: dict[str, float] = {}
    for token, p in enumerate(probs.tolist()):  # special tokens decode to "" (EOS: the empty response)
        text = tokenizer.decode([token], skip_special_tokens=True)
        expected[text] = expected.get(text, 0.0) + p
    params = SamplingParams(num_samples=samples, temperature=temperature, max_new_tokens=1, seed=7)
    result = engine.generate([prompt], params)
    observed = dict(zip(result.responses[0], (c / samples for c in result.counts[0]), strict=True))
    total_variation = 0.5 * sum(abs(observed.get(t, 0.0) - expected.get(t, 0.0)) for t in expected | observed)
    assert max(expected.values()) < 0.9, "the distribution should not be degenerate at this temperature"
    assert total_variation < 0.05, (total_variation, observed, expected)
    print(f"first-token total variation distance {total_variation:.4f} over {len(expected)} strings")


def test_seeded_runs_are_reproducible(engine):
    prompts = HELD_OUT[:10]

    def run(seed):
        return engine.generate(
            prompts, SamplingParams(num_samples=8, temperature=1.5, max_new_tokens=8, seed=seed)
        )

    first, again, other = run(3), run(3), run(4)
    assert first == again
    assert first.responses != other.responses


def test_a_run_iteration_samples_with_vllm(policy, tmp_path):
    """One run iteration with ``generator: vllm``: the engine is started on the model directory,
    samples k candidates per prompt, is shut down, and training then saves the next policy."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"q{i}", "prompt": p}) + "\n" for i, p in enumerate(TRAIN[:16]))
    )
    config = load_run_config(
        None,
        [
            f"model={policy[0]}",
            f"prompts={prompts}",
            "reward=larpo.tasks.arithmetic:graded_reward",
            f"output_dir={tmp_path / 'run'}",
            "iterations=1",
            "num_candidates=4",
            f"max_new_tokens={MAX_NEW_TOKENS}",
            "generator=vllm",
            f"vllm_kwargs={json.dumps(ENGINE_KWARGS)}",
        ],
    )
    manifest = run(config)
    generated = manifest["completed"]["0"]["generate"]
    assert generated["candidates"] + generated["duplicates"] == 16 * 4
    assert len(read_records(tmp_path / "run" / "candidates" / "iter_0.jsonl")) == generated["candidates"]
    assert (tmp_path / "run" / "iter_0" / "model" / "config.json").is_file()
