"""End-to-end runs of the iterative loop on a tiny random model with a rule-based reward."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from larpo.losses import OBJECTIVES
from larpo.run.config import load_run_config
from larpo.store import read_records
from tests.helpers import K, check_store, read_lists, run, settings


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_two_iterations_with_each_objective(workspace, tmp_path, objective):
    run_dir = tmp_path / "run"
    manifest = run(
        workspace, run_dir, f"objective={objective}", "beta=1.0" if objective == "simpo" else "beta=0.1"
    )
    check_store(run_dir, manifest)
    for s in range(2):
        stages = manifest["completed"][str(s)]
        assert list(stages) == ["generate", "score", "lists", "train", "eval"]
        assert stages["eval"] == {"skipped": True}  # no eval_prompts
        lists = read_lists(run_dir, s)
        assert len(lists) == stages["lists"]["lists_built"] > 0
        assert stages["train"]["steps"] == -(-len(lists) // 4)
        assert math.isfinite(stages["train"]["loss"])
        # the auto log-prob settings as decided on a CPU with a tiny vocabulary
        assert (stages["train"]["shared_prefix"], stages["train"]["logprob_chunk_size"]) == (True, 0)
        for item in lists:
            assert item["iterations"] == [s] * len(item["responses"])  # memorization "current"
            assert item["scores"] == sorted(item["scores"], reverse=True)
            assert len(set(item["scores"])) > 1  # all-tied lists are dropped
            # a reference-free objective's lists get no reference pass
            computed = [value is not None for value in item["reference_logps"]]
            assert computed == [not OBJECTIVES[objective].reference_free] * len(computed)
        assert (run_dir / f"iter_{s}" / "model" / "model.safetensors").exists()


@pytest.mark.parametrize(
    ("mode", "expected_iterations"), [("current", {1}), ("previous", {0, 1}), ("all", {0, 1})]
)
def test_memorization_merges_earlier_iterations(workspace, tmp_path, mode, expected_iterations):
    run_dir = tmp_path / "run"
    manifest = run(workspace, run_dir, f"memorization={mode}", "objective=listmle")
    check_store(run_dir, manifest)
    lists = read_lists(run_dir, 1)
    assert {i for item in lists for i in item["iterations"]} == expected_iterations
    store = {
        (r.prompt_id, r.response): r
        for s in range(2)
        for r in read_records(run_dir / "candidates" / f"iter_{s}.jsonl")
    }
    for item in lists:
        assert len(item["responses"]) == len(set(item["responses"]))  # dedup across iterations
        for response, iteration, score, reference in zip(
            item["responses"], item["iterations"], item["scores"], item["reference_logps"], strict=True
        ):
            record = store[(item["prompt_id"], response)]
            assert record.score == score
            # reference = initial model: log-probs are cached in the store and reused
            assert record.reference_logp == pytest.approx(reference)
            if mode == "current":
                assert iteration == 1
    sizes = [len(item["responses"]) for item in lists]
    if mode == "current":
        assert max(sizes) <= K
    else:
        assert max(sizes) > K  # lists grew with the previous iteration's responses
        stats = manifest["completed"]["1"]["lists"]
        assert stats["candidates_in_lists"] == sum(sizes)


def test_selection_keeps_top_and_bottom(workspace, tmp_path):
    run_dir = tmp_path / "run"
    run(workspace, run_dir, "positives=1", "negatives=2", "memorization=all", "iterations=2")
    store = {}
    for s in range(2):
        for r in read_records(run_dir / "candidates" / f"iter_{s}.jsonl"):
            store.setdefault(r.prompt_id, {})[r.response] = r.score
    for item in read_lists(run_dir, 1):
        pool = sorted(store[item["prompt_id"]].values(), reverse=True)
        assert len(item["responses"]) == min(3, len(pool))
        if len(pool) >= 3:
            assert item["scores"][0] == pool[0]
            assert sorted(item["scores"][1:]) == sorted(pool[-2:])


def test_temperature_schedule_and_related_negatives(workspace, tmp_path):
    run_dir = tmp_path / "run"
    manifest = run(
        workspace, run_dir, "temperature=[1.2, 0.7]", "negative_source=related", "positives=1", "negatives=2"
    )
    for s, temperature in enumerate([1.2, 0.7]):
        records = read_records(run_dir / "candidates" / f"iter_{s}.jsonl")
        policy = [r for r in records if r.source == "policy"]
        related = [r for r in records if r.source == "related"]
        assert {r.temperature for r in policy} == {temperature}
        assert len(related) == manifest["completed"][str(s)]["generate"]["external_negatives"] > 0
        own = {(r.prompt_id, r.response) for r in policy}
        assert not any((r.prompt_id, r.response) in own for r in related)
    for item in read_lists(run_dir, 1):
        assert item["sources"][0] == "policy" or item["scores"][0] >= max(item["scores"])
        assert "related" in item["sources"]


def test_rerun_of_a_finished_run_changes_nothing(workspace, tmp_path):
    run_dir = tmp_path / "run"
    run(workspace, run_dir, "iterations=1")
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != "log.jsonl"}
    manifest = run(workspace, run_dir, "iterations=2")  # extending a run resumes it
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p in before}
    assert {p: b for p, b in after.items() if p.name != "manifest.json"} == {
        p: b for p, b in before.items() if p.name != "manifest.json"
    }
    assert set(manifest["completed"]) == {"0", "1"}


def test_held_out_evaluation_after_each_iteration(workspace, tmp_path):
    from tests.rewards_for_tests import digit_overlap

    run_dir = tmp_path / "run"
    manifest = run(
        workspace, run_dir, f"eval_prompts={workspace / 'prompts.jsonl'}", "eval_samples=4", "eval_ks=[1, 4]",
        "eval_every=2", "iterations=2",
    )  # fmt: skip
    assert set(manifest["completed"]) == {"-1", "0", "1"}
    assert manifest["completed"]["0"]["eval"] == {"skipped": True}  # every 2nd iteration (and the last)
    for name, key in (("initial.json", "-1"), ("iter_1.json", "1")):
        result = json.loads((run_dir / "eval" / name).read_text())
        prompts = [
            json.loads(line)["prompt"] for line in (workspace / "prompts.jsonl").read_text().splitlines()
        ]
        correct = [
            digit_overlap(p, [o])[0] >= 1.0 for p, o in zip(prompts, result["greedy_outputs"], strict=True)
        ]
        assert result["greedy_accuracy"] == sum(correct) / len(correct)
        assert manifest["completed"][key]["eval"]["greedy_accuracy"] == result["greedy_accuracy"]
        assert set(result["pass_at_k"]) == {"1", "4"}
        assert result["pass_at_k"]["1"] <= result["pass_at_k"]["4"]
        assert len(result["recall_curve"]["1.0"]) == 4
    assert "ndcg" not in manifest["completed"]["-1"]["eval"]  # the initial policy is its own reference
    assert 0.0 <= manifest["completed"]["1"]["eval"]["ndcg"] <= 1.0


def test_cheaper_evaluations_between_the_first_and_the_last(workspace, tmp_path):
    run_dir = tmp_path / "run"
    manifest = run(
        workspace, run_dir, f"eval_prompts={workspace / 'prompts.jsonl'}", "eval_samples=4", "eval_ks=[1, 4]",
        "eval_samples_between=1", "iterations=3",
    )  # fmt: skip
    ks = {key: set(manifest["completed"][key]["eval"]["pass_at_k"]) for key in ("-1", "0", "1", "2")}
    assert ks == {"-1": {"1", "4"}, "0": {"1"}, "1": {"1"}, "2": {"1", "4"}}
    assert json.loads((run_dir / "eval" / "iter_0.json").read_text())["settings"]["num_samples"] == 1


def test_resuming_with_fewer_iterations_evaluates_the_new_last_one_in_full(workspace, tmp_path):
    run_dir = tmp_path / "run"
    evaluation = (f"eval_prompts={workspace / 'prompts.jsonl'}", "eval_samples=4", "eval_ks=[1, 4]",
                  "eval_samples_between=1", "eval_every=2")  # fmt: skip
    manifest = run(workspace, run_dir, *evaluation, "iterations=3")
    assert manifest["completed"]["0"]["eval"] == {"skipped": True}
    assert set(manifest["completed"]["1"]["eval"]["pass_at_k"]) == {"1"}  # a cheaper check between
    last = (run_dir / "eval" / "iter_2.json").read_bytes()

    manifest = run(workspace, run_dir, *evaluation, "iterations=2")  # iteration 1 is now the last
    assert set(manifest["completed"]["1"]["eval"]["pass_at_k"]) == {"1", "4"}
    assert json.loads((run_dir / "eval" / "iter_1.json").read_text())["settings"]["num_samples"] == 4

    manifest = run(workspace, run_dir, *evaluation, "iterations=1")  # iteration 0 was skipped: now evaluated
    assert set(manifest["completed"]["0"]["eval"]["pass_at_k"]) == {"1", "4"}

    full = (run_dir / "eval" / "iter_1.json").read_bytes()
    run(workspace, run_dir, *evaluation, "iterations=3")  # a fuller evaluation is kept, not redone cheaper
    assert (run_dir / "eval" / "iter_1.json").read_bytes() == full
    assert (run_dir / "eval" / "iter_2.json").read_bytes() == last


@pytest.mark.parametrize(
    ("scheduler", "warmup", "expected"),
    [("constant", 0.1, "constant_with_warmup"), ("constant", 0.0, "constant"), ("linear", 0.1, "linear")],
)
def test_a_warmup_turns_the_constant_schedule_into_constant_with_warmup(scheduler, warmup, expected):
    config = load_run_config(
        None, [*settings(Path("w"), Path("r")), f"lr_scheduler_type={scheduler}", f"warmup_ratio={warmup}"]
    )
    arguments = config.training_arguments(0)
    assert arguments["lr_scheduler_type"] == expected
    assert arguments["warmup_steps"] == warmup  # transformers 5: a value below 1 is a fraction of the steps


def test_a_stage_is_replaced_by_passing_another_function(workspace, tmp_path):
    """What benchmarks/trl_iterative.py does: its own train stage, every other stage larpo's."""
    from larpo.run import run as run_larpo
    from larpo.run import train

    calls = []

    def recording_train(ctx, s):
        calls.append(s)
        return {**train.stage(ctx, s), "replaced": True}

    config = load_run_config(None, settings(workspace, tmp_path / "run", "iterations=1"))
    manifest = run_larpo(config, stages={"train": recording_train})
    assert calls == [0]
    assert manifest["completed"]["0"]["train"]["replaced"] is True
    assert (tmp_path / "run" / "iter_0" / "model" / "model.safetensors").exists()
    with pytest.raises(ValueError, match="unknown stage.*training.*the stages are generate, score, lists"):
        run_larpo(config, stages={"training": recording_train})


