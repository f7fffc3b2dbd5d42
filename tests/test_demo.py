"""A shortened ``larpo demo``: flawed-demonstration SFT, then LarPO raises held-out accuracy above it.

The full demo's numbers (3 seeds, 1,000 held-out problems) come from ``benchmarks/listwise_search.py --test``;
this test keeps the same pipeline small enough for CI.
"""

import dataclasses
import json
import shutil

import pytest

from larpo.losses import OBJECTIVES
from larpo.tasks.arithmetic import answer, demonstrations, flawed_answer, train_and_heldout_splits
from larpo.tasks.arithmetic.demo import DemoSettings, prepare_start, prompt_splits, run_demo
from tests.helpers import SHORT_DEMO as SHORT


@pytest.fixture(scope="module")
def short_demo(tmp_path_factory):
    output = tmp_path_factory.mktemp("demo")
    report = run_demo(output, SHORT)
    return output, report


def test_short_demo_aligns_above_its_sft_start(short_demo):
    output, report = short_demo
    on_disk = json.loads((output / "report.json").read_text())
    assert on_disk["sft"] == report["sft"] and on_disk["final"] == report["final"]
    before, after = report["sft"]["greedy_accuracy"], report["final"]["greedy_accuracy"]
    assert 0.2 <= before <= 0.6  # a deliberately imperfect start
    assert after > before + 0.03, (before, after)
    assert set(report["final"]["pass_at_k"]) == {"1"}
    assert [row["iteration"] for row in report["iterations"]] == [-1, 0, 1]
    assert report["iterations"][0]["greedy_accuracy"] == before
    assert report["iterations"][-1]["greedy_accuracy"] == after
    assert (output / "sft" / "config.json").is_file() and (output / "sft" / "tokenizer.json").is_file()
    assert (output / "report_iterations.png").stat().st_size > 0


def test_short_demo_resumes_without_redoing_work(short_demo):
    output, report = short_demo
    model = output / "run" / "iter_1" / "model" / "model.safetensors"
    stamp = model.stat().st_mtime_ns
    assert run_demo(output, SHORT)["final"] == report["final"]
    assert model.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_every_objective_runs_in_the_demo(short_demo, tmp_path, objective):
    """One small iteration per objective from the shortened demo's SFT model."""
    output = tmp_path / objective
    output.mkdir()
    shutil.copytree(short_demo[0] / "sft", output / "sft")
    settings = dataclasses.replace(
        SHORT,
        objective=objective,
        reward="graded",
        iterations=1,
        prompts_per_iteration=48,
        heldout_prompts=48,
    )
    report = run_demo(output, settings)
    train = report["iterations"][-1]
    assert train["lists"] > 0 and train["train_loss"] is not None
    assert report["settings"]["objective"] == objective


def test_flawed_demonstrations_follow_the_error_rate():
    prompts = [f"{a}+{b}=" for a in range(10, 100, 7) for b in range(15, 100, 9)]
    wrong = [p for p in prompts if flawed_answer(p) != answer(p)]  # the ones that need a carry
    targets = demonstrations(prompts, 0.6, seed=1)
    flawed = sum(t != answer(p) for p, t in zip(prompts, targets, strict=True))
    assert flawed == sum(t == flawed_answer(p) != answer(p) for p, t in zip(prompts, targets, strict=True))
    assert 0.5 < flawed / len(wrong) < 0.7
    assert demonstrations(prompts, 0.0, seed=1) == [answer(p) for p in prompts]


@pytest.mark.parametrize("seed", [0, 1])
def test_demo_splits_are_disjoint_and_adding_validation_changed_no_other(seed):
    settings = DemoSettings(seed=seed)
    splits = prompt_splits(settings)
    sizes = {name: len(prompts) for name, prompts in splits.items()}
    assert sizes == {"train": 12000, "heldout": 1000, "validation": 1000, "sft_stop": 200}
    assert len(set().union(*splits.values())) == 14200  # pairwise disjoint, no repeats
    # train, test (heldout) and the SFT stop problems are the draw the demo made before validation existed
    train, rest = train_and_heldout_splits(12000, 1200, seed)
    assert (splits["train"], splits["heldout"] + splits["sft_stop"]) == (train, rest)
    assert [sum(op in p[1:] for p in splits["validation"]) for op in "+-*"] == [334, 333, 333]
    assert prompt_splits(settings) == splits
    assert prompt_splits(DemoSettings(seed=seed + 2))["validation"] != splits["validation"]


def test_prepare_start_writes_the_three_prompt_files(tmp_path):
    settings = DemoSettings(
        train_prompts=300, heldout_prompts=60, validation_prompts=90, sft_validation_prompts=30
    )
    (tmp_path / "sft").mkdir()
    (tmp_path / "sft" / "config.json").write_text("{}")  # an existing SFT start: kept, not trained
    budget = prepare_start(tmp_path, settings, console=None)
    splits = prompt_splits(settings)
    for name in ("train", "heldout", "validation"):
        lines = (tmp_path / f"{name}_prompts.jsonl").read_text().splitlines()
        assert [json.loads(line)["prompt"] for line in lines] == splits[name]
    assert budget == 5  # 3-digit times 1-digit: up to 4 digits, then EOS
