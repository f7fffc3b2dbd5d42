"""benchmarks/study.py, the study of any task: its choices (learning rate, larpo's variant, iterations at
equal compute) on given numbers, its arms' configs, and a subset of arms run end to end on a tiny task."""

import dataclasses
import json
import shlex
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import study  # noqa: E402
import study_arms  # noqa: E402
from larpo.baselines.grpo import check_grpo_config  # noqa: E402
from study_arms import (  # noqa: E402
    VARIANTS,
    Task,
    another_fits,
    baseline_arm,
    beyond_edge,
    choose_lr,
    equal_compute_iterations,
    iteration_seconds,
    larpo_arms,
    ranked,
)
from study_runs import Study, run_seconds  # noqa: E402

TRAIN_REWARD = "tests.rewards_for_tests:digit_overlap"
EXACT = '''
def exact(prompt, responses):
    """1.0 for the right sum, else 0.0."""
    left, right = prompt.rstrip("=").split("+")
    return [float(r.strip() == str(int(left) + int(right))) for r in responses]
'''
CONFIG = """
iterations: 1
prompts_per_iteration: 4
num_candidates: 2
max_new_tokens: 4
generation_batch_size: 8
batch_size: 2
epochs: 1
objective: contrastive
nll_weight: 0.5
beta: 0.1
"""


