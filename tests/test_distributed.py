"""Two CPU processes started by `accelerate launch` train exactly like one process with the same global
batch, and so does gradient accumulation (the invariance tests of the foundation and scale-out issues).

On CPU, `accelerate launch --cpu --num_processes 2` and a config with `distributed_type: MULTI_CPU` start
ONE process (accelerate 1.15 hands multi-CPU to mpirun only). The multi-GPU launcher (`distributed_type:
MULTI_GPU`, examples/accelerate/ddp.yaml) starts them through torchrun, and a program that trains on CPU
(`use_cpu=True` or ACCELERATE_USE_CPU=true) then joins a gloo group: that is what these tests use.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import larpo

SCRIPT = "tests/scripts/train_tiny.py"
DDP_CONFIG = "examples/accelerate/ddp.yaml"


def environment(**extra):
    """This checkout's larpo (src) and tests importable in a subprocess, one thread per process."""
    path = os.pathsep.join(
        [os.getcwd(), str(Path(larpo.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
    )
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **extra}


def accelerate_launch(processes):
    with socket.socket() as probe:  # a free rendezvous port: other test runs may hold the default one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", DDP_CONFIG,
            "--num_processes", str(processes), "--main_process_port", str(port)]  # fmt: skip


def train(tmp_path, name, batch_size, accumulation, processes=1):
    out = tmp_path / f"{name}.pt"
    command = accelerate_launch(processes) if processes > 1 else [sys.executable]
    result = subprocess.run([*command, SCRIPT, str(out), str(batch_size), str(accumulation)], env=environment(),
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(out)


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    single = train(tmp_path, "single", batch_size=4, accumulation=1)
    double = train(tmp_path, "ddp", batch_size=2, accumulation=1, processes=2)
    assert (single["processes"], double["processes"]) == (1, 2)
    torch.testing.assert_close(double["weights"], single["weights"], atol=1e-5, rtol=1e-4)
    assert len(single["losses"]) == len(double["losses"]) == 4  # 8 lists / global batch 4 * 2 epochs
    assert double["losses"] == pytest.approx(single["losses"], abs=1e-4)


def test_gradient_accumulation_8x1_matches_one_batch_of_8(tmp_path):
    full = train(tmp_path, "full", batch_size=8, accumulation=1)
    accumulated = train(tmp_path, "accumulated", batch_size=1, accumulation=8)
    assert len(full["losses"]) == len(accumulated["losses"]) == 2  # 8 lists / global batch 8 * 2 epochs
    assert accumulated["losses"] == pytest.approx(full["losses"], abs=1e-5)
    assert full["losses"][1] < full["losses"][0]  # it trained: the second step's loss is lower
    torch.testing.assert_close(accumulated["weights"], full["weights"], atol=1e-5, rtol=1e-4)
    assert not torch.equal(full["weights"], full["initial"])


def test_larpo_train_under_accelerate_launch(tmp_path):
    """The README's command: `accelerate launch --config_file examples/accelerate/ddp.yaml -m larpo.cli train`."""
    from larpo.tiny import char_tokenizer, tiny_llama

    tokenizer = char_tokenizer("0123456789+-*= ", tmp_path / "model")
    tiny_llama(len(tokenizer), hidden_size=32).save_pretrained(tmp_path / "model")
    config = tmp_path / "train.yaml"
    config.write_text("per_device_train_batch_size: 4\nlogging_steps: 1\npeft: {r: 2}\n")
    command = [*accelerate_launch(2), "-m", "larpo.cli", "train", "--model", tmp_path / "model", "--data",
               "examples/data/arithmetic_lists.jsonl", "--output", tmp_path / "out", "--config", config,
               "--epochs", "1"]  # fmt: skip
    lists = sum(1 for _ in open("examples/data/arithmetic_lists.jsonl"))
    result = subprocess.run(list(map(str, command)), env=environment(ACCELERATE_USE_CPU="true"),
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"trained on {lists} lists with contrastive in 2 process(es); LoRA adapter saved" in result.stdout
    assert result.stdout.count("trained on") == 1  # only the main process reports
    steps = [h for h in json.loads((tmp_path / "out" / "train_log.json").read_text()) if "loss" in h]
    assert len(steps) == -(-lists // 8)  # one epoch, global batch: 2 processes x 4 lists
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()


def test_train_refuses_processes_that_would_each_train_alone(monkeypatch, capsys, tmp_path):
    from tests.test_cli import run_cli

    monkeypatch.setenv("WORLD_SIZE", "2")  # as set by a launcher; this process trains without a group
    code, _, err = run_cli(monkeypatch, capsys, "train", "--model", tmp_path / "model", "--data",
                           "examples/data/arithmetic_lists.jsonl", "--output", tmp_path / "out")  # fmt: skip
    assert code == 2 and "larpo: error: launched as 2 processes, but each would train alone" in err
