"""``larpo demo``'s wall time now against a baseline commit, both measured in one run on one machine.

Run: python benchmarks/bench_demo_time.py [--baseline eb3586e] [--repeats 1] [--seed 0]

The baseline's source is checked out into a temporary git worktree; each demo runs as a fresh process
(``python -m larpo.cli demo --output DIR --seed N``) with ``PYTHONPATH`` pointing at one source tree or the
other, alternating baseline and current ``--repeats`` times so that a change in the machine's load hits
both. Prints wall and CPU seconds (user + system) of each, the new/old ratios of their medians, and each
run's held-out greedy accuracy before and after (from its ``report.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchutil import machine_info

REPO = Path(__file__).resolve().parents[1]


def timed_demo(source: Path, output: Path, seed: int) -> dict:
    """Run one demo from ``source``'s ``src`` tree; its wall and CPU seconds and its accuracies."""
    env = {**os.environ, "PYTHONPATH": str(source / "src"), "HF_HUB_OFFLINE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    command = [sys.executable, "-m", "larpo.cli", "demo", "--output", str(output), "--seed", str(seed)]
    subprocess.run(command, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = json.loads((output / "report.json").read_text())
    return {
        "wall": wall,
        "cpu": after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime,
        "sft": report["sft"]["greedy_accuracy"],
        "final": report["final"]["greedy_accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="eb3586e")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="keep the demos' output folders here")
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"baseline": [], "current": []}
    with tempfile.TemporaryDirectory() as tmp:
        outputs = args.keep or Path(tmp)
        baseline = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(baseline), args.baseline],
                       check=True, capture_output=True)  # fmt: skip
        try:
            for repeat in range(args.repeats):
                for name, source in (("baseline", baseline), ("current", REPO)):
                    result = timed_demo(source, outputs / f"{name}{repeat}", args.seed)
                    runs[name].append(result)
                    print(f"{name} run {repeat + 1}: {json.dumps(result)}", flush=True)
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(baseline)], check=False
            )
    wall = {name: statistics.median(r["wall"] for r in rs) for name, rs in runs.items()}
    cpu = {name: statistics.median(r["cpu"] for r in rs) for name, rs in runs.items()}
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {machine_info(threads=2)}; load {os.getloadavg()[0]:.1f}")
    print(f"baseline {args.baseline}: wall {wall['baseline']:.0f} s, CPU {cpu['baseline']:.0f} s")
    print(f"current: wall {wall['current']:.0f} s, CPU {cpu['current']:.0f} s")
    print(
        f"new/old: wall {wall['current'] / wall['baseline']:.2f}, CPU {cpu['current'] / cpu['baseline']:.2f}"
    )


if __name__ == "__main__":
    main()
