"""`larpo run`, `generate` and `score` from the command line: results, and bad input."""

import json
import shutil
from pathlib import Path

import pytest

from larpo.store import read_records
from tests.helpers import run_args, run_cli
from tests.rewards_for_tests import digit_overlap

HERE = Path(__file__).parent


def test_run_prints_a_summary_per_iteration(monkeypatch, capsys, workspace, tmp_path):
    code, out, err = run_cli(monkeypatch, capsys, *run_args(workspace, tmp_path / "run"))
    assert code == 0, err
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    generated = manifest["completed"]["0"]["generate"]
    assert f"iter 0: {generated['candidates']} candidates ({generated['duplicates']} duplicates)" in err
    assert "finished 1 iterations" in out


def test_run_prints_the_initial_held_out_numbers_first_and_before_after_at_the_end(
    monkeypatch, capsys, workspace, tmp_path
):
    from huggingface_hub import ModelCard

    base = tmp_path / "base"  # a local copy of a Hub model, as `larpo import-gguf` leaves one
    shutil.copytree(workspace / "model", base)
    (base / "README.md").write_text("---\nbase_model: org/tiny-chat\nlicense: apache-2.0\n---\n")
    evaluation = (f"model={base}", f"eval_prompts={workspace / 'prompts.jsonl'}", "eval_samples=2",
                  "eval_ks=[1, 2]", "eval_ranking_prompts=0")  # fmt: skip
    args = run_args(workspace, tmp_path / "run", *evaluation)
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    card = ModelCard.load(tmp_path / "run" / "iter_0" / "model" / "README.md").data
    assert (card.base_model, card.license, card.pipeline_tag) == (
        "org/tiny-chat",
        "apache-2.0",
        "text-generation",
    )
    completed = json.loads((tmp_path / "run" / "manifest.json").read_text())["completed"]
    before, after = completed["-1"]["eval"], completed["0"]["eval"]
    lines = err.splitlines()
    initial = next(i for i, line in enumerate(lines) if line.startswith("initial model: "))
    assert initial < next(i for i, line in enumerate(lines) if line.startswith("iter 0: "))
    assert lines[initial].startswith(
        f"initial model: held-out greedy acc {before['greedy_accuracy']:.3f}, "
        f"pass@1 {before['pass_at_k']['1']:.3f}, pass@2 {before['pass_at_k']['2']:.3f}, "
        f"mean reward {before['mean_reward']:.4f}"
    )
    assert str(tmp_path / "run" / "eval" / "initial.json") in err
    table = " ".join(out.split())
    assert "held-out (8 prompts)" in table and "initial model" in table and "after iteration 0" in table
    for label, key in (("greedy accuracy", "greedy_accuracy"), ("mean reward", "mean_reward")):
        change = after[key] - before[key]
        assert f"{label} │ {before[key]:.3f} │ {after[key]:.3f} │ {change:+.3f}" in table
    assert out.index("after iteration 0") < out.index("finished 1 iterations")
    code, out, err = run_cli(monkeypatch, capsys, *args)  # resumed with nothing to do: the same report
    assert code == 0 and "initial model: held-out greedy acc" in err and "held-out (8 prompts)" in out


