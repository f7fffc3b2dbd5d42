"""`larpo run` on a chat model: a tiny random Llama with the real SmolLM2 tokenizer and ChatML template,
message-list prompts and a rule-based reward that must receive them as message lists."""

import io
import json
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from rich.console import Console

import larpo.run.train
from larpo.candidates import split_samples, temperature_for
from larpo.generation import TransformersGenerator
from larpo.model_io import load_policy
from larpo.run import run as run_larpo
from larpo.run.config import load_run_config
from larpo.run.generate import sampling_params
from larpo.store import read_records
from tests.helpers import (
    STAGE_FILES,
    larpo_run,
    run_cli,
    settings,
    smollm2_tokenizer,
    snapshot,
    tiny_chat_llama,
)

REWARD = str(Path(__file__).with_name("rewards_for_tests.py")) + ":chat_length"
QUESTIONS = ["What is 2 + 3?", "Name a colour.", "What is 10 - 4?", "Say hi."]
BATCH = 2  # prompts per generation chunk


@pytest.fixture(scope="module")
def chat_workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat")
    tokenizer = smollm2_tokenizer()
    tiny_chat_llama(tokenizer, scale=0.2).save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    messages = [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": q}] for q in QUESTIONS
    ]
    with open(root / "prompts.jsonl", "w") as handle:
        for i, prompt in enumerate(messages):
            handle.write(json.dumps({"id": f"c{i}", "prompt": prompt}) + "\n")
    return root, tokenizer, messages


def chat_settings(root, run_dir):
    return [f"model={root / 'model'}", f"prompts={root / 'prompts.jsonl'}", f"reward={REWARD}",
            f"output_dir={run_dir}", "iterations=2", "num_candidates=3", "max_new_tokens=6",
            "learning_rate=1e-3", "batch_size=4", f"generation_batch_size={BATCH}"]  # fmt: skip


@pytest.fixture(scope="module")
def chat_run(chat_workspace, tmp_path_factory):
    """An uninterrupted chat run (in-process), with the examples its train stage tokenized."""
    root, _, _ = chat_workspace
    run_dir = tmp_path_factory.mktemp("chat_run") / "run"
    trained = []
    original = larpo.run.train.tokenize_list

    def recording(*args, **kwargs):
        trained.append((args[1], kwargs.get("response_ids"), example := original(*args, **kwargs)))
        return example

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(larpo.run.train, "tokenize_list", recording)
        run_larpo(load_run_config(None, chat_settings(root, run_dir)))
    return run_dir, trained


def test_stored_prompts_are_the_chat_template_rendering(chat_workspace, chat_run):
    _, tokenizer, messages = chat_workspace
    run_dir, _ = chat_run
    expected = {f"c{i}": tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False)
                for i, m in enumerate(messages)}  # fmt: skip
    for s in (0, 1):
        records = read_records(run_dir / "candidates" / f"iter_{s}.jsonl")
        assert {r.prompt_id for r in records} == set(expected)
        for record in records:
            assert record.prompt == expected[record.prompt_id]
            assert record.prompt.endswith("<|im_start|>assistant\n")


