"""Choosing the sampling backend: config validation, the missing-vLLM error, resuming older runs.

These run without vLLM; tests/test_vllm_backend.py checks the backend itself where vLLM is installed.
"""

import importlib.util
import json

import pytest

from larpo.errors import InputError
from larpo.generation import VLLMGenerator
from larpo.generation.vllm_backend import request_seed
from larpo.run import RunContext
from larpo.run.config import load_run_config
from tests.helpers import run, settings


@pytest.fixture
def no_vllm(monkeypatch):
    """Make ``vllm`` look uninstalled, whether or not it is."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a)
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["generator=vlm"], "'generator' must be one of transformers, vllm"),
        (["vllm_kwargs={gpu_memory_utilization: 0.5}"], "'vllm_kwargs' is set but 'generator' is not vllm"),
        (["generator=vllm", "vllm_kwargs={model: x}"], "vllm_kwargs may not set model"),
        (["generator=vllm", "vllm_kwargs={seed: 1, tokenizer: t}"], "may not set seed, tokenizer"),
        (["generator=vllm", "vllm_kwargs=[1]"], "'vllm_kwargs' must be a mapping"),
    ],
)
def test_invalid_generator_settings(workspace, tmp_path, overrides, message):
    with pytest.raises(InputError, match=message):
        load_run_config(None, settings(workspace, tmp_path / "run", *overrides))


def test_vllm_settings_are_accepted(workspace, tmp_path):
    extra = ["generator=vllm", "vllm_kwargs={gpu_memory_utilization: 0.5, tensor_parallel_size: 2}"]
    config = load_run_config(None, settings(workspace, tmp_path / "run", *extra))
    assert config.generator == "vllm"
    assert config.vllm_kwargs == {"gpu_memory_utilization": 0.5, "tensor_parallel_size": 2}


def test_vllm_generator_without_vllm_is_an_input_error(workspace, no_vllm):
    with pytest.raises(InputError, match=r"vLLM is not installed.*larpo\[vllm\]"):
        VLLMGenerator(workspace / "model")


def test_run_with_vllm_missing_fails_before_writing(workspace, tmp_path, no_vllm):
    run_dir = tmp_path / "run"
    config = load_run_config(None, settings(workspace, run_dir, "generator=vllm"))
    with pytest.raises(InputError, match="vLLM is not installed"):
        RunContext.open(config)
    assert not run_dir.exists()


def test_request_seeds_are_stable_distinct_and_fit_int64():
    seeds = [request_seed(seed, i) for seed in range(3) for i in range(100)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**62 for s in seeds)
    # the seed of prompt 7 under seed 5, pinned: a change would change every vLLM run's samples
    assert request_seed(5, 7) == 2012662530367932713


def test_run_started_before_the_generator_setting_resumes(workspace, tmp_path):
    run_dir = tmp_path / "run"
    run(workspace, run_dir, "iterations=1", "eval_prompts=null")
    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for key in ("generator", "vllm_kwargs"):
        del manifest["config"][key]
    manifest_path.write_text(json.dumps(manifest))
    resumed = run(workspace, run_dir, "iterations=2", "eval_prompts=null")
    assert set(resumed["completed"]) == {"0", "1"}