def test_generate_score_train_as_separate_stages(monkeypatch, capsys, workspace, tmp_path):
    prompts = workspace / "prompts.jsonl"
    candidates, scored = tmp_path / "candidates.jsonl", tmp_path / "scored.jsonl"
    code, out, err = run_cli(
        monkeypatch, capsys, "generate", "--model", workspace / "model", "--prompts", prompts, "--output",
        candidates, "--num-candidates", "3", "--max-new-tokens", "4",
    )  # fmt: skip
    assert code == 0, err
    records = read_records(candidates)
    assert f"wrote {len(records)} candidates for 8 prompts" in out
    assert all(r.score is None for r in records) and 8 <= len(records) <= 24

    code, out, err = run_cli(
        monkeypatch, capsys, "score", "--reward", f"{HERE / 'rewards_for_tests.py'}:digit_overlap",
        "--candidates", candidates, "--output", scored,
    )  # fmt: skip
    assert code == 0, err
    for record in read_records(scored):
        assert record.score == digit_overlap(record.prompt, [record.response])[0]

    code, out, err = run_cli(
        monkeypatch, capsys, "train", "--model", workspace / "model", "--data", scored, "--output",
        tmp_path / "trained", "--batch-size", "4", "--epochs", "1",
    )  # fmt: skip
    assert code == 0, err
    by_prompt = {}
    for record in read_records(scored):
        by_prompt.setdefault(record.prompt_id, set()).add(record.score)
    rankable = sum(len(scores) > 1 for scores in by_prompt.values())
    assert f"trained on {rankable} lists" in out


def write(path, text):
    path.write_text(text)
    return path


BAD_RUNS = [
    ("missing config", lambda w, t: ["run", "--config", t / "nope.yaml"], "nope.yaml: config file not found"),
    ("bad yaml", lambda w, t: ["run", "--config", write(t / "c.yaml", "a: [1\n")], "c.yaml: not valid YAML"),
    ("unknown key", lambda w, t: ["--set", "lerning_rate=1e-6"], "unknown key 'lerning_rate' (did you mean 'learning_rate'?)"),
    ("unknown objective", lambda w, t: ["--set", "objective=dpo"], "'objective' must be one of contrastive, ipo, lambdarank"),
    ("wrong type", lambda w, t: ["--set", "num_candidates=many"], "'num_candidates' must be an integer, got str 'many'"),
    ("zero list size", lambda w, t: ["--set", "num_candidates=0"], "'num_candidates' must be at least 1, got 0"),
    ("negative chunk", lambda w, t: ["--set", "logprob_chunk_size=-4"],
     "'logprob_chunk_size' must be auto or an integer >= 0, got -4"),
    ("chunk not a size", lambda w, t: ["--set", "logprob_chunk_size=big"],
     "'logprob_chunk_size' must be auto or an integer >= 0, got 'big'"),
    ("shared prefix maybe", lambda w, t: ["--set", "shared_prefix=maybe"],
     "'shared_prefix' must be true, false or auto, got 'maybe'"),
    ("greedy k>1", lambda w, t: ["--set", "temperature=0"], "temperature 0 gives one distinct sample"),
    ("missing prompts", lambda w, t: ["--set", f"prompts={t / 'none.jsonl'}"], "none.jsonl: file not found"),
    ("malformed prompts", lambda w, t: ["--set", f"prompts={write(t / 'p.jsonl', json.dumps({'prompt': 'a'}) + chr(10) + '{x' + chr(10))}"],
     "p.jsonl:2: malformed JSON"),
    ("empty prompts", lambda w, t: ["--set", f"prompts={write(t / 'p.jsonl', chr(10))}"], "p.jsonl: no records"),
    ("prompt not a string", lambda w, t: ["--set", f"prompts={write(t / 'p.jsonl', json.dumps({'prompt': 3}))}"],
     "record 1: 'prompt' must be a string"),
    ("duplicate ids", lambda w, t: ["--set", f"prompts={write(t / 'p.jsonl', chr(10).join([json.dumps({'id': 1, 'prompt': 'a'})] * 2))}"],
     "duplicate prompt id '1'"),
    ("reward module missing", lambda w, t: ["--set", "reward=no_such_module_xyz:f"], "no_such_module_xyz"),
    ("reward file missing", lambda w, t: ["--set", f"reward={t / 'r.py'}:f"], "r.py"),
    ("model not a model", lambda w, t: ["--set", f"model={t}"], "not a Hugging Face model directory"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "make_args", "message"), BAD_RUNS, ids=[b[0] for b in BAD_RUNS])