def test_a_run_whose_lists_cannot_train_leaves_the_model_as_it_was(workspace, tmp_path):
    """A verifier that accepts nothing, every list kept (drop_all_tied false) and no NLL term: no list
    can train, so the run skips every list's forward pass, its steps change nothing, and the summary
    has no ranking metrics, since none were measured."""
    from transformers import AutoModelForCausalLM

    run_dir = tmp_path / "run"
    reward = str(Path(__file__).with_name("rewards_for_tests.py")) + ":all_wrong"
    manifest = run(workspace, run_dir, f"reward={reward}", "drop_all_tied=false", "iterations=1")
    train = manifest["completed"]["0"]["train"]
    assert (train["lists"], train["steps"]) == (8, 2)
    assert train["loss"] == 0.0 and train["ranking_accuracy"] is None and train["margin"] is None
    before = AutoModelForCausalLM.from_pretrained(workspace / "model").state_dict()
    after = AutoModelForCausalLM.from_pretrained(run_dir / "iter_0" / "model").state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_a_reference_free_run_ignores_reference_log_probs_its_store_already_holds(workspace, tmp_path):
    """A run resumed from a version that computed reference log-probs for rft holds some in its store; the
    next lists carry none, so that no list mixes the two and training does not read them."""
    import dataclasses

    from larpo.store import write_records_atomic

    run_dir = tmp_path / "run"
    run(workspace, run_dir, "objective=rft", "memorization=all", "iterations=1")
    path = run_dir / "candidates" / "iter_0.jsonl"
    records = read_records(path)
    write_records_atomic(
        path, [dataclasses.replace(r, reference_logp=-1.0) for r in records[::2]] + records[1::2]
    )
    manifest = run(workspace, run_dir, "objective=rft", "memorization=all", "iterations=2")
    lists = read_lists(run_dir, 1)
    assert {0, 1} <= {i for item in lists for i in item["iterations"]}  # old candidates are listed again
    assert all(value is None for item in lists for value in item["reference_logps"])
    assert manifest["completed"]["1"]["train"]["steps"] > 0


