"""How fast the ``larpo`` command answers what needs no model: ``--help``, ``--version``, ``objectives`` and
a config typo, against ``python -c pass`` measured in the same run (the target is at most 10x).

Run: python benchmarks/bench_cli_startup.py [--repeats 7]

Each command runs as a fresh process ``repeats`` times; the medians of its wall time and of its CPU time
(user + system, which a busy shared machine inflates less) are reported with their ratios to those of
``python -c pass``. The last column says whether the command imported torch (it should not).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
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


def median_seconds(
    command: list[str], repeats: int, env: dict[str, str], cwd: Path
) -> tuple[float, float, int]:
    """Median wall and CPU seconds of ``repeats`` runs, and the exit code of the last."""
    wall, cpu, code = [], [], 0
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        code = subprocess.run(command, env=env, cwd=cwd, capture_output=True).returncode
        wall.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(wall), statistics.median(cpu), code


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
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")])
    )
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        timed = {
            name: median_seconds(cmd, args.repeats, env, workdir) for name, cmd in commands(workdir).items()
        }
        torch_loaded = {name: imports_torch(cmd, env, workdir) for name, cmd in commands(workdir).items()}
    base_wall, base_cpu, _ = timed["python -c pass"]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; python {platform.python_version()}; median of {args.repeats} runs")  # fmt: skip
    print(f"{'command':<26} {'wall s':>7} {'x python':>9} {'cpu s':>7} {'x python':>9} {'exit':>5}  torch")
    for name, (wall, cpu, code) in timed.items():
        print(
            f"{name:<26} {wall:7.3f} {wall / base_wall:9.1f} {cpu:7.3f} {cpu / base_cpu:9.1f} {code:5d}  "
            f"{'yes' if torch_loaded[name] else 'no'}"
        )


if __name__ == "__main__":
    main()