def test_bad_run_input_exits_2_without_creating_the_run(
    monkeypatch, capsys, workspace, tmp_path, name, make_args, message
):
    run_dir = tmp_path / "run"
    extra = make_args(workspace, tmp_path)
    args = extra if extra[0] == "run" else run_args(workspace, run_dir) + extra
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("larpo: error: ")
    assert message in err
    assert not run_dir.exists()


def test_bad_reward_output_stops_the_run_cleanly_and_a_fixed_reward_resumes(
    monkeypatch, capsys, workspace, tmp_path
):
    reward = tmp_path / "reward.py"
    reward.write_text("def score(prompt, responses):\n    return [0.0] * (len(responses) + 1)\n")
    run_dir = tmp_path / "run"
    args = run_args(workspace, run_dir, f"reward={reward}:score")
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "expected" in err and "scores" in err
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert list(manifest["completed"]["0"]) == ["generate"]  # generated samples are kept
    kept = (run_dir / "candidates" / "iter_0.jsonl").read_bytes()

    reward.write_text("def score(prompt, responses):\n    return [float('nan')] * len(responses)\n")
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2 and "non-finite" in err and "10+20=" in err
    assert (run_dir / "candidates" / "iter_0.jsonl").read_bytes() == kept

    reward.write_text("def score(prompt, responses):\n    return [float(len(r)) for r in responses]\n")
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    records = read_records(run_dir / "candidates" / "iter_0.jsonl")
    assert [r.response for r in records] == [r.response for r in read_records_bytes(kept, tmp_path)]
    assert all(r.score == float(len(r.response)) for r in records)


def read_records_bytes(data, tmp_path):
    path = tmp_path / "copy.jsonl"
    path.write_bytes(data)
    return read_records(path)


def test_resume_with_other_settings_is_refused(monkeypatch, capsys, workspace, tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli(monkeypatch, capsys, *run_args(workspace, run_dir))[0] == 0
    before = (run_dir / "manifest.json").read_bytes()
    code, _, err = run_cli(monkeypatch, capsys, *run_args(workspace, run_dir, "beta=0.5"))
    assert code == 2 and "started with other settings (beta)" in err
    assert (run_dir / "manifest.json").read_bytes() == before


def test_output_dir_that_is_not_a_run_is_refused(monkeypatch, capsys, workspace, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    code, _, err = run_cli(monkeypatch, capsys, *run_args(workspace, tmp_path / "run"))
    assert code == 2 and "is not a larpo run directory" in err
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["notes.txt"]


def test_chunked_log_probs_refuse_soft_capped_logits_with_one_line_and_the_run_resumes_without(
    monkeypatch, capsys, workspace, tmp_path
):
    """A model whose logits are more than lm_head(hidden) (Gemma 2 soft-caps them) stops `larpo run` at
    its first chunked scoring with exit 2; nothing is lost, and the run resumes with chunking off."""
    import torch
    from transformers import AutoTokenizer, Gemma2Config, Gemma2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(workspace / "model")
    config = Gemma2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, final_logit_softcapping=0.5,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    model_dir = tmp_path / "gemma"
    Gemma2ForCausalLM(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    run_dir = tmp_path / "run"
    args = run_args(workspace, run_dir, f"model={model_dir}")
    code, _, err = run_cli(monkeypatch, capsys, *args, "--set", "logprob_chunk_size=8")
    assert code == 2, err
    assert err.strip().splitlines()[-1].startswith("larpo: error: logprob_chunk_size needs logits")

    def samples():
        return [
            (r.prompt_id, r.response, r.score) for r in read_records(run_dir / "candidates" / "iter_0.jsonl")
        ]

    generated = samples()
    assert generated and all(score is not None for *_, score in generated)  # drawn and scored, kept
    code, out, err = run_cli(monkeypatch, capsys, *args, "--set", "logprob_chunk_size=0")
    assert code == 0, err
    assert samples() == generated  # resumed from the stored samples, not redrawn
    assert "finished 1 iterations" in out