@pytest.mark.parametrize("nll_weight", [0.0, 1.0])
def test_the_lists_stage_computes_reference_log_probs_only_for_lists_that_can_train(
    workspace, tmp_path, nll_weight
):
    """A list whose replies all tie (here, every even prompt's) cannot change a step unless the NLL term
    imitates its best: without that term it gets no reference pass (null in the lists and the store); with
    it, and for every other list, the lists carry the reference log-probs the store keeps."""
    run_dir = tmp_path / "run"
    reward = str(Path(__file__).with_name("rewards_for_tests.py")) + ":odd_only"
    manifest = run(workspace, run_dir, f"reward={reward}", "drop_all_tied=false", "objective=listmle",
                   "memorization=all", f"nll_weight={nll_weight}")  # fmt: skip
    stored = {(r.prompt_id, r.response): r.reference_logp
              for s in range(2) for r in read_records(run_dir / "candidates" / f"iter_{s}.jsonl")}  # fmt: skip
    for s in range(2):
        lists = read_lists(run_dir, s)
        tied = [len(set(item["scores"])) == 1 for item in lists]
        assert 0 < sum(tied) < len(lists)
        for item, all_tied in zip(lists, tied, strict=True):
            skipped = all_tied and not nll_weight
            assert [value is None for value in item["reference_logps"]] == [skipped] * len(item["responses"])
            for response, value in zip(item["responses"], item["reference_logps"], strict=True):
                assert stored[(item["prompt_id"], response)] == value
        assert manifest["completed"][str(s)]["train"]["steps"] > 0


