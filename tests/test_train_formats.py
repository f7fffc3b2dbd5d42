"""``larpo train`` on each dataset format: the lists it reads (its summary line), the steps it trains
and the model card it writes beside the model."""

import json

import pytest

from larpo.model_card import read_card_metadata
from larpo.store import CandidateRecord
from tests.helpers import run_cli

ROWS = {
    "lists": [
        {"prompt": "2+3=", "responses": ["6", "5", "4"], "scores": [1.0, 2.0, 0.0]},
        {"prompt": "1+1=", "responses": ["2", "3"], "scores": [1, 0]},
    ],
    "ranked": [{"prompt": "2+3=", "responses": ["5", "6", "4"]}, {"prompt": "1+1=", "responses": ["2", "3"]}],
    "pairs": [
        {"prompt": "2+3=", "chosen": "5", "rejected": "6"},
        {"prompt": "1+1=", "chosen": "2", "rejected": "3"},
    ],
    "rated": [
        {
            "prompt": "2+3=",
            "completions": [{"response": "5", "quality": 2}, {"response": "6", "quality": None}],
        },
        {
            "prompt": "1+1=",
            "completions": [
                {"response": "2", "quality": 1},
                {"response": "3", "quality": 0},
                {"response": "4", "quality": 0},
            ],
        },
    ],  # fmt: skip
}
CANDIDATES = [
    CandidateRecord("a", "2+3=", "5", 1.0, 0, 1.0),
    CandidateRecord("a", "2+3=", "6", 0.0, 0, 1.0),
    CandidateRecord("a", "2+3=", "4", 0.5, 1, 1.0),
    CandidateRecord("b", "1+1=", "2", 1.0, 1, 1.0),
]
SUMMARY = {
    "lists": "2 rows read as lists: 2 lists",
    "ranked": "2 rows read as ranked: 2 lists",
    "pairs": "2 rows read as pairs: 2 lists",
    # "2+3=" keeps one rated completion: too few to rank
    "rated": "2 rows read as rated: 1 lists, 1 skipped with fewer than 2 distinct responses, "
    "1 completions without a rating left out",
    "candidates": "4 rows read as candidates: 1 lists, 1 skipped with fewer than 2 distinct responses",
}


def data_file(tmp_path, name):
    path = tmp_path / f"{name}.jsonl"
    lines = [r.to_json() for r in CANDIDATES] if name == "candidates" else [json.dumps(r) for r in ROWS[name]]
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.mark.parametrize("name", list(SUMMARY))
def test_train_reads_each_format_and_writes_a_model_card(monkeypatch, capsys, tiny_dir, tmp_path, name):
    data, out = data_file(tmp_path, name), tmp_path / "out"
    args = ["train", "--model", tiny_dir, "--data", data, "--output", out, "--format", name, "--batch-size", "1",
            "--objective", "listmle", "--learning-rate", "1e-3", "--epochs", "1"]  # fmt: skip
    code, stdout, stderr = run_cli(
        monkeypatch, capsys, *args, *(["--rating", "quality"] if name == "rated" else [])
    )
    assert code == 0, stderr
    assert f"{data}: {SUMMARY[name]}\n" in stdout
    lists = int(SUMMARY[name].split(": ")[1].split()[0])
    assert f"trained on {lists} lists with listmle" in stdout
    log = json.loads((out / "train_log.json").read_text())
    assert log[-1]["step"] == lists  # one list per step, one epoch
    card = (out / "README.md").read_text()
    metadata = read_card_metadata(card)
    assert metadata["library_name"] == "transformers" and metadata["tags"][-1] == "listmle"
    assert f"| base model | `{tiny_dir}` |" in card and f"| training lists | `{data}` |" in card
    assert "| learning rate | 0.001 |" in card and "## Held-out evaluation" not in card


