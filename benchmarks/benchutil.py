"""Helpers shared by the trainer-cost benchmarks: machine description, peak-RSS sampling, step timing,
a synthetic fixed-length vocabulary and a mid-sized Llama built locally."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import psutil
from transformers import TrainerCallback

REPO = Path(__file__).resolve().parent.parent

# Character alphabets: every character is one token of larpo.tiny.char_tokenizer (4 special tokens are added).
DIGITS = "0123456789+="


def wide_alphabet(size: int) -> str:
    """``size`` distinct CJK characters: a char tokenizer over them has ``size + 4`` tokens."""
    return "".join(chr(0x4E00 + i) for i in range(size))


def worker_env(threads: int) -> dict[str, str]:
    """Environment of a benchmark subprocess: this checkout's ``src`` and ``benchmarks`` first on the path,
    no hub, and ``threads`` intra-op threads (on an oversubscribed machine 2 OpenMP threads waiting on
    each other's barriers made a step several times slower and much noisier than 1 thread)."""
    here = Path(__file__).resolve().parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(here), str(here.parent / "src"), *filter(None, [env.get("PYTHONPATH")])]
    )
    env.update(
        HF_HUB_OFFLINE="1", TQDM_DISABLE="1", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads)
    )
    return env


def machine_info(threads: int, alone: bool = False) -> str:
    """One line: CPU model, cores (``alone``: the benchmark runs one run at a time), threads and library
    versions."""
    model = platform.processor() or platform.machine()
    if shutil.which("lscpu"):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
                break
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("torch", "transformers", "trl", "datasets")
        if _installed(name)
    )
    return (
        f"{model}, {os.cpu_count()} cores ({'one run at a time' if alone else 'shared with other jobs'}), "
        f"{threads} torch thread{'s' if threads > 1 else ''} per process, "
        f"Python {platform.python_version()}; {versions}"
    )


def load_average() -> str:
    """``uptime``'s line: how busy the (possibly shared) machine is."""
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def portable_command(argv: list[str], placeholders: dict[str, str] | None = None) -> str:
    """``python <argv>`` as a reader of the recorded result can rerun it from the checkout's root.

    A path in ``argv`` that exists only on this machine is not recorded: the script (``argv[0]``) and any
    absolute path inside the checkout become relative to its root (``runs/smollm2``); any other absolute
    path becomes the placeholder that ``placeholders`` gives for the option it follows
    (``{"--vllm-python": "VLLM_VENV/bin/python"}``; the key ``""`` is for positional arguments before the
    first option), else ``DIR/<its last component>``. Relative paths and other words are kept as typed;
    the result is quoted for a POSIX shell."""
    placeholders = placeholders or {}
    script = Path(argv[0]).resolve()
    words = ["python", str(script.relative_to(REPO)) if script.is_relative_to(REPO) else script.name]
    option = ""
    for arg in argv[1:]:
        if arg.startswith("-") and not _is_number(arg):
            name, equals, value = arg.partition("=")
            option = "" if equals else name
            words.append(name + equals + portable_path(value, placeholders.get(name)) if equals else arg)
        else:
            words.append(portable_path(arg, placeholders.get(option)))
    return shlex.join(words)


def portable_path(arg: str, placeholder: str | None = None) -> str:
    """``arg`` as :func:`portable_command` records it: relative paths unchanged, absolute ones inside the
    checkout relative to its root, others ``placeholder`` (default ``DIR/<last component>``)."""
    path = Path(arg)
    if not path.is_absolute():
        return arg
    if path.resolve().is_relative_to(REPO):
        return str(path.resolve().relative_to(REPO))
    return placeholder or f"DIR/{path.name}"


def _is_number(arg: str) -> bool:
    try:
        float(arg)
    except ValueError:
        return False
    return True


def run_header(threads: int, placeholders: dict[str, str] | None = None) -> dict[str, str]:
    """What a benchmark prints first: its command line (:func:`portable_command`, with ``placeholders``),
    the UTC date, the machine and its load."""
    return {
        "command": portable_command(sys.argv, placeholders),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(threads),
        "load": load_average(),
    }


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def bench_llama(vocab_size: int, hidden_size: int = 256, num_layers: int = 4, max_positions: int = 512):
    """A randomly initialised Llama (head_dim 64), seeded, fp32."""
    from larpo.tiny import tiny_llama

    return tiny_llama(
        vocab_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=hidden_size // 64,
        max_positions=max_positions,
    )


