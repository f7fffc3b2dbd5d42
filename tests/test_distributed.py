"""Two CPU processes started by `accelerate launch` train exactly like one process with the same global
batch, and so does gradient accumulation (the invariance tests of the foundation and scale-out issues).

On CPU, `accelerate launch --cpu --num_processes 2` and a config with `distributed_type: MULTI_CPU` start
ONE process (accelerate 1.15 hands multi-CPU to mpirun only). The multi-GPU launcher (`distributed_type:
MULTI_GPU`, examples/accelerate/ddp.yaml) starts them through torchrun, and a program that trains on CPU
(`use_cpu=True` or ACCELERATE_USE_CPU=true) then joins a gloo group: that is what these tests use, for
the trainer alone, for `larpo train` and for `larpo run` (generation and scoring sharded by chunk).
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


def launch(processes, *args, **env):
    """Run ``python args`` as one process, or as ``processes`` under accelerate launch; it must succeed."""
    command = accelerate_launch(processes) if processes > 1 else [sys.executable]
    result = subprocess.run([*command, *map(str, args)], env=environment(**env), capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def train(tmp_path, name, batch_size, accumulation, processes=1):
    out = tmp_path / f"{name}.pt"
    launch(processes, SCRIPT, out, batch_size, accumulation)
    return torch.load(out)


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    single = train(tmp_path, "single", batch_size=4, accumulation=1)
    double = train(tmp_path, "ddp", batch_size=2, accumulation=1, processes=2)
    assert (single["processes"], double["processes"]) == (1, 2)
    assert (single["engine"], double["engine"]) == ("none", "ddp")
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
    result = launch(2, "-m", "larpo.cli", "train", "--model", tmp_path / "model", "--data",
                    "examples/data/arithmetic_lists.jsonl", "--output", tmp_path / "out", "--config", config,
                    "--epochs", "1", ACCELERATE_USE_CPU="true")  # fmt: skip
    lists = sum(1 for _ in open("examples/data/arithmetic_lists.jsonl"))
    assert f"trained on {lists} lists with contrastive in 2 process(es) " in result.stdout
    # auto on a CPU, prompts of 6-7 tokens and 4 answers of about 4: the shared prefix, one LM-head chunk
    assert "(shared_prefix true, logprob_chunk_size 0); LoRA adapter saved" in result.stdout
    assert result.stdout.count("trained on") == 1  # only the main process reports
    steps = [h for h in json.loads((tmp_path / "out" / "train_log.json").read_text()) if "loss" in h]
    assert len(steps) == -(-lists // 8)  # one epoch, global batch: 2 processes x 4 lists
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()


def test_train_refuses_processes_that_would_each_train_alone(monkeypatch, capsys, tmp_path):
    from tests.helpers import run_cli

    monkeypatch.setenv("WORLD_SIZE", "2")  # as set by a launcher; this process trains without a group
    code, _, err = run_cli(monkeypatch, capsys, "train", "--model", tmp_path / "model", "--data",
                           "examples/data/arithmetic_lists.jsonl", "--output", tmp_path / "out")  # fmt: skip
    assert code == 2 and "larpo: error: launched as 2 processes, but each would train alone" in err


@pytest.mark.parametrize(
    ("variable", "message"),
    [("WORLD_SIZE", "launched as 2 processes, but each would train alone"),  # a launcher, no group
     ("ACCELERATE_USE_FSDP", "larpo run trains with DDP only, not FSDP"),
     ("ACCELERATE_USE_DEEPSPEED", "larpo run trains with DDP only, not DeepSpeed")],
)  # fmt: skip
def test_run_refuses_launches_it_cannot_use(workspace, monkeypatch, capsys, tmp_path, variable, message):
    from tests.helpers import run_cli, settings

    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)  # with it, WORLD_SIZE=2 would wait for a group
    monkeypatch.setenv(variable, "2" if variable == "WORLD_SIZE" else "true")
    sets = [arg for item in settings(workspace, tmp_path / "run") for arg in ("--set", item)]
    code, _, err = run_cli(monkeypatch, capsys, "run", *sets)
    assert code == 2 and f"larpo: error: {message}" in err
    assert not (tmp_path / "run").exists()


def test_a_process_leaves_its_group_before_it_exits():
    """`larpo` destroys the group a launch made; without a group it does nothing."""
    import torch.distributed as dist

    from larpo.distributed import leave_process_group

    assert leave_process_group() is False  # no group: nothing to do
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        dist.all_reduce(torch.ones(2))
        assert leave_process_group() is True
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


END_A_LAUNCHED_PROCESS = """
import atexit, sys, threading, time
import torch, torch.distributed as dist
from larpo.distributed import end_launched_process

