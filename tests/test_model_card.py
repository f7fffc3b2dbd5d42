"""Model cards: a YAML header in the Hugging Face convention and a body naming the base model, the
objective and the held-out metrics of the manifest."""

from __future__ import annotations

import re

import yaml

from larpo.model_card import (
    ModelCardInfo,
    base_card_metadata,
    base_hub_id,
    hub_id,
    model_card,
    read_card_metadata,
    write_model_card,
)

MANIFEST = {
    "larpo_version": "0.1.0",
    "config": {
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct", "prompts": "data/prompts.jsonl",
        "reward": "rewards.py:score", "iterations": 3, "objective": "lambdarank",
        "objective_options": {"gain": "linear"}, "beta": 0.1, "learning_rate": 5e-7, "peft": None,
    },
    "completed": {
        "-1": {"eval": {"greedy_accuracy": 0.25, "mean_reward": 1.5, "pass_at_k": {"1": 0.25}}},
        "0": {"train": {"steps": 3}, "eval": {"greedy_accuracy": 0.4, "mean_reward": 2.0,
                                               "pass_at_k": {"1": 0.375, "4": 0.625}, "ndcg": 0.8125,
                                               "kendall_tau": None}},
        "1": {"train": {"steps": 3}, "eval": {"skipped": True}},
    },
}  # fmt: skip


def _sections(text: str) -> tuple[dict, str]:
    match = re.match(r"---\n(.*?)\n---\n(.*)", text, re.DOTALL)
    assert match, "no YAML header"
    return yaml.safe_load(match.group(1)), match.group(2)


def _metric_rows(body: str) -> dict[str, float]:
    section = body.split("## Held-out evaluation")[1].split("##")[0]
    return {
        name: float(value)
        for name, value in re.findall(r"^\| ([^|]+?) \| (-?\d[\d.e+-]*) \|$", section, re.MULTILINE)
    }


def test_card_of_a_run_iteration_names_base_objective_and_latest_metrics():
    info = ModelCardInfo.from_manifest(MANIFEST, 1, command="larpo run --config run.yaml")
    metadata, body = _sections(model_card(info, {"license": "apache-2.0"}))
    assert metadata == {
        "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "library_name": "transformers",
        "license": "apache-2.0",
        "pipeline_tag": "text-generation",
        "tags": ["larpo", "preference-optimization", "listwise", "lambdarank"],
    }
    assert "# SmolLM2-135M-Instruct, trained with larpo (lambdarank)" in body
    assert "| objective | `lambdarank` |" in body
    assert '| objective options | `{"gain": "linear"}` |' in body
    assert "| beta | 0.1 |" in body and "| learning rate | 5e-07 |" in body
    assert "| iterations | 2 of 3 |" in body
    assert "| prompts | `data/prompts.jsonl` |" in body and "| reward | `rewards.py:score` |" in body
    # iteration 1 skipped its evaluation: the latest is iteration 0's, with kendall_tau not measured
    assert "## Held-out evaluation (after iteration 0)" in body
    assert _metric_rows(body) == {
        "greedy_accuracy": 0.4, "mean_reward": 2.0, "pass@1": 0.375, "pass@4": 0.625, "ndcg": 0.8125
    }  # fmt: skip
    assert "larpo 0.1.0:" in body and "larpo run --config run.yaml" in body


def test_card_before_any_evaluation_and_of_an_adapter():
    data = {**MANIFEST, "config": {**MANIFEST["config"], "peft": {"r": 8}}, "completed": {"0": {}}}
    metadata, body = _sections(model_card(ModelCardInfo.from_manifest(data, 0)))
    assert metadata["library_name"] == "peft" and "license" not in metadata
    assert "Held-out evaluation" not in body and "(LoRA adapter)" in body


def test_a_local_base_without_a_card_is_named_by_its_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "base").mkdir(parents=True)
    info = ModelCardInfo(base_model="runs/base", objective="listmle", beta=0.5, learning_rate=1e-3,
                         data="lists.jsonl", command="larpo train --data lists.jsonl")  # fmt: skip
    (tmp_path / "out").mkdir()
    text = write_model_card(tmp_path / "out", info).read_text()
    metadata, body = _sections(text)
    # not "runs/base", which the Hub would read as the id of another model
    assert metadata["base_model"] == str(tmp_path / "runs" / "base") and "license" not in metadata
    assert "| base model | `runs/base` |" in body and "| training lists | `lists.jsonl` |" in body
    assert "iterations" not in body
    assert read_card_metadata(text) == metadata


def test_a_local_base_lends_the_hub_id_and_license_of_its_own_card(tmp_path):
    """The chain of `larpo import-gguf` (whose card names the Hub model) -> `larpo run`: the trained model's
    card links the Hub model, as `huggingface_hub.ModelCard` reads it."""
    from huggingface_hub import ModelCard

    base = tmp_path / "smollm2"
    base.mkdir()
    (base / "README.md").write_text(
        "---\nbase_model: HuggingFaceTB/SmolLM2-135M-Instruct\nlicense: other\nlicense_name: custom\n"
        "license_link: LICENSE\nlanguage: [en]\n---\n# imported\n"
    )
    out = tmp_path / "out"
    out.mkdir()
    data = {**MANIFEST, "config": {**MANIFEST["config"], "model": str(base)}}
    write_model_card(out, ModelCardInfo.from_manifest(data, 0))
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert (card.data.license, card.data.license_name, card.data.license_link) == (
        "other",
        "custom",
        "LICENSE",
    )
    assert card.data.pipeline_tag == "text-generation"
    assert f"| base model | `{base}` (from `HuggingFaceTB/SmolLM2-135M-Instruct`) |" in card.text
    assert "# SmolLM2-135M-Instruct, trained with larpo" in card.text


def test_base_card_metadata_without_a_readme_or_header(tmp_path):
    assert base_card_metadata(tmp_path) == {}
    (tmp_path / "README.md").write_text("# no header\nlicense: mit\n")
    assert base_card_metadata(tmp_path) == {}
    assert base_card_metadata("org/not-a-local-dir") == {}


def test_hub_ids():
    assert hub_id("https://huggingface.co/Org/Model-1B") == "Org/Model-1B"
    assert hub_id("https://huggingface.co/datasets/org/chats", "datasets") == "org/chats"
    assert hub_id("https://huggingface.co/datasets/org/chats") is None  # a dataset is not a model
    assert hub_id("/abs/path") is None and hub_id("https://example.com/a/b") is None
    assert base_hub_id("org/name", {}) == "org/name"  # a Hub id that is no local path
    assert base_hub_id("org/name", {"base_model": ["a/b"]}) == "a/b"
    assert base_hub_id("org/name", {"base_model": "/abs/path"}) == "org/name"