def rss_bytes() -> int:
    return psutil.Process().memory_info().rss


def max_rss_bytes() -> int:
    """Peak RSS of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakRSS:
    """Sample this process's RSS from a background thread while the ``with`` block runs."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, process.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def cuda_synchronize() -> None:
    """Wait for queued CUDA kernels where this process uses CUDA (no-op on CPU; never initialises CUDA)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class StepTimer(TrainerCallback):
    """Wall-clock time at the end of every optimizer step (data loading, forward, backward, optimizer),
    synchronised with the GPU when CUDA is in use."""

    def __init__(self) -> None:
        self.start = 0.0
        self.ends: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        cuda_synchronize()
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        cuda_synchronize()
        self.ends.append(time.perf_counter())

    def seconds_after(self, warmup: int) -> tuple[float, int]:
        """(seconds, steps) from the end of step ``warmup`` to the end of the last step."""
        if len(self.ends) <= warmup:
            raise ValueError(f"only {len(self.ends)} steps ran, {warmup} are warm-up")
        begin = self.ends[warmup - 1] if warmup else self.start
        return self.ends[-1] - begin, len(self.ends) - warmup


def run_worker(
    script: str | Path,
    spec: dict,
    label: str,
    python: str = sys.executable,
    extra_env: dict[str, str] | None = None,
) -> dict:
    """Run ``script --worker <spec as JSON>`` in a fresh process (its own peak RSS) and return the dict it
    prints on a ``RESULT <json>`` line; ``label`` names the run if it fails. ``python`` is the interpreter
    (another virtual environment's), ``extra_env`` is added to :func:`worker_env`."""
    proc = subprocess.run(
        [python, str(Path(script).resolve()), "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        env={**worker_env(spec["threads"]), **(extra_env or {})},
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{label} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def mib(value: float) -> str:
    """Bytes as whole MiB."""
    return f"{value / 2**20:.0f}"


def save_figure(fig, path: Path) -> None:
    """Lay out ``fig``, write it to ``path`` (creating its folder) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def write_markdown(path: Path, lines: list[str]) -> None:
    """Write a report's lines to ``path`` (creating its folder) and print them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print("\n".join(lines))


def write_iteration_report(
    output: Path, stem: str, result: dict, title: str, description: str, table: list[str]
) -> None:
    """Write an :func:`iteration_benchmark` ``result`` to ``output`` as ``<stem>.json`` and its report
    ``<stem>.md``: ``title``, the command, machine and date, ``description``, then the ``table``'s lines."""
    (output / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    command = f"Command: `{result['command']}`. Machine: {result['machine']}. Date: {result['date']}."
    write_markdown(output / f"{stem}.md", [f"# {title}", "", command, "", description, "", *table, ""])


def iteration_benchmark(doc: str, measure: Callable[..., dict], argv: list[str] | None) -> tuple[Path, dict]:
    """The command line of a benchmark that measures iterations of a finished ``larpo run``, ``RUN_DIR
    [--iterations S ...] [--output DIR]`` (``doc``'s first line its description): ``measure(ctx, s)`` on each
    iteration of the run's context. Returns the output folder and the result: the run header, the machine
    (one run at a time), the run folder and the rows."""
    import torch

    from larpo.run.config import RunConfig
    from larpo.run.context import RunContext

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--iterations", type=int, nargs="+", default=[0])
    parser.add_argument("--output", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args(argv)
    manifest = json.loads((args.run_dir / "manifest.json").read_text())
    ctx = RunContext.open(RunConfig(**manifest["config"]))
    rows = [measure(ctx, s) for s in args.iterations]
    threads = torch.get_num_threads()
    args.output.mkdir(parents=True, exist_ok=True)
    return args.output, {**run_header(threads), "machine": machine_info(threads, alone=True),
                         "run": str(args.run_dir), "rows": rows}  # fmt: skip
