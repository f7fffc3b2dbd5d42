"""benchmarks/paper_studies.py's report, on fake finished runs: the table holds the right numbers, marks
missing arms and counts collapsed seeds."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import paper_studies_report  # noqa: E402
import paper_study_arms  # noqa: E402


def fake_run(run_dir: Path, curve: list[float], pass_at_k: dict[str, float]) -> None:
    """A finished run of len(curve) - 1 iterations: evaluations, 19 steps and 15 s per iteration."""
    iterations = len(curve) - 1
    (run_dir / "eval").mkdir(parents=True)
    for name, accuracy in zip(["initial"] + [f"iter_{s}" for s in range(iterations)], curve, strict=True):
        (run_dir / "eval" / f"{name}.json").write_text(
            json.dumps({"greedy_accuracy": accuracy, "pass_at_k": pass_at_k})
        )
    completed = {str(s): {"train": {"steps": 19}} for s in range(iterations)}
    (run_dir / "manifest.json").write_text(json.dumps({"config": {}, "completed": completed}))
    (run_dir / "log.jsonl").write_text(
        "".join(json.dumps({"seconds": 15.0}) + "\n" for _ in range(iterations))
    )


def test_report_of_a_partial_study(tmp_path):
    out = tmp_path / "runs"
    graded = out / "seed_{}" / "objectives" / "graded"
    fake_run(Path(str(graded).format(0)) / "pairwise", [0.40, 0.46, 0.50], {"1": 0.50, "4": 0.70})
    fake_run(Path(str(graded).format(1)) / "pairwise", [0.42, 0.36, 0.44], {"1": 0.44, "4": 0.60})
    fake_run(Path(str(graded).format(0)) / "contrastive", [0.40, 0.43, 0.47], {"1": 0.45, "4": 0.65})
    fake_run(out / "seed_0" / "controls" / "rft", [0.40, 0.50, 0.60], {"1": 0.55, "4": 0.75})
    sft = {"steps": [19, 19], "curve": [0.40, 0.41, 0.39], "seconds": 12.0}
    (out / "seed_0" / "controls" / "sft.json").write_text(json.dumps(sft))

    markdown = paper_studies_report.report(
        "objectives", [0, 1], ["graded"], out, True, tmp_path / "docs", "cmd"
    )

    lines = markdown.splitlines()
    assert (
        "| pairwise | graded | 4,800 | 2 of 2 | +0.060 | +0.020..+0.100 | s0 +0.100, s1 +0.020 | 0.410 | 0.410 | 0.470 | @1 0.470, @4 0.650 | 38 | 30 | 1 of 2 |"
        in lines
    )
    assert (
        "| contrastive | graded | 4,800 | 1 of 2 | +0.070 | +0.070..+0.070 | s0 +0.070 | 0.400 | 0.430 | 0.470 | @1 0.450, @4 0.650 | 38 | 30 | 0 of 1 |"
        in lines
    )
    assert "| listmle | graded | 4,800 | 0 of 2 | not run | - | - | - | - | - | - | - | - | - |" in lines
    assert (
        "| rft | exact | 4,800 | 1 of 2 | +0.200 | +0.200..+0.200 | s0 +0.200 | 0.400 | 0.500 | 0.600 | @1 0.550, @4 0.750 | 38 | 30 | 0 of 1 |"
        in lines
    )
    assert (
        "| sft | - | 0 | 1 of 2 | -0.010 | -0.010..-0.010 | s0 -0.010 | 0.400 | 0.410 | 0.390 | - | 38 | 12 | 0 of 1 |"
        in lines
    )
    assert "Command: `cmd`." in lines
    raw = json.loads((tmp_path / "docs" / "objectives_quick.json").read_text())
    pairwise = next(row for row in raw["summary"] if row["arm"] == "pairwise")
    assert pairwise["gain_mean"] == pytest.approx(0.06) and pairwise["missing"] == []
    assert pairwise["curve_mean"] == pytest.approx([0.41, 0.41, 0.47])
    assert len(raw["runs"]) == 5
    assert (tmp_path / "docs" / "objectives_quick.png").stat().st_size > 0
    assert (tmp_path / "docs" / "objectives_quick.md").read_text() == markdown


def test_collapse_is_more_than_three_points_below_the_start():
    assert not paper_studies_report.collapsed([0.50, 0.55, 0.47])
    assert paper_studies_report.collapsed([0.50, 0.469, 0.60])


def test_arms_differ_from_the_demo_only_in_their_setting(tmp_path):
    settings = paper_study_arms.study_settings(0, quick=False)
    assert (settings.iterations, settings.prompts_per_iteration, settings.num_candidates) == (3, 1000, 8)
    configs = {
        arm: paper_study_arms.arm_config(settings, tmp_path, 8, "graded", overrides, tmp_path / arm).to_dict()
        for arm, overrides in paper_study_arms.STUDIES["listsize"].items()
    }
    base = configs.pop("k8")
    for arm, config in configs.items():
        changed = {key for key in config if config[key] != base[key]}
        assert changed == {"num_candidates", "output_dir"}, arm
    assert len(paper_study_arms.STUDIES["lr"]) == 32
