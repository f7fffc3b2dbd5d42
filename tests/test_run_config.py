"""The run config's one mapping to the list settings and to the trainer's arguments."""

from pathlib import Path

import pytest

from larpo.candidates import ListSettings
from larpo.errors import InputError
from larpo.run.config import load_run_config
from larpo.run.manifest import Manifest

REQUIRED = ["model=m", "prompts=p.jsonl", "reward=r.py:f", "output_dir=out"]


def config(*overrides):
    return load_run_config(None, [*REQUIRED, *overrides])


def test_list_settings_carry_every_list_key():
    settings = config("memorization=all", "dedup=false", "positives=2", "negatives=3",
                      "drop_all_tied=false", "negative_source=related").list_settings()  # fmt: skip
    assert settings == ListSettings(memorization="all", dedup=False, positives=2, negatives=3,
                                    drop_all_tied=False, negative_source="related")  # fmt: skip
    kept = config("keep_tied_min_score=1.0", "nll_weight=1").list_settings()
    assert kept == ListSettings(keep_tied_min_score=1.0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["positives=1"], "config: positives and negatives must be set together"),
        (["positives=1", "negatives=1", "max_candidates=4"], "config: max_candidates applies only when"),
        (["negative_source=random"], "config: negative_source 'random' needs positives and negatives"),
        (["memorization=some"], "config: memorization must be one of current, previous, all; got 'some'"),
        (["max_candidates=1"], "config: max_candidates must be >= 2, got 1"),
        (
            ["keep_tied_min_score=1", "nll_weight=1", "drop_all_tied=false"],
            "config: keep_tied_min_score applies only when drop_all_tied is true",
        ),
        (
            ["keep_tied_min_score=1"],
            "config: all-tied lists kept by 'keep_tied_min_score' train only the NLL",
        ),
    ],
)
def test_list_rules_are_checked_when_the_config_is_read(overrides, message):
    """The list rules live in ListSettings alone; a config breaking one fails before any run starts."""
    with pytest.raises(InputError, match=message):
        config(*overrides)


def test_scoring_chunks_default_to_the_generation_batch():
    assert config("generation_batch_size=5").scoring_chunk_size == 5
    assert config("generation_batch_size=5", "score_batch_size=2").scoring_chunk_size == 2
    with pytest.raises(InputError, match="'score_batch_size' must be at least 1, got 0"):
        config("score_batch_size=0")


def test_save_total_limit_keeps_at_least_the_newest_model():
    with pytest.raises(InputError, match="'save_total_limit' must be at least 1, got 0"):
        config("save_total_limit=0")


def test_trainer_arguments_of_an_iteration():
    arguments = config("learning_rate=1e-5", "epochs=2", "batch_size=4", "gradient_accumulation_steps=3",
                       "warmup_ratio=0.25", "max_length=40", "dtype=bfloat16").training_arguments(1)  # fmt: skip
    assert arguments["learning_rate"] == 1e-5  # YAML 1.1 reads 1e-5 as a string: read as the number
    assert (arguments["num_train_epochs"], arguments["per_device_train_batch_size"]) == (2.0, 4)
    assert arguments["gradient_accumulation_steps"] == 3 and arguments["max_length"] == 40
    assert arguments["warmup_steps"] == 0.25 and arguments["lr_scheduler_type"] == "constant_with_warmup"
    assert (arguments["bf16"], arguments["fp16"]) == (True, False)
    assert arguments["seed"] != config().training_arguments(0)["seed"]  # each iteration its own seed


def test_listwise_config_maps_the_objective_settings(tmp_path: Path):
    args = config("objective=lambdarank", "objective_options={lambda_weights: true}", "beta=0.5",
                  "nll_weight=0.2", "nll_min_score=1.0", "shared_prefix=false", "logprob_chunk_size=8").listwise_config(
        0, str(tmp_path), disable_tqdm=True)  # fmt: skip
    assert (args.objective, args.objective_options, args.beta) == (
        "lambdarank",
        {"lambda_weights": True},
        0.5,
    )
    assert (args.nll_weight, args.nll_min_score, args.shared_prefix, args.logprob_chunk_size) == (
        0.2,
        1.0,
        False,
        8,
    )
    assert args.disable_tqdm and args.logging_steps == 1 and args.save_strategy == "no"


def test_log_prob_settings_default_to_auto_and_keep_explicit_values(tmp_path: Path):
    assert (config().shared_prefix, config().logprob_chunk_size) == ("auto", "auto")
    args = config().listwise_config(0, str(tmp_path), disable_tqdm=True)
    assert (args.shared_prefix, args.logprob_chunk_size) == ("auto", "auto")
    explicit = config("shared_prefix=true", "logprob_chunk_size=0")
    assert (explicit.shared_prefix, explicit.logprob_chunk_size) == (True, 0)


@pytest.mark.parametrize(
    "old_settings",
    [
        {"shared_prefix": True, "logprob_chunk_size": 0},  # the defaults before auto
        {"shared_prefix": False, "logprob_chunk_size": 4096},
        {},  # a run from before the settings existed
    ],
)
def test_a_run_started_before_auto_resumes_under_it(tmp_path: Path, old_settings):
    """The manifest of a run written with explicit log-prob settings (or none) resumes with the new
    defaults, and records the config it resumes with; another setting still refuses to resume."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    stored = {k: v for k, v in config().to_dict().items() if k not in ("shared_prefix", "logprob_chunk_size")}
    stored.update(old_settings)
    completed = {"0": {"generate": {"candidates": 8}}}
    Manifest(
        run_dir / "manifest.json", {"larpo_version": "0", "config": stored, "completed": completed}
    ).save()

    resumed = Manifest.open(run_dir, config().to_dict(), "1")
    assert resumed.done(0, "generate") and not resumed.done(0, "score")
    assert (resumed.data["config"]["shared_prefix"], resumed.data["config"]["logprob_chunk_size"]) == (
        "auto",
        "auto",
    )
    with pytest.raises(InputError, match=r"started with other settings \(beta\)"):
        Manifest.open(run_dir, config("beta=0.5").to_dict(), "1")
