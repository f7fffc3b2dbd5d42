from pathlib import Path

import pytest

from larpo.run.config import load_run_config

CONFIGS = sorted(Path("examples/configs").glob("*.yaml"))
EXPECTED = {
    "contrastive_top1_bottom3": ("contrastive", 10, 1, 3),
    "lambdarank_top2_bottom2": ("lambdarank", 10, 2, 2),
    "listmle_top2_bottom2": ("listmle", 10, 2, 2),
    "iterative_dpo": ("pairwise", 2, None, None),
}


def test_every_paper_setting_has_a_config():
    assert {path.stem for path in CONFIGS} == set(EXPECTED)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_example_config_is_valid_and_matches_the_paper(path):
    config = load_run_config(path)
    assert (config.objective, config.num_candidates, config.positives, config.negatives) == EXPECTED[
        path.stem
    ]
    assert config.output_dir == f"runs/{path.stem}"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_example_config_fits_the_demo_model(path):
    """Answers fit, the model's context is not exceeded, and every iteration is evaluated on held-out
    problems (what `larpo demo --output runs/demo` writes)."""
    from larpo.tasks.arithmetic import answer_budget, build_tokenizer, train_and_heldout_splits
    from larpo.tasks.arithmetic.model import MAX_POSITIONS

    config = load_run_config(path)
    train, heldout = train_and_heldout_splits(12000, 1200, 0)
    tokenizer = build_tokenizer()
    longest = max(len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in train + heldout)
    assert answer_budget(train + heldout) <= config.max_new_tokens <= MAX_POSITIONS - longest
    assert config.eval_prompts == "runs/demo/heldout_prompts.jsonl" and config.model == "runs/demo/sft"
    assert 0 < config.prompts_per_iteration < len(train)


ACCELERATE_CONFIGS = sorted(Path("examples/accelerate").glob("*.yaml"))
ACCELERATE_EXPECTED = {  # distributed_type, the launcher accelerate picks, the plugin section it needs
    "ddp": ("MULTI_GPU", "multi_gpu", None),
    "fsdp": ("FSDP", "use_fsdp", "fsdp_config"),
    "deepspeed_zero2": ("DEEPSPEED", "use_deepspeed", "deepspeed_config"),
    "deepspeed_zero3": ("DEEPSPEED", "use_deepspeed", "deepspeed_config"),
}


def test_every_accelerate_example_is_tested():
    assert {path.stem for path in ACCELERATE_CONFIGS} == set(ACCELERATE_EXPECTED)


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=[p.stem for p in ACCELERATE_CONFIGS])
def test_accelerate_example_loads_and_validates_like_accelerate_launch(path):
    import yaml
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    raw = yaml.safe_load(path.read_text())
    distributed_type, launcher, section = ACCELERATE_EXPECTED[path.stem]
    for key in ("compute_environment", "distributed_type", "num_machines", "num_processes", "machine_rank",
                "mixed_precision", "use_cpu"):  # fmt: skip
        assert key in raw, key
    assert raw["distributed_type"] == distributed_type and raw["num_processes"] >= 2
    config = load_config_from_file(str(path))  # accelerate's own loader: unknown keys fail here
    assert config.distributed_type.value == distributed_type
    if section:
        assert getattr(config, section) == raw[section]
    args = launch_command_parser().parse_args(["--config_file", str(path), "-m", "larpo.cli", "train"])
    args, _, _ = _validate_launch_command(args)
    assert getattr(args, launcher) and args.num_processes == raw["num_processes"] and args.module
    if path.stem.startswith("deepspeed"):
        assert args.zero_stage == int(path.stem[-1])
        assert "gradient_accumulation_steps" not in raw[section]  # taken from larpo's settings ("auto")
    if path.stem == "fsdp":
        assert (args.fsdp_version, args.fsdp_state_dict_type) == (2, "FULL_STATE_DICT")
