"""Two CPU processes (torchrun, gloo) train exactly like one process with the same global batch, and so
does gradient accumulation (the invariance tests of the foundation and scale-out issues)."""

import os
import subprocess
import sys

import pytest
import torch

SCRIPT = "tests/scripts/train_tiny.py"


def train(tmp_path, name, batch_size, accumulation, processes=1):
    out = tmp_path / f"{name}.pt"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.getcwd(), "OMP_NUM_THREADS": "1"}
    if processes == 1:
        command = [sys.executable, SCRIPT]
    else:
        # torchrun is what `accelerate launch` runs for multi-GPU; on CPU it gives Trainer a gloo group
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), SCRIPT]
    result = subprocess.run([*command, str(out), str(batch_size), str(accumulation)], env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(out)


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    single = train(tmp_path, "single", batch_size=4, accumulation=1)
    double = train(tmp_path, "ddp", batch_size=2, accumulation=1, processes=2)
    accumulated = train(tmp_path, "accum", batch_size=1, accumulation=4)
    torch.testing.assert_close(double["weights"], single["weights"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(accumulated["weights"], single["weights"], atol=1e-5, rtol=1e-4)
    assert len(single["losses"]) == len(double["losses"]) == 4  # 8 lists / global batch 4 * 2 epochs
    assert double["losses"] == pytest.approx(single["losses"], abs=1e-4)