def test_train_reports_to_tensorboard(monkeypatch, capsys, tiny_dir, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tmp_path / "train.yaml"
    config.write_text("logging_steps: 1\n")
    out = tmp_path / "out"
    args = ["train", "--model", tiny_dir, "--data", data_file(tmp_path, "lists"), "--output", out,
            "--batch-size", "1", "--epochs", "1", "--config", config, "--report-to", "tensorboard", "--run-name", "tiny"]  # fmt: skip
    code, _, stderr = run_cli(monkeypatch, capsys, *args)
    assert code == 0, stderr
    (logdir,) = {p.parent for p in out.rglob("events.out.tfevents.*")}
    events = EventAccumulator(str(logdir))
    events.Reload()
    losses = [(e.step, e.value) for e in events.Scalars("train/loss")]
    logged = [(h["step"], h["loss"]) for h in json.loads((out / "train_log.json").read_text()) if "loss" in h]
    assert [step for step, _ in losses] == [1, 2] and losses == [(s, pytest.approx(v)) for s, v in logged]


def test_message_prompts_need_a_chat_template(monkeypatch, capsys, tiny_dir, tmp_path):
    data = tmp_path / "chat.jsonl"
    data.write_text(
        json.dumps({"prompt": [{"role": "user", "content": "1+1="}], "chosen": "2", "rejected": "3"}) + "\n"
    )
    code, _, err = run_cli(
        monkeypatch, capsys, "train", "--model", tiny_dir, "--data", data, "--output", tmp_path / "o"
    )
    assert code == 2 and "needs a chat template" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("data_format", ["candidates", "lists"])
def test_sampled_ids_are_trained_not_a_retokenization(monkeypatch, capsys, tmp_path, data_format):
    """A BPE sample need not be the tokenization of its text: SmolLM2 may sample ' hel' + 'lo', which
    re-tokenizes as one ' hello' token. ``larpo train`` trains on the sampled ids of a run's candidates or
    of its ``lists.jsonl`` rows, as ``larpo run`` does; a candidate known only as text (written without
    ids) is tokenized and gets the template's end-of-turn token, and a sample cut at the token limit none."""
    import larpo.trainer
    from larpo.chat import ChatFormat
    from tests.helpers import smollm2_tokenizer, tiny_chat_llama

    tokenizer = smollm2_tokenizer()
    tiny_chat_llama(tokenizer).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    hel, lo, world = tokenizer.convert_tokens_to_ids(["Ġhel", "lo", "Ġworld"])
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer(" hello", add_special_tokens=False)["input_ids"] != [hel, lo]  # BPE merges them
    prompt = ChatFormat(tokenizer).render([{"role": "user", "content": "Say hello."}])
    records = [  # (response, score, sampled ids, finished): the stored prompt is the rendered one
        CandidateRecord("p", prompt, " hello", 1.0, 0, 1.0, response_ids=[hel, lo, end], finished=True),
        CandidateRecord("p", prompt, " hel", 0.5, 0, 1.0, response_ids=[hel], finished=False),
        CandidateRecord("p", prompt, " world", 0.0, 0, 1.0),
    ]
    data = tmp_path / f"{data_format}.jsonl"
    data.write_text("".join(r.to_json() + "\n" for r in records))
    if data_format == "lists":  # the row a run's lists.jsonl holds for these candidates
        row = {"prompt": prompt, "responses": [r.response for r in records], "scores": [r.score for r in records],
               "response_ids": [r.response_ids for r in records], "finished": [r.finished for r in records]}  # fmt: skip
        data.write_text(json.dumps(row) + "\n")
    trained = []

    class Recording(larpo.trainer.ListwiseTrainer):
        def __init__(self, model, args, train_dataset, **kwargs):
            trained.extend(train_dataset)
            super().__init__(model, args, train_dataset, **kwargs)

    monkeypatch.setattr(larpo.trainer, "ListwiseTrainer", Recording)
    code, _, stderr = run_cli(monkeypatch, capsys, "train", "--model", tmp_path / "model", "--data", data,
                              "--output", tmp_path / "out", "--format", data_format, "--epochs", "1")  # fmt: skip
    assert code == 0, stderr
    [example] = trained
    assert example["prompt_ids"] == tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert example["response_ids"] == [[hel, lo, end], [hel], [world, end]]
