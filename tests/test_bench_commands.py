"""The commands benchmarks record in their result files: rerunnable from the checkout, with no path that
exists only on the machine that ran them."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from benchutil import REPO, portable_command, portable_path  # noqa: E402


def test_machine_paths_become_relative_paths_or_placeholders():
    argv = [str(REPO / "benchmarks" / "bench_vllm_cpu.py"), "/data/models/smollm2-135m-instruct",
            "--prompts", str(REPO / "runs" / "chat_arithmetic" / "train.jsonl"),
            "--vllm-python", "/opt/venvs/vllm/bin/python", "--output=/tmp/scratch/out", "--threads", "1",
            "--vllm-kwargs", '{"max_model_len": 2048}']  # fmt: skip
    placeholders = {"": "MODEL_DIR", "--vllm-python": "VLLM_VENV/bin/python"}
    assert portable_command(argv, placeholders) == (
        "python benchmarks/bench_vllm_cpu.py MODEL_DIR --prompts runs/chat_arithmetic/train.jsonl "
        "--vllm-python VLLM_VENV/bin/python --output=DIR/out --threads 1 --vllm-kwargs '{\"max_model_len\": 2048}'"
    )


def test_relative_paths_and_numbers_are_kept_as_typed():
    argv = ["benchmarks/chat_arms.py", "--model", "runs/smollm2", "--lr", "-1e-3", "--seeds", "0", "1"]
    assert (
        portable_command(argv) == "python benchmarks/chat_arms.py --model runs/smollm2 --lr -1e-3 --seeds 0 1"
    )
    assert portable_path("runs/smollm2", "MODEL_DIR") == "runs/smollm2"
    assert portable_path("/elsewhere/smollm2", "MODEL_DIR") == "MODEL_DIR"
