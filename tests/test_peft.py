"""LoRA adapters (the ``peft`` config section): the reference is the base model with the adapters disabled,
only adapters train, each iteration saves an adapter, merged exports match, bad sections exit 2."""

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from larpo.adapters import LoraSettings, add_lora, load_adapted, without_adapters
from larpo.cli import main
from larpo.data import ListCollator, tokenize_list
from larpo.model_io import load_policy
from larpo.reference import response_logps
from larpo.trainer import ListwiseTrainer, add_reference_logps
from tests.helpers import arithmetic_lists, run_cli, settings, tiny_model_and_tokenizer

pytest.importorskip("peft")

PEFT = "peft={r: 4, lora_alpha: 8, target_modules: [q_proj, v_proj], merge_export: every}"
PAIRS = [(f"{a}+{b}=", str(a + b + offset)) for a, b in ((12, 30), (7, 45), (23, 9)) for offset in (0, 1, 11)]


def randomize_adapters(model, seed=1):
    """Give every LoRA B matrix random values, so the adapters change the model's outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)


def test_reference_logps_with_adapters_disabled_are_the_base_models_exactly():
    base, tokenizer = tiny_model_and_tokenizer(seed=0)
    adapted = add_lora(tiny_model_and_tokenizer(seed=0)[0], LoraSettings(r=4, lora_alpha=8))
    expected = response_logps(base, tokenizer, PAIRS)
    assert response_logps(adapted, tokenizer, PAIRS) == expected  # fresh LoRA: B = 0, the identity

    randomize_adapters(adapted)
    enabled = response_logps(adapted, tokenizer, PAIRS)
    assert min(abs(a - b) for a, b in zip(enabled, expected, strict=True)) > 1e-3
    with without_adapters(adapted):
        assert response_logps(adapted, tokenizer, PAIRS) == expected
    assert response_logps(adapted, tokenizer, PAIRS) == enabled  # re-enabled after the block

    # the trainer's precomputed reference of a peft model is its base too
    dataset = ListwiseTrainer.as_dataset(arithmetic_lists(tokenizer, 4, 3))
    collator = ListCollator(pad_token_id=tokenizer.pad_token_id)
    from_base = add_reference_logps(base, dataset, collator)["reference_logps"]
    assert add_reference_logps(adapted, dataset, collator)["reference_logps"] == from_base


def file_hashes(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def run_args(workspace, run_dir, *overrides):
    args = ["run"]
    for item in settings(workspace, run_dir, "learning_rate=1e-2", PEFT, *overrides):
        args += ["--set", item]
    return args


def invoke(*args):
    """Run `larpo ARGS` in-process outside a test function; return the exit code."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["larpo", *map(str, args)])
        try:
            main()
        except SystemExit as exit_:
            return exit_.code or 0
    return 0


@pytest.fixture(scope="module")
def lora_run(workspace, tmp_path_factory):
    """A finished 2-iteration `larpo run` with LoRA and a merged export after every iteration."""
    run_dir = tmp_path_factory.mktemp("peft") / "run"
    base_before = file_hashes(workspace / "model")
    assert invoke(*run_args(workspace, run_dir)) == 0
    return run_dir, base_before


def adapter_weights(run_dir, s):
    return load_file(run_dir / f"iter_{s}" / "model" / "adapter_model.safetensors")