def test_records_keep_the_ids_the_generator_returned(chat_workspace, chat_run):
    root, tokenizer, _ = chat_workspace
    run_dir, _ = chat_run
    config = load_run_config(None, chat_settings(root, run_dir))
    records = read_records(run_dir / "candidates" / "iter_0.jsonl")
    model = load_policy(root / "model")[0].eval()
    generator = TransformersGenerator(model, tokenizer, batch_size=BATCH)
    assert generator.stop_ids == [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    mix = split_samples(config.num_candidates, [temperature_for(0, config.temperature)])
    prompts = sorted({r.prompt_id: r.prompt for r in records}.items())
    for index in range(len(prompts) // BATCH):
        chunk = prompts[index * BATCH : (index + 1) * BATCH]
        (params,) = sampling_params(SimpleNamespace(config=config), 0, index, mix)
        generations = generator.generate([text for _, text in chunk], params)
        for (prompt_id, _), responses, ids, flags in zip(
            chunk, generations.responses, generations.token_ids, generations.finished, strict=True
        ):
            stored = [r for r in records if r.prompt_id == prompt_id]
            assert [r.response for r in stored] == responses
            assert [r.response_ids for r in stored] == ids
            assert [r.finished for r in stored] == flags
    assert all(0 < len(r.response_ids) <= 6 for r in records)


def manual_logp(model, prompt_ids, response_ids):
    """Summed log-prob of ``response_ids`` after ``prompt_ids``: one plain forward pass."""
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float()
    return logits.log_softmax(-1).gather(1, torch.tensor(response_ids)[:, None]).sum().item()


def test_reference_and_training_use_the_sampled_ids(chat_workspace, chat_run):
    root, tokenizer, _ = chat_workspace
    run_dir, trained = chat_run
    model = load_policy(root / "model")[0].eval()
    lists = [json.loads(line) for line in (run_dir / "iter_0" / "lists.jsonl").read_text().splitlines()]
    assert lists and all(len(x["response_ids"]) == len(x["responses"]) for x in lists)
    for item in lists:
        prompt_ids = tokenizer(item["prompt"], add_special_tokens=False)["input_ids"]
        for ids, finished, value in zip(
            item["response_ids"], item["finished"], item["reference_logps"], strict=True
        ):
            assert value == pytest.approx(manual_logp(model, prompt_ids, ids), abs=1e-4)
            end = tokenizer.convert_tokens_to_ids("<|im_end|>")
            assert (ids[-1] == end) == finished  # a truncated sample has no end token
    iteration_0 = trained[: len(lists)]
    assert [prompt for prompt, _, _ in iteration_0] == [x["prompt"] for x in lists]
    for (_, ids, example), item in zip(iteration_0, lists, strict=True):
        assert ids == item["response_ids"] and example["response_ids"] == item["response_ids"]


def test_summary_counts_truncated_samples(chat_run):
    run_dir, _ = chat_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    records = read_records(run_dir / "candidates" / "iter_0.jsonl")
    assert manifest["completed"]["0"]["generate"]["truncated"] == sum(not r.finished for r in records) > 0


def test_killed_chat_run_resumes_byte_identical(chat_workspace, chat_run, tmp_path):
    root, _, _ = chat_workspace
    run_dir = tmp_path / "run"
    items = chat_settings(root, run_dir)
    for kill_at in ("generate.chunk#2", "lists.reference#1", "train.saved#1"):
        result = larpo_run(root, run_dir, kill_at, items)
        assert result.returncode == -signal.SIGKILL, (kill_at, result.stderr[-2000:])
    assert larpo_run(root, run_dir, items=items).returncode == 0
    resumed, uninterrupted = snapshot(run_dir), snapshot(chat_run[0])
    for name in STAGE_FILES:
        assert resumed[name] == uninterrupted[name], name


def test_keep_truncated_false_drops_cut_samples_before_scoring(workspace, tmp_path):
    """On the plain-text demo model (no template: no ids kept, only the stop flag this setting needs)."""
    run_dir = tmp_path / "run"
    console = Console(file=io.StringIO(), width=200)
    run_larpo(
        load_run_config(None, settings(workspace, run_dir, "iterations=1", "keep_truncated=false")),
        console=console,
    )
    generated = json.loads((run_dir / "manifest.json").read_text())["completed"]["0"]["generate"]
    records = read_records(run_dir / "candidates" / "iter_0.jsonl")
    assert 0 < generated["truncated"] < generated["candidates"]
    assert len(records) == generated["candidates"] - generated["truncated"]
    assert all(r.finished is True and r.response_ids is None and r.score is not None for r in records)
    assert f"{generated['truncated']} truncated (dropped)" in console.file.getvalue()


def test_larpo_generate_renders_and_keeps_ids(chat_workspace, tmp_path, monkeypatch, capsys):
    root, tokenizer, messages = chat_workspace
    out = tmp_path / "candidates.jsonl"
    code, _, err = run_cli(monkeypatch, capsys, "generate", "--model", root / "model", "--prompts",
                           root / "prompts.jsonl", "--output", out, "--num-candidates", 2, "--max-new-tokens", 5)  # fmt: skip
    assert code == 0, err
    records = read_records(out)
    rendered = tokenizer.apply_chat_template(messages[0], add_generation_prompt=True, tokenize=False)
    assert {r.prompt for r in records if r.prompt_id == "c0"} == {rendered}
    for r in records:
        text_ids = r.response_ids[:-1] if r.finished else r.response_ids
        assert tokenizer.decode(text_ids, skip_special_tokens=True) == r.response and len(r.response_ids) <= 5


def test_larpo_score_gives_the_reward_the_message_list(chat_workspace, tmp_path, monkeypatch, capsys):
    """`larpo generate` keeps each prompt as the file holds it beside its rendering; `larpo score` passes
    that message list to the reward (``chat_length`` raises on a rendered string)."""
    root, _, messages = chat_workspace
    candidates, scored = tmp_path / "candidates.jsonl", tmp_path / "scored.jsonl"
    code, _, err = run_cli(monkeypatch, capsys, "generate", "--model", root / "model", "--prompts",
                           root / "prompts.jsonl", "--output", candidates, "--num-candidates", 2, "--max-new-tokens", 5)  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli(
        monkeypatch, capsys, "score", "--reward", REWARD, "--candidates", candidates, "--output", scored
    )
    assert code == 0, err
    records = read_records(scored)
    assert {r.prompt_id: r.original_prompt for r in records} == {f"c{i}": m for i, m in enumerate(messages)}
    assert [r.score for r in records] == [float(len(r.response) % 7) for r in records]
