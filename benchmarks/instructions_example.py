"""The README's "Align to instructions" numbers: the example config on 3 seeds, before and after.

Runs ``larpo run --config examples/chat/smollm2_instructions.yaml`` once per seed (seed 0 in the config's own
``output_dir``, the others beside it, suffixed ``_seed<s>``; finished runs are reused, unfinished ones resume)
and writes their test-split results to ``docs/benchmarks/smollm2_instructions.json``: IFEval's accuracies and
pass@1 before and after, their gains with mean and min..max over seeds, each run's stage seconds, and 5 test
replies before and after (seed 0). Needs ``runs/smollm2`` and ``runs/instructions`` (the README's steps).

The pretrained model is evaluated once, in seed 0's run: greedy decoding does not depend on the seed, so the
other seeds' runs leave their evaluations out (``eval_prompts=null``) and ``larpo eval`` measures only their
final models with the config's evaluation settings (their pass@1 samples with their own seed).

    python benchmarks/instructions_example.py                 # 3 seeds, one run at a time
    python benchmarks/instructions_example.py --summarize     # only read the finished runs
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from datetime import date
from pathlib import Path

import yaml

CONFIG = Path("examples/chat/smollm2_instructions.yaml")
RESULT = Path("docs/benchmarks/smollm2_instructions.json")
METRICS = ("prompt_level_strict", "instruction_level_strict", "prompt_level_loose", "instruction_level_loose")


def run_dir(seed: int) -> Path:
    base = yaml.safe_load(CONFIG.read_text())["output_dir"]
    return Path(base if seed == 0 else f"{base}_seed{seed}")


def run_seed(seed: int) -> None:
    """Seed 0: the README's command. Other seeds: the run without evaluations, then its final model's."""
    directory = run_dir(seed)
    run = [
        "larpo",
        "run",
        "--config",
        str(CONFIG),
        "--set",
        f"seed={seed}",
        "--set",
        f"output_dir={directory}",
    ]
    _call(run if seed == 0 else [*run, "--set", "eval_prompts=null"])
    if seed != 0 and not (final_eval_dir(seed) / "eval.json").exists():
        config = yaml.safe_load(CONFIG.read_text())
        _call(["larpo", "eval", "--model", str(directory / f"iter_{config['iterations'] - 1}" / "model"),
               "--prompts", config["eval_prompts"], "--reward", config["eval_reward"], "--output",
               str(final_eval_dir(seed)), "--num-samples", "1", "--k", "1", "--temperature", "1.0",
               "--max-new-tokens", str(config["max_new_tokens"]), "--seed", str(seed),
               "--batch-size", str(config["generation_batch_size"])])  # fmt: skip


def final_eval_dir(seed: int) -> Path:
    """Where ``larpo eval`` writes the final model's test evaluation of a seed other than 0."""
    return run_dir(seed) / "eval_test"


def _call(command: list[str]) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def measures(result: dict) -> dict[str, float]:
    """The test numbers of one evaluation file: IFEval's four accuracies of the greedy replies, and pass@1."""
    return {**result["instruction_following"], "pass_at_1": result["pass_at_k"]["1"]}


def seed_result(seed: int) -> dict:
    directory = run_dir(seed)
    iterations = yaml.safe_load(CONFIG.read_text())["iterations"]
    before = json.loads((run_dir(0) / "eval" / "initial.json").read_text())
    final = (
        directory / "eval" / f"iter_{iterations - 1}.json"
        if seed == 0
        else final_eval_dir(seed) / "eval.json"
    )
    after = json.loads(final.read_text())
    log = [json.loads(line) for line in (directory / "log.jsonl").read_text().splitlines()]
    seconds: dict[str, float] = {}
    for entry in log:
        if "stage" in entry and "seconds" in entry:
            key = f"{entry['stage']}_{entry['iteration']}"
            seconds[key] = round(seconds.get(key, 0.0) + entry["seconds"], 1)
    return {"seed": seed, "run_dir": str(directory), "before": measures(before), "after": measures(after),
            "stage_seconds": seconds, "replies": list(zip(before["greedy_outputs"], after["greedy_outputs"], strict=True))}  # fmt: skip


def spread(values: list[float]) -> dict[str, float]:
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values)}


def summarize(seeds: list[int]) -> dict:
    runs = [seed_result(s) for s in seeds]
    prompts = [json.loads(line) for line in Path(yaml.safe_load(CONFIG.read_text())["eval_prompts"]).open()]
    gains = {
        m: spread([100 * (r["after"][m] - r["before"][m]) for r in runs]) for m in (*METRICS, "pass_at_1")
    }
    examples = [{"prompt": prompts[i]["prompt"][-1]["content"], "before": runs[0]["replies"][i][0],
                 "after": runs[0]["replies"][i][1]} for i in range(0, len(prompts), len(prompts) // 5)][:5]  # fmt: skip
    for r in runs:
        del r["replies"]
    return {
        "command": "python benchmarks/instructions_example.py",
        "config": str(CONFIG),
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {_cpu_model()}",
        "test_prompts": len(prompts),
        "runs": runs,
        "gain_points": gains,
        "examples_seed0": examples,
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def markdown(summary: dict) -> str:
    rows = [
        "| test split | before | after (mean over seeds) | gain, points: mean (min..max) |",
        "|---|---|---|---|",
    ]
    for metric, gain in summary["gain_points"].items():
        before = sum(r["before"][metric] for r in summary["runs"]) / len(summary["runs"])
        after = sum(r["after"][metric] for r in summary["runs"]) / len(summary["runs"])
        rows.append(f"| {metric.replace('_', ' ')} | {before:.3f} | {after:.3f} | "
                    f"{gain['mean']:+.1f} ({gain['min']:+.1f}..{gain['max']:+.1f}) |")  # fmt: skip
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--summarize", action="store_true", help="only read the finished runs")
    args = parser.parse_args()
    if not args.summarize:
        for seed in args.seeds:
            run_seed(seed)
    summary = summarize(args.seeds)
    RESULT.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(markdown(summary))
    print(f"wrote {RESULT}", file=sys.stderr)


if __name__ == "__main__":
    main()