def test_the_reference_pass_benchmark_computes_the_lists_read_with_the_values_of_a_full_pass(
    workspace, tmp_path
):
    """benchmarks/bench_reference_pass.py on a run whose even prompts' lists all tie: the second pass
    computes only the other lists' candidates, to the values the full pass gives them."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_reference_pass

    run_dir = tmp_path / "run"
    reward = str(Path(__file__).with_name("rewards_for_tests.py")) + ":odd_only"
    run(workspace, run_dir, f"reward={reward}", "drop_all_tied=false", "objective=listmle", "nll_weight=0.0",
        "iterations=1")  # fmt: skip
    lists = read_lists(run_dir, 0)
    ranked = [item for item in lists if len(set(item["scores"])) > 1]
    bench_reference_pass.main([str(run_dir), "--output", str(tmp_path / "out")])
    [row] = json.loads((tmp_path / "out" / "reference_pass.json").read_text())["rows"]
    assert (row["lists"], row["lists_read"]) == (len(lists), len(ranked))
    assert row["candidates_read"] == sum(len(item["responses"]) for item in ranked) < row["candidates"]
    assert row["max_value_difference"] < 1e-5


def test_the_unread_candidates_benchmark_trains_the_best_replies_alone_to_the_same_weights(
    workspace, tmp_path
):
    """benchmarks/bench_unread_candidates.py on an rft run: the second training computes only each list's
    best replies and ends at the weights of computing every candidate."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_unread_candidates

    run_dir = tmp_path / "run"
    run(workspace, run_dir, "objective=rft", "iterations=1")
    lists = read_lists(run_dir, 0)
    best = sum(item["scores"].count(max(item["scores"])) for item in lists)
    bench_unread_candidates.main([str(run_dir), "--output", str(tmp_path / "out")])
    [row] = json.loads((tmp_path / "out" / "unread_candidates.json").read_text())["rows"]
    assert row["read_candidates"] == best < row["candidates"] == sum(len(item["responses"]) for item in lists)
    assert row["max_weight_difference"] < 1e-5
