"""How fast the ``larpo`` command answers what needs no model: ``--help``, ``--version``, ``objectives`` and
a config typo, against ``python -c pass`` measured in the same run (the target is at most 10x).

Run: python benchmarks/bench_cli_startup.py [--repeats 7]

Each command runs as a fresh process ``repeats`` times; the median wall time is reported, with its ratio
to the median of ``python -c pass``. The checks also confirm that these commands never import torch.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LARPO = [sys.executable, "-m", "larpo.cli"]


def commands(workdir: Path) -> dict[str, list[str]]:
    """The timed commands: a baseline interpreter start, then larpo answers that load no model."""
    typo = workdir / "typo.yaml"
    typo.write_text("model: m\nprompts: p.jsonl\nreward: r.py:f\noutput_dir: out\nlerning_rate: 1e-6\n")
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "larpo --help": [*LARPO, "--help"],
        "larpo --version": [*LARPO, "--version"],
        "larpo objectives": [*LARPO, "objectives"],
        "larpo run (config typo)": [*LARPO, "run", "--config", str(typo)],
    }


def median_seconds(command: list[str], repeats: int, env: dict[str, str], cwd: Path) -> tuple[float, int]:
    """Median wall time of ``repeats`` runs and the exit code of the last."""
    times, code = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        code = subprocess.run(command, env=env, cwd=cwd, capture_output=True).returncode
        times.append(time.perf_counter() - started)
    return statistics.median(times), code


def imports_torch(command: list[str], env: dict[str, str], cwd: Path) -> bool:
    """Whether ``command`` (a ``python -m larpo.cli`` call) imports torch, from ``python -X importtime``."""
    if command[:3] != LARPO:
        return False
    result = subprocess.run([sys.executable, "-X", "importtime", *command[1:]], env=env, cwd=cwd,
                            capture_output=True, text=True)  # fmt: skip
    return any(line.rstrip().endswith("| torch") for line in result.stderr.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")]))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        timed = {name: median_seconds(cmd, args.repeats, env, workdir) for name, cmd in commands(workdir).items()}
        torch_loaded = {name: imports_torch(cmd, env, workdir) for name, cmd in commands(workdir).items()}
    base = timed["python -c pass"][0]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"python {platform.python_version()}; median of {args.repeats} runs")  # fmt: skip
    print(f"{'command':<26} {'seconds':>8} {'x python':>9} {'exit':>5}  torch imported")
    for name, (seconds, code) in timed.items():
        print(f"{name:<26} {seconds:8.3f} {seconds / base:9.1f} {code:5d}  {'yes' if torch_loaded[name] else 'no'}")


if __name__ == "__main__":
    main()
