"""`save_total_limit`: only the newest iterations' models stay on disk, and the run's results do not change."""

import json

import pytest

from larpo.errors import InputError
from tests.helpers import run

WEIGHTS = "model/model.safetensors"


def kept_models(run_dir):
    return sorted(p.parent.name for p in run_dir.glob("iter_*/model"))


def test_a_limited_run_keeps_the_newest_models_and_ends_where_a_full_run_ends(workspace, tmp_path):
    limited, full = tmp_path / "limited", tmp_path / "full"
    limited_manifest = run(workspace, limited, "iterations=3", "save_total_limit=1")
    full_manifest = run(workspace, full, "iterations=3")
    assert kept_models(limited) == ["iter_2"] and kept_models(full) == ["iter_0", "iter_1", "iter_2"]
    for s in range(3):  # the lists and stats of a deleted model stay
        assert (limited / f"iter_{s}" / "lists.jsonl").read_bytes() == (
            full / f"iter_{s}" / "lists.jsonl"
        ).read_bytes()
        assert (limited / f"iter_{s}" / "train_stats.json").exists()
    assert limited_manifest["completed"] == full_manifest["completed"]
    assert (limited / "iter_2" / WEIGHTS).read_bytes() == (full / "iter_2" / WEIGHTS).read_bytes()

    # Extending the run trains on from the kept model; the limit may change between invocations.
    run(workspace, limited, "iterations=4", "save_total_limit=2")
    run(workspace, full, "iterations=4")
    assert kept_models(limited) == ["iter_2", "iter_3"]
    assert (limited / "iter_3" / WEIGHTS).read_bytes() == (full / "iter_3" / WEIGHTS).read_bytes()


def test_an_evaluation_due_on_a_deleted_model_is_refused_without_touching_the_run(workspace, tmp_path):
    run_dir = tmp_path / "run"
    evaluation = (f"eval_prompts={workspace / 'prompts.jsonl'}", "eval_samples=2", "eval_ks=[1, 2]",
                  "eval_samples_between=1", "save_total_limit=1")  # fmt: skip
    run(workspace, run_dir, *evaluation, "iterations=2")
    before = (run_dir / "manifest.json").read_bytes()
    # With 1 iteration, iteration 0 becomes the last, evaluated in full: its model is gone.
    with pytest.raises(
        InputError, match="iteration 0 is now evaluated, but save_total_limit deleted its model"
    ):
        run(workspace, run_dir, *evaluation, "iterations=1")
    assert json.loads((run_dir / "manifest.json").read_bytes()) == json.loads(before)
    assert kept_models(run_dir) == ["iter_1"]