@pytest.fixture(scope="module")
def task(workspace, tmp_path_factory) -> Task:
    """A tiny addition task: 8 prompts per split, a graded training reward and an exact one (a file)."""
    root = tmp_path_factory.mktemp("task")
    for offset, split in enumerate(("train", "validation", "test")):
        rows = [{"id": f"{split}{i}", "prompt": f"{10 + i}+{20 + 3 * i + offset}="} for i in range(8)]
        (root / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (root / "exact.py").write_text(EXACT)
    (root / "config.yaml").write_text(CONFIG)
    return Task("tiny", root, TRAIN_REWARD, f"{root / 'exact.py'}:exact", root / "config.yaml")


def test_the_learning_rate_with_the_best_validation_score_is_chosen_ties_to_the_smaller():
    assert choose_lr({5e-6: 0.40, 1e-5: 0.61, 2e-5: 0.55}) == 1e-5
    assert choose_lr({2e-5: 0.60, 1e-5: 0.60, 5e-6: 0.50}) == 1e-5  # a tie, listed larger first
    assert choose_lr({2e-5: 0.3, 5e-6: 0.3, 1e-5: 0.3}) == 5e-6
    assert ranked({"base": 0.5, "exact": 0.7, "listmle": 0.5}) == ["exact", "base", "listmle"]


def test_another_iteration_runs_while_it_brings_the_stage_seconds_nearer_the_budget():
    log = [
        {"iteration": 0, "stage": "generate", "seconds": 6.0},
        {"iteration": 0, "stage": "train", "seconds": 4.0},
        {"iteration": 0, "stage": "eval", "seconds": 100.0},  # evaluation is not counted
        {"iteration": 1, "stage": "generate", "seconds": 10.0},
        {"iteration": 1, "stage": "eval", "seconds": 100.0},
    ]
    assert iteration_seconds(log) == [10.0, 10.0]
    assert another_fits([], 1.0)  # at least one iteration
    assert another_fits([10.0, 10.0], 25.0)  # 30 is as near 25 as 20
    assert not another_fits([10.0, 10.0], 24.9)
    assert equal_compute_iterations([], 33.0) is None
    assert equal_compute_iterations([10.0], 33.0) is None  # a second fits: run it, then ask again
    assert equal_compute_iterations([10.0, 10.0, 10.0, 10.0], 33.0) == 3
    assert equal_compute_iterations([10.0, 10.0, 10.0, 10.0], 35.0) == 4
    assert equal_compute_iterations([50.0, 10.0], 33.0) == 1  # one iteration even over the budget


def logging_train(seconds: float, trained: list[int]):
    """A stand-in for ``Study.train`` that logs ``seconds`` stage seconds (and an evaluation) for each iteration
    not logged yet, and notes the iterations it was asked for in ``trained``."""

    def fake_train(self, arm, config, console):
        trained.append(config.iterations)
        log = Path(config.output_dir) / "log.jsonl"
        done = len(run_seconds(config))
        entries = [{"iteration": s, "stage": stage, "seconds": spent} for s in range(done, config.iterations)
                   for stage, spent in (("train", seconds), ("eval", 50.0))]  # fmt: skip
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as handle:
            handle.writelines(json.dumps(entry) + "\n" for entry in entries)

    return fake_train


def test_a_finished_run_is_continued_until_the_budget_is_spent(task, workspace, tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(Study, "train", logging_train(10.0, trained))
    runs = Study(task, workspace / "model", tmp_path)
    arm = baseline_arm("rft", runs.base(), task)
    config = runs.config(arm, 1, 1e-3)
    runs.train(arm, config, None)  # the equal-samples run: 1 iteration
    extended = runs.extend_to_budget(arm, config, 33.0, None)
    assert (extended.iterations, trained) == (3, [1, 2, 3])
    assert runs.extend_to_budget(arm, config, 33.0, None).iterations == 3 and trained == [1, 2, 3]
    assert runs.extend_to_budget(arm, config, 12.0, None).iterations == 1  # the run has more: not rerun


def test_a_run_trained_again_keeps_the_ledgers_seconds_for_the_iterations_it_records(
    task, workspace, tmp_path, monkeypatch
):
    """A new checkout trains a run again (its folder gone) on a slower machine: the iterations the budget buys
    still follow the seconds the ledger recorded for its first iterations, the log's only beyond them."""
    trained = []
    monkeypatch.setattr(Study, "train", logging_train(20.0, trained))
    runs = Study(task, workspace / "model", tmp_path)
    arm = baseline_arm("rft", runs.base(), task)
    config = dataclasses.replace(runs.config(arm, 1, 1e-3), iterations=2)
    runs.ledger.record("test", runs.run_name(config), config.to_dict(), runs.evaluation("test"),
                       {"greedy_accuracy": 0.5}, [10.0, 10.0])  # fmt: skip
    extended = runs.extend_to_budget(arm, config, 33.0, None)
    # recorded 20 s + half an iteration <= 33: a third; the retrain's own 40 s would have stopped at 2
    assert (extended.iterations, trained) == (3, [3])
    assert runs.known_seconds(extended) == [10.0, 10.0, 20.0]


def test_a_best_learning_rate_at_the_grid_edge_tries_one_beyond_it():
    assert beyond_edge({5e-6: 0.4, 1e-5: 0.5, 2e-5: 0.6}, most=5) == 4e-5
    assert beyond_edge({5e-6: 0.6, 1e-5: 0.5, 2e-5: 0.4}, most=5) == 2.5e-6
    assert beyond_edge({5e-6: 0.4, 1e-5: 0.6, 2e-5: 0.5}, most=5) is None  # inside the grid
    assert beyond_edge({5e-6: 0.4, 1e-5: 0.6, 2e-5: 0.6}, most=5) is None  # the tie goes to 1e-5, inside
    assert beyond_edge({5e-6: 0.4, 1e-5: 0.5, 2e-5: 0.6, 4e-5: 0.7, 8e-5: 0.8}, most=5) is None  # spent


def test_the_search_follows_a_best_learning_rate_past_the_edge(task, workspace, tmp_path):
    class Scored:
        """A study whose validation score of (arm, lr) is given: rft peaks at 4e-3, larpo at 2e-3."""

        model, output = workspace / "model", tmp_path
        peaks = {"rft": 4e-3, "larpo_base": 2e-3}

        def pretrained(self, kind):
            return {"prompts": 4, "greedy_accuracy": 0.1}

        def validated(self, arm, lr, console):
            return {"arm": arm.key, "learning_rate": lr, "greedy_accuracy": 1 - abs(lr - self.peaks[arm.key])}

    base = Study(task, workspace / "model", tmp_path).base()
    arms = larpo_arms(["base"], base, task) + [baseline_arm("rft", base, task)]
    result = study.search(Scored(), arms, [5e-4, 1e-3, 2e-3], None, edge_steps=2)
    tried = [(r["arm"], r["learning_rate"]) for r in result["search"]]
    assert tried == [("larpo_base", 5e-4), ("larpo_base", 1e-3), ("larpo_base", 2e-3), ("larpo_base", 4e-3),
                     ("rft", 5e-4), ("rft", 1e-3), ("rft", 2e-3), ("rft", 4e-3), ("rft", 8e-3)]  # fmt: skip
    assert result["learning_rates"] == {"larpo_base": 2e-3, "rft": 4e-3}
    unextended = study.search(Scored(), arms, [5e-4, 1e-3, 2e-3], None)
    assert (
        unextended["learning_rates"] == {"larpo_base": 2e-3, "rft": 2e-3} and len(unextended["search"]) == 6
    )


def test_the_equal_compute_budget_is_the_costliest_arms_mean_unless_given():
    rows = [{"arm": "larpo", "seconds": 130.0}, {"arm": "grpo", "seconds": 600.0},
            {"arm": "larpo", "seconds": 150.0}, {"arm": "grpo", "seconds": 700.0}, {"arm": "rft", "seconds": 900.0}]  # fmt: skip
    budget, source = study.compute_budget(None, rows)
    assert budget == 900.0 and source.startswith("rft's")  # one rft row, above grpo's mean of 650
    assert study.compute_budget(None, rows[:4])[0] == 650.0
    assert study.compute_budget(40.0, rows) == (40.0, "--budget-seconds")
    assert study.compute_budget(None, [])[0] is None


def test_every_variant_draws_the_base_samples_and_duplicates_are_dropped(task, workspace, tmp_path):
    base = Study(task, workspace / "model", tmp_path).base()
    arms = larpo_arms(list(VARIANTS), base, task)
    keys = [arm.key for arm in arms]
    assert "larpo_base" in keys and "larpo_epochs1" not in keys  # the tiny config has 1 epoch already
    samples = base.iterations * base.prompts_per_iteration * base.num_candidates
    for arm in arms:
        config = dataclasses.replace(base, **arm.overrides)
        assert config.iterations * config.prompts_per_iteration * config.num_candidates == samples, arm.key
    by_key = {arm.key: arm.overrides for arm in arms}
    assert by_key["larpo_exact"] == {"reward": task.exact_reward}
    assert by_key["larpo_iterations_x4"] == {"iterations": 4, "prompts_per_iteration": 1}
    name, (what, overrides) = study_arms.parse_variant("mine objective=listmle beta=0.02")
    assert (name, overrides) == ("mine", {"objective": "listmle", "beta": 0.02})


def test_the_baselines_configs(task, workspace, tmp_path):
    runs = Study(task, workspace / "model", tmp_path, overrides=("max_new_tokens=3",))
    base = runs.base()
    configs = {
        name: runs.config(baseline_arm(name, base, task), 2, 2e-5) for name in ("rft", "trl_dpo", "grpo")
    }
    rft, dpo, grpo = configs["rft"], configs["trl_dpo"], configs["grpo"]
    assert (rft.objective, rft.nll_weight, rft.reward) == ("rft", 0.0, task.exact_reward)
    assert rft.list_settings().keep_tied_min_score == 1.0  # standard RFT imitates the solved prompts too
    assert (dpo.objective, dpo.reward, dpo.beta, dpo.nll_weight) == ("contrastive", TRAIN_REWARD, 0.1, 0.5)
    assert grpo.reward == task.exact_reward  # the task names no GRPO reward
    check_grpo_config(grpo)
    graded = dataclasses.replace(task, grpo_reward=TRAIN_REWARD)
    assert runs.config(baseline_arm("grpo", base, graded), 2, 2e-5).reward == TRAIN_REWARD
    assert study_arms.PRESETS["instructions"].policy_gradient_reward().endswith(":graded_reward")
    assert study_arms.PRESETS["arithmetic"].policy_gradient_reward().endswith(":exact_reward")
    for name, config in configs.items():
        settings = (config.seed, config.learning_rate, config.max_new_tokens, config.eval_prompts)
        assert settings == (2, 2e-5, 3, None)  # the seed, the learning rate, --set; evaluated afterwards
        assert Path(config.output_dir) == tmp_path / "seed2" / f"{name}_lr2e-05"
    assert [baseline_arm(n, base, task).trainer for n in configs] == ["larpo", "trl_dpo", "grpo"]


def task_args(task: Task, model: Path, output: Path, docs: Path) -> list[str]:
    """The command line of the tiny task's study, one seed, 4 validation prompts."""
    return ["--name", "tiny", "--prompts", str(task.prompts), "--reward", task.reward,
            "--exact-reward", task.exact_reward, "--config", str(task.config), "--model", str(model),
            "--seeds", "0", "--validation-prompts", "4", "--output", str(output), "--docs", str(docs)]  # fmt: skip


def test_a_subset_of_arms_runs_end_to_end_and_resumes(task, workspace, tmp_path):
    output, docs = tmp_path / "runs", tmp_path / "docs"
    argv = task_args(task, workspace / "model", output, docs) + [
        "--arms", "rft", "larpo", "--variants", "base", "pairwise", "--lrs", "1e-3", "1e-2", "--keep-top", "2"
    ]  # fmt: skip
    study.main(argv)
    logs = {path: path.read_text() for path in output.glob("seed*/*/log.jsonl")}
    assert len(logs) == 6  # 3 arms x 2 learning rates, seed 0
    assert (output / "validation_subset.jsonl").read_text().count("\n") == 4
    samples = json.loads((docs / "tiny_equal_samples.json").read_text())
    compute = json.loads((docs / "tiny_equal_compute.json").read_text())
    validation = samples["validation"]
    assert len(validation["search"]) == 6 and validation["prompts"] == 4
    ablation = ({"larpo_base", "larpo_pairwise"} - {validation["larpo"]}).pop()
    for result in (samples, compute):
        assert {"command", "machine", "validation", "runs", "initial_test"} <= set(result)
        assert sorted(r["arm"] for r in result["runs"]) == sorted(["larpo", ablation, "rft"])
        for row in result["runs"]:
            assert {
                "arm",
                "seed",
                "greedy_accuracy",
                "pass_at_1",
                "learning_rate",
                "seconds",
                "samples",
            } <= set(row)
            key, _, lr = row["run"].rpartition("_lr")
            assert row["learning_rate"] == validation["learning_rates"][key] == float(lr)
    assert [r["samples"] for r in samples["runs"]] == [8, 8, 8]
    assert {r["machine"] for r in samples["runs"] + validation["search"]} == {samples["machine"]}
    for row in compute["runs"]:  # the iterations the budget buys, by the run's own log
        log = (output / "seed0" / row["run"] / "log.jsonl").read_text().splitlines()
        seconds = iteration_seconds(json.loads(line) for line in log)
        assert row["iterations"] == equal_compute_iterations(seconds, compute["budget_seconds"])
        assert row["samples"] == 8 * row["iterations"]
    lines = (docs / "tiny_equal_samples.md").read_text().splitlines()
    assert sum(line.startswith("| larpo | ") for line in lines) == 2  # the summary row and the seed's row

    logs = {path: path.read_text() for path in output.glob("seed*/*/log.jsonl")}
    study.main(argv)  # resumes: nothing runs again
    assert {path: path.read_text() for path in output.glob("seed*/*/log.jsonl")} == logs

    ledger = (docs / "tiny_study_ledger.jsonl").read_text()
    kinds = [json.loads(line)["kind"] for line in ledger.splitlines()]
    tested = {(row["run"], row["iterations"]) for row in samples["runs"] + compute["runs"]}
    assert (kinds.count("validation"), kinds.count("test")) == (6 + 1, len(tested) + 1)  # and the pretrained
    shutil.rmtree(output)  # a new checkout: the run folders are gone, the ledger is kept
    study.main(argv)
    assert not list(output.glob("seed*"))  # nothing trained or evaluated again
    assert (docs / "tiny_study_ledger.jsonl").read_text() == ledger
    for comparison, before in (("equal_samples", samples), ("equal_compute", compute)):
        after = json.loads((docs / f"tiny_{comparison}.json").read_text())
        assert (after["runs"], after["validation"]) == (before["runs"], before["validation"])
    assert after["stage_hours"] == pytest.approx(compute["stage_hours"])  # the whole study's, from the ledger


def test_the_trl_arms_run_and_report_at_a_given_budget(task, workspace, tmp_path):
    pytest.importorskip("trl")
    output, docs = tmp_path / "runs", tmp_path / "docs"
    argv = task_args(task, workspace / "model", output, docs)
    study.main(argv + ["--arms", "trl_dpo", "grpo", "--lrs", "1e-3", "--budget-seconds", "0"])
    for comparison in ("equal_samples", "equal_compute"):
        rows = json.loads((docs / f"tiny_{comparison}.json").read_text())["runs"]
        assert [(r["arm"], r["iterations"], r["samples"]) for r in rows] == [
            ("trl_dpo", 1, 8),
            ("grpo", 1, 8),
        ]
    assert (
        json.loads((output / "seed0" / "grpo_lr0.001" / "iter_0" / "train_stats.json").read_text())["trainer"]
        == "trl.GRPOTrainer"
    )


def test_chat_arms_reports_without_its_grpo_arm():
    import chat_arms

    assert chat_arms.grpo_line({"sweep": {}, "chosen": None}) == "GRPO was not run."


def test_search_only_validates_the_variants_given_and_tests_nothing(task, workspace, tmp_path):
    output, docs = tmp_path / "runs", tmp_path / "docs"
    argv = task_args(task, workspace / "model", output, docs)
    study.main(argv + ["--arms", "larpo", "--variants", "--variant", "paired objective=pairwise", "--lrs", "1e-3",
                       "--search-only"])  # fmt: skip
    assert [path.name for path in (output / "seed0").iterdir()] == ["larpo_paired_lr0.001"]
    entries = [json.loads(line) for line in (docs / "tiny_study_ledger.jsonl").read_text().splitlines()]
    assert [(e["kind"], e["run"]) for e in entries] == [
        ("validation", "pretrained"),
        ("validation", "seed0/larpo_paired_lr0.001"),
    ]
    assert entries[1]["settings"]["objective"] == "pairwise" and len(entries[1]["iteration_seconds"]) == 1
    assert not list(docs.glob("tiny_equal_*"))  # no test run, no result file


def test_the_report_names_every_machine_its_rows_were_measured_on():
    from study_report import machines_line

    result = {"machine": "here", "runs": [{"machine": "A"}, {"machine": "A"}], "validation": {"search": []}}
    assert machines_line(result) == "Machine: A."
    result["validation"]["search"] = [{"machine": "B"}, {"learning_rate": 1e-5}]  # one carried over, unnamed
    assert machines_line(result).startswith("Measured on 2 machines") and machines_line(result).endswith(
        ": A; B."
    )
    assert machines_line({"machine": "here", "runs": [], "validation": {"search": []}}) == "Machine: here."


def test_a_result_carried_over_from_a_published_table_answers_with_its_total_seconds(
    task, workspace, tmp_path
):
    from rich.console import Console

    from study_report import report

    runs = Study(task, workspace / "model", tmp_path / "runs", validation_prompts=4)
    arm = baseline_arm("rft", runs.base(), task)
    config = runs.config(arm, 1, 1e-3)
    runs.ledger.record("test", runs.run_name(config), config.to_dict(), runs.evaluation("test"),
                       {"greedy_accuracy": 0.5, "pass_at_1": 0.25}, None, source="a table", seconds=321.0)  # fmt: skip
    row = runs.row("rft", arm, config, Console(quiet=True))
    assert (row["greedy_accuracy"], row["seconds"], row["samples"]) == (0.5, 321.0, 8)
    assert not Path(config.output_dir).exists()  # nothing trained
    unknown = {**row, "arm": "grpo", "seconds": None}  # carried over without its seconds
    assert study.compute_budget(None, [row, unknown]) == (
        321.0,
        "rft's mean stage seconds at equal samples (the largest)",
    )
    validation = {"prompts": 4, "initial": {"greedy_accuracy": 0.1}, "search": [], "learning_rates": {}}
    result = {"command": "c", "machine": "m", "initial_test": {"greedy_accuracy": 0.25, "pass_at_1": 0.1},
              "validation": validation, "stage_hours": 0.1, "runs": [row, unknown]}  # fmt: skip
    report("tiny", "equal_samples", result, {}, tmp_path)
    lines = (tmp_path / "tiny_equal_samples.md").read_text().splitlines()
    assert [line.rsplit("|", 2)[1].strip() for line in lines if line.startswith("| grpo |")] == ["-", "-"]
    assert [line.rsplit("|", 2)[1].strip() for line in lines if line.startswith("| rft |")] == ["321", "321"]


@pytest.mark.parametrize("task_name", ["arithmetic", "instructions"])
def test_the_example_config_is_the_larpo_run_the_study_validated_and_tested(task_name):
    """Running examples/chat/smollm2_<task>.yaml is the published seed-0 run of the study's ``larpo``: the
    same settings, except where it writes and that it evaluates inside the run."""
    from larpo.run.config import load_run_config

    repo = Path(__file__).resolve().parents[1]
    result = json.loads((repo / "docs/benchmarks" / f"{task_name}_equal_samples.json").read_text())
    args = study.parse_args(shlex.split(result["command"])[2:])  # quoted --variant arguments
    runs = Study(study_arms.PRESETS[task_name], Path("runs/smollm2"), Path("runs/study"))
    key = result["validation"]["larpo"]
    arm = next(arm for arm in study.study_arms_of(args, runs) if arm.key == key)
    published = runs.config(arm, 0, result["validation"]["learning_rates"][key]).to_dict()
    example = load_run_config(repo / "examples/chat" / f"smollm2_{task_name}.yaml").to_dict()
    assert {k for k in published if published[k] != example[k]} == {"output_dir", "eval_prompts"}
    assert example["eval_prompts"] == str(runs.task.prompts / "test.jsonl")


def test_learning_rates_validated_at_the_budget_choose_what_equal_samples_would_not(
    task, workspace, tmp_path, monkeypatch
):
    """benchmarks/study_budget_lrs.py: each learning rate runs the iterations the budget buys at its own cost
    and is validated there, so a cheaper learning rate that keeps improving wins a tie it would lose at one
    iteration (ties go to the smaller)."""
    import study_budget_lrs

    cost = {1e-3: 20.0, 2e-3: 10.0}  # stage seconds per iteration

    def fake_train(self, arm, config, console):
        log = Path(config.output_dir) / "log.jsonl"
        done = len(run_seconds(config))
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as handle:
            for s in range(done, config.iterations):
                handle.write(
                    json.dumps({"iteration": s, "stage": "train", "seconds": cost[config.learning_rate]})
                )
                handle.write("\n")
        return Path(config.output_dir) / f"iter_{config.iterations - 1}" / "model"

    def fake_validate(self, model, cached):  # each iteration adds 0.1, whatever the learning rate
        return {"greedy_accuracy": round(0.1 * (int(model.parent.name.removeprefix("iter_")) + 1), 3)}

    monkeypatch.setattr(Study, "train", fake_train)
    monkeypatch.setattr(Study, "validate", fake_validate)
    runs = Study(task, workspace / "model", tmp_path)
    rows = study_budget_lrs.validated_at_budget(runs, [["rft", "1e-3", "2e-3"]], 45.0, None)
    assert [(r["learning_rate"], r["iterations"], r["seconds"], r["greedy_accuracy"]) for r in rows] == [
        (1e-3, 2, 40.0, 0.2),  # a third would end at 60, further from 45 than 40
        (2e-3, 5, 50.0, 0.5),
    ]
    assert study_budget_lrs.chosen_learning_rates(rows) == {"rft": 2e-3}
    at_one_iteration = [{**r, "greedy_accuracy": 0.1} for r in rows]
    assert study_budget_lrs.chosen_learning_rates(at_one_iteration) == {"rft": 1e-3}