end_launched_process()  # no group: returns
dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 4))  # keeps the group's threads alive
model(torch.ones(2, 4)).sum().backward()
atexit.register(print, "exit handler ran")
threading.Thread(target=lambda: (time.sleep(0.2), print("thread finished"))).start()
sys.stdout.write("unflushed ")
end_launched_process()
print("not reached")
"""


def test_a_launched_process_ends_without_the_interpreter_teardown():
    """After its work, a launched process (one in a group) ends with code 0, its threads joined, its exit
    handlers run and its output flushed, without the interpreter's teardown, in which a gloo worker thread
    can abort the process ("terminate called without an active exception")."""
    result = subprocess.run([sys.executable, "-c", END_A_LAUNCHED_PROCESS], env=environment(),
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[:3] == ["unflushed thread finished", "exit handler ran", ""]


def test_vllm_generation_is_not_sharded_across_processes(workspace, monkeypatch, tmp_path):
    from types import SimpleNamespace

    from larpo.errors import InputError
    from larpo.run import RunContext
    from larpo.run.config import load_run_config
    from tests.helpers import settings

    state = SimpleNamespace(num_processes=2, is_main_process=True)  # the main one of 2 processes
    monkeypatch.setattr("larpo.run.context.process_state", lambda: state)
    with pytest.raises(InputError, match="generator 'vllm' runs in one process .*without accelerate launch"):
        RunContext.open(load_run_config(None, settings(workspace, tmp_path / "run", "generator=vllm")))


def larpo_run(workspace, run_dir, processes, batch_size):
    """`larpo run` for one iteration with held-out evaluation, as one process or under accelerate launch."""
    from tests.helpers import settings

    overrides = settings(workspace, run_dir, "iterations=1", f"batch_size={batch_size}", "drop_all_tied=false",
                         f"eval_prompts={workspace / 'prompts.jsonl'}", "eval_samples=2", "eval_ks=[1, 2]")  # fmt: skip
    sets = [arg for item in overrides for arg in ("--set", item)]
    return launch(processes, "-m", "larpo.cli", "run", *sets, ACCELERATE_USE_CPU="true")


def test_larpo_run_in_two_processes_matches_one_process(workspace, tmp_path):
    """The README's `accelerate launch ... -m larpo.cli run`: each process samples and scores its share of the
    chunks, the main process merges them; the store, the manifest and the trained model are those of one
    process with the same global batch (2 processes x 2 lists = 1 x 4)."""
    from safetensors.torch import load_file

    from larpo.run.runner import STAGE_NAMES as STAGES
    from tests.helpers import PROMPTS, check_store

    runs = {processes: tmp_path / f"run{processes}" for processes in (1, 2)}
    outputs = {n: larpo_run(workspace, run_dir, n, batch_size=4 // n).stdout for n, run_dir in runs.items()}
    manifests = {n: json.loads((run_dir / "manifest.json").read_text()) for n, run_dir in runs.items()}
    one, two = manifests[1]["completed"], manifests[2]["completed"]
    assert list(two) == ["-1", "0"] and list(two["0"]) == list(STAGES)
    check_store(runs[2], manifests[2], iterations=1)  # every prompt's k samples, once, scored
    for name in ("candidates/iter_0.jsonl", "iter_0/lists.jsonl"):
        assert (runs[2] / name).read_bytes() == (runs[1] / name).read_bytes(), name
    for stage in ("generate", "score", "lists"):
        assert two["0"][stage] == one["0"][stage], stage
    assert two["0"]["lists"]["lists_built"] == PROMPTS  # a multiple of the global batch: no padded batch
    assert two["0"]["train"]["steps"] == one["0"]["train"]["steps"] == PROMPTS // 4
    assert two["0"]["train"]["loss"] == pytest.approx(one["0"]["train"]["loss"], abs=1e-4)
    assert two["-1"] == one["-1"]  # the initial model's evaluation, by the main process
    for key, value in one["0"]["eval"].items():  # the trained model's, within the weights' tolerance
        expected = value if isinstance(value, dict) else pytest.approx(value, abs=1e-5)
        assert two["0"]["eval"][key] == expected, key
    weights = [load_file(runs[n] / "iter_0" / "model" / "model.safetensors") for n in (1, 2)]
    assert weights[0].keys() == weights[1].keys()
    for name, tensor in weights[0].items():
        torch.testing.assert_close(weights[1][name], tensor, atol=1e-5, rtol=1e-4)
    logged = [json.loads(line)["stage"] for line in (runs[2] / "log.jsonl").read_text().splitlines()]
    assert logged == list(STAGES)  # written by the main process alone
    assert outputs[2].count("finished 1 iterations") == outputs[1].count("finished 1 iterations") == 1


def test_each_process_samples_its_own_chunks_and_the_main_one_merges(workspace, tmp_path, monkeypatch):
    """Rank 1 of 2 writes only the part file it owns (chunk 1 of 0..2) and nothing else; rank 0 then samples
    the others, keeps rank 1's part and merges them into the store that one process writes."""
    from types import SimpleNamespace

    from larpo.run import RunContext, generate
    from larpo.run.config import load_run_config
    from tests.helpers import settings

    def runner(run_dir):
        return RunContext.open(load_run_config(None, settings(workspace, run_dir, "iterations=1")))

    single = generate.stage(runner(tmp_path / "single"), 0)
    state = SimpleNamespace(num_processes=2, process_index=1, is_main_process=False,
                            wait_for_everyone=lambda: None)  # fmt: skip
    monkeypatch.setattr("larpo.run.context.process_state", lambda: state)
    other, main = runner(tmp_path / "sharded"), runner(tmp_path / "sharded")  # both check before any write
    assert generate.stage(other, 0) == {}
    files = [p.relative_to(tmp_path) for p in tmp_path.joinpath("sharded").rglob("*") if p.is_file()]
    assert files == [Path("sharded/candidates/iter_0.parts/000001.jsonl")]  # 8 prompts in chunks of 3
    part = (tmp_path / files[0]).read_bytes()
    state.process_index, state.is_main_process = 0, True
    assert generate.stage(main, 0) == single
    assert not (tmp_path / "sharded" / "candidates" / "iter_0.parts").exists()
    store = (tmp_path / "sharded" / "candidates" / "iter_0.jsonl").read_bytes()
    assert store == (tmp_path / "single" / "candidates" / "iter_0.jsonl").read_bytes()
    assert part in store