def test_run_trains_and_saves_only_adapters(workspace, lora_run):
    run_dir, base_before = lora_run
    assert file_hashes(workspace / "model") == base_before
    manifest = json.loads((run_dir / "manifest.json").read_text())
    base, tokenizer = load_policy(workspace / "model")
    for s in range(2):
        model_dir = run_dir / f"iter_{s}" / "model"
        assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in model_dir.iterdir()}
        assert not (model_dir / "model.safetensors").exists()
        config = json.loads((model_dir / "adapter_config.json").read_text())
        assert (config["r"], config["lora_alpha"], sorted(config["target_modules"])) == (
            4,
            8,
            ["q_proj", "v_proj"],
        )
        weights = adapter_weights(run_dir, s)
        # 2 layers x (q_proj, v_proj) x (A: 4x32, B: 32x4)
        assert len(weights) == 8 and all("lora_" in key for key in weights)
        train = manifest["completed"][str(s)]["train"]
        assert train["trainable_parameters"] == sum(w.numel() for w in weights.values()) == 2 * 2 * 2 * 4 * 32
        assert train["steps"] == 2 and 0 < train["loss"] < 10 and 0 <= train["ranking_accuracy"] <= 1
        assert all(w.abs().max() > 0 for key, w in weights.items() if "lora_B" in key)  # B left 0: trained
    first, second = adapter_weights(run_dir, 0), adapter_weights(run_dir, 1)
    assert all(not torch.equal(first[key], second[key]) for key in first if "lora_B" in key)
    stages = [json.loads(line)["stage"] for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert stages.count("train") == 2

    # base + the last adapter: every non-adapter tensor is byte-identical to the initial model's
    adapted, _ = load_adapted(workspace / "model", run_dir / "iter_1" / "model")
    initial = base.state_dict()
    frozen = {k: v for k, v in adapted.base_model.model.state_dict().items() if "lora_" not in k}
    assert len(frozen) == len(initial)
    for key, value in frozen.items():
        assert torch.equal(value, initial[key.replace(".base_layer", "")]), key


def test_reference_logps_of_a_later_iteration_come_from_the_base(workspace, lora_run):
    run_dir, _ = lora_run
    lists = [json.loads(line) for line in (run_dir / "iter_1" / "lists.jsonl").read_text().splitlines()]
    pairs = [(item["prompt"], y) for item in lists for y in item["responses"]]
    stored = [v for item in lists for v in item["reference_logps"]]
    base, tokenizer = load_policy(workspace / "model")
    assert stored == pytest.approx(response_logps(base, tokenizer, pairs), abs=1e-5)
    adapted, _ = load_adapted(workspace / "model", run_dir / "iter_0" / "model")
    policy = response_logps(adapted, tokenizer, pairs)
    assert max(abs(a - b) for a, b in zip(policy, stored, strict=True)) > 1e-3  # the adapter matters


def test_merged_export_reproduces_the_adapted_model(workspace, lora_run):
    run_dir, _ = lora_run
    _, tokenizer = load_policy(workspace / "model")
    example = tokenize_list(tokenizer, "12+30=", ["42", "41", "7"])
    batch = ListCollator(pad_token_id=tokenizer.pad_token_id)([example])
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    base = AutoModelForCausalLM.from_pretrained(workspace / "model").eval()
    for s in range(2):
        adapted, _ = load_adapted(workspace / "model", run_dir / f"iter_{s}" / "model")
        merged = AutoModelForCausalLM.from_pretrained(run_dir / f"iter_{s}" / "merged").eval()
        with torch.no_grad():
            expected = adapted.eval()(**inputs).logits
            torch.testing.assert_close(merged(**inputs).logits, expected, atol=1e-5, rtol=0)
            assert (base(**inputs).logits - expected).abs().max() > 1e-3


def test_resume_after_the_run_continues_from_the_last_adapter(workspace, lora_run, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    shutil.copytree(lora_run[0], run_dir)
    before = {s: file_hashes(run_dir / f"iter_{s}" / "model") for s in range(2)}
    completed = json.loads((run_dir / "manifest.json").read_text())["completed"]
    assert invoke(*run_args(workspace, run_dir)) == 0  # finished: nothing to do
    assert json.loads((run_dir / "manifest.json").read_text())["completed"] == completed

    loads = []

    def recording_load(base, adapter, dtype="auto", trainable=False):
        loads.append((Path(adapter).relative_to(run_dir).as_posix(), trainable))
        return load_adapted(base, adapter, dtype, trainable)

    monkeypatch.setattr("larpo.run.context.load_adapted", recording_load)
    assert invoke(*run_args(workspace, run_dir, "iterations=3")) == 0
    # iteration 2 samples with, and then trains, base + iteration 1's adapter
    assert loads == [("iter_1/model", False), ("iter_1/model", True)]
    assert {s: file_hashes(run_dir / f"iter_{s}" / "model") for s in range(2)} == before
    last, third = adapter_weights(run_dir, 1), adapter_weights(run_dir, 2)
    assert third.keys() == last.keys()
    # Adam moves a weight by at most ~lr per step: the new adapter is within steps * lr of the old one
    steps = json.loads((run_dir / "manifest.json").read_text())["completed"]["2"]["train"]["steps"]
    for key in last:
        assert 0 < (third[key] - last[key]).abs().max() <= steps * 1e-2 * 1.01, key
    assert (run_dir / "iter_2" / "merged" / "model.safetensors").exists()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("{rank: 4}", "config: peft: unknown key 'rank'; valid: r, lora_alpha, lora_dropout, target_modules"),
        ("{lora_alpa: 4}", "unknown key 'lora_alpa' (did you mean 'lora_alpha'?)"),
        ("{r: 0}", "'r' must be an integer >= 1, got 0"),
        ("{lora_dropout: 1.5}", "'lora_dropout' must be in [0, 1), got 1.5"),
        ("{merge_export: sometimes}", "'merge_export' must be false, true, every or last; got 'sometimes'"),
        (
            "{target_modules: [q_proj, qkv_proj]}",
            "target_modules qkv_proj not found in the model; its linear",
        ),
        ("8", "config: 'peft' must be a mapping or null, got int 8"),
    ],
)
def test_bad_peft_section_exits_2_before_writing(monkeypatch, capsys, workspace, tmp_path, section, message):
    args = ["run"]
    for item in settings(workspace, tmp_path / "run", f"peft={section}"):
        args += ["--set", item]
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2
    assert err.startswith("larpo: error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_missing_peft_package_is_a_clear_error(monkeypatch, capsys, workspace, tmp_path):
    monkeypatch.setitem(sys.modules, "peft", None)  # `import peft` now raises ImportError
    args = ["run"]
    for item in settings(workspace, tmp_path / "run", PEFT):
        args += ["--set", item]
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2
    assert err.strip() == "larpo: error: the peft section needs the peft package: pip install 'larpo[peft]'"


def test_train_command_with_a_peft_section(monkeypatch, capsys, workspace, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(
        "learning_rate: 0.01\nper_device_train_batch_size: 4\npeft: {r: 2, merge_export: true}\n"
    )
    lists = tmp_path / "lists.jsonl"
    rows = [
        {"prompt": f"{a}+{a}=", "responses": [str(2 * a), str(2 * a + 1)], "scores": [1.0, 0.0]}
        for a in range(10, 18)
    ]
    lists.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "trained"
    code, stdout, err = run_cli(monkeypatch, capsys, "train", "--model", workspace / "model", "--data", lists,
                                "--output", out, "--config", config, "--epochs", "1")  # fmt: skip
    assert code == 0, err
    assert "LoRA adapter (merged model in" in stdout
    assert sorted(config_key for config_key in load_file(out / "adapter_model.safetensors")) == sorted(
        f"base_model.model.model.layers.{i}.self_attn.{m}_proj.lora_{ab}.weight"
        for i in range(2) for m in "qv" for ab in "AB"
    )  # fmt: skip
    adapted, tokenizer = load_adapted(workspace / "model", out)
    merged, _ = load_policy(out / "merged")
    ids = torch.tensor([tokenizer("12+12=24")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, adapted(ids).logits, atol=1e-5, rtol=0)

    config.write_text("peft: {r: 2, alpha: 4}\n")
    code, _, err = run_cli(monkeypatch, capsys, "train", "--model", workspace / "model", "--data", lists,
                           "--output", tmp_path / "other", "--config", config)  # fmt: skip
    assert code == 2 and f"larpo: error: {config}: peft: unknown key 'alpha'" in err
