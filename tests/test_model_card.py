"""Model cards: a YAML header in the Hugging Face convention and a body naming the base model, the
objective and the held-out metrics of the manifest."""

from __future__ import annotations

import re

import yaml

from larpo.model_card import ModelCardInfo, declared_license, model_card, read_card_metadata, write_model_card

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
    metadata, body = _sections(model_card(info, base_license="apache-2.0"))
    assert metadata == {
        "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "library_name": "transformers",
        "tags": ["larpo", "preference-optimization", "listwise", "lambdarank"],
        "license": "apache-2.0",
    }
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


def test_local_base_model_stays_out_of_the_metadata_and_lends_its_license(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "README.md").write_text("---\nlicense: mit\nlanguage: en\n---\n# Base\n")
    info = ModelCardInfo(base_model=str(base), objective="listmle", beta=0.5, learning_rate=1e-3,
                         data="lists.jsonl", command="larpo train --data lists.jsonl")  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    text = write_model_card(out, info).read_text()
    metadata, body = _sections(text)
    assert metadata == {
        "library_name": "transformers", "tags": ["larpo", "preference-optimization", "listwise", "listmle"],
        "license": "mit",
    }  # fmt: skip
    assert f"| base model | `{base}` |" in body and "| training lists | `lists.jsonl` |" in body
    assert "iterations" not in body
    assert read_card_metadata(text) == metadata


def test_declared_license_without_a_readme_or_header(tmp_path):
    assert declared_license(tmp_path) is None
    (tmp_path / "README.md").write_text("# no header\nlicense: mit\n")
    assert declared_license(tmp_path) is None
    assert declared_license("org/not-a-local-dir") is None
