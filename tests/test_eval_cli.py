import json

from PIL import Image

from tests.helpers import run_args, run_cli
from tests.rewards_for_tests import digit_overlap

REWARD_FILE = "tests/rewards_for_tests.py:digit_overlap"


def assert_real_png(path, min_side=200):
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert min(image.size) >= min_side
        assert len(image.convert("L").getcolors(maxcolors=1 << 16)) > 10  # more than a blank canvas


def test_eval_writes_json_plot_and_alpaca_outputs(monkeypatch, capsys, workspace, tmp_path):
    out = tmp_path / "eval"
    code, stdout, err = run_cli(
        monkeypatch, capsys, "eval", "--model", workspace / "model", "--prompts", workspace / "prompts.jsonl",
        "--reward", REWARD_FILE, "--output", out, "--num-samples", "4", "--k", "1", "--k", "4",
        "--temperature", "1.0", "--temperature", "0.5", "--max-new-tokens", "4", "--best-of", "2",
        "--baseline-model", workspace / "model", "--alpaca-eval", tmp_path / "model_outputs.json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads((out / "eval.json").read_text())
    prompts = [json.loads(line)["prompt"] for line in (workspace / "prompts.jsonl").read_text().splitlines()]
    scores = [digit_overlap(p, [o])[0] for p, o in zip(prompts, result["greedy_outputs"], strict=True)]
    assert result["mean_reward"] == sum(scores) / len(scores)
    assert result["win_rate"] == 0.5  # the same model as its own baseline: all ties
    assert set(result["pass_at_k_by_temperature"]) == {"1.0", "0.5"}
    assert result["recall_curve"]["1.0"][0] == result["pass_at_k"]["1"]
    assert result["best_of_n"]["n"] == 2
    assert_real_png(out / "pass_at_n.png")
    exported = json.loads((tmp_path / "model_outputs.json").read_text())
    assert exported[0] == {
        "instruction": prompts[0],
        "output": result["greedy_outputs"][0],
        "generator": "model",
    }
    assert "greedy accuracy" in stdout


def test_eval_rejects_k_above_samples(monkeypatch, capsys, workspace, tmp_path):
    code, _, err = run_cli(
        monkeypatch, capsys, "eval", "--model", workspace / "model", "--prompts", workspace / "prompts.jsonl",
        "--reward", REWARD_FILE, "--output", tmp_path / "e", "--num-samples", "2", "--k", "4",
    )  # fmt: skip
    assert code == 2 and "1 <= k <= num_samples=2" in err
    assert not (tmp_path / "e").exists()


def test_report_gathers_iterations_into_markdown_and_plots(monkeypatch, capsys, workspace, tmp_path):
    run_dir = tmp_path / "run"
    args = run_args(workspace, run_dir, "iterations=2", f"eval_prompts={workspace / 'prompts.jsonl'}",
                    "eval_samples=4", "eval_ks=[1, 4]")  # fmt: skip
    assert run_cli(monkeypatch, capsys, *args)[0] == 0
    code, stdout, err = run_cli(monkeypatch, capsys, "report", run_dir)
    assert code == 0, err
    text = (run_dir / "report.md").read_text()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    rows = [
        line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| iteration")
    ]
    assert [row.split(" | ")[0] for row in rows] == ["| -1", "| 0", "| 1"]
    assert f"{manifest['completed']['1']['eval']['greedy_accuracy']:.4f}" in rows[2]
    assert_real_png(run_dir / "report_iterations.png")
    assert_real_png(run_dir / "report_recall.png")


def test_report_on_a_directory_that_is_not_a_run(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "report", tmp_path)
    assert code == 2 and "not a larpo run directory" in err


def test_eval_ranks_with_the_runs_initial_model_and_plots_a_baseline(
    monkeypatch, capsys, workspace, tmp_path
):
    run_dir = tmp_path / "run"
    assert run_cli(monkeypatch, capsys, *run_args(workspace, run_dir, "learning_rate=1e-2"))[0] == 0
    common = ["--prompts", workspace / "prompts.jsonl", "--reward", REWARD_FILE, "--num-samples", "4",
              "--k", "1", "--max-new-tokens", "4"]  # fmt: skip
    start = tmp_path / "start"
    assert (
        run_cli(monkeypatch, capsys, "eval", "--model", workspace / "model", "--output", start, *common)[0]
        == 0
    )
    out = tmp_path / "final"
    code, stdout, err = run_cli(monkeypatch, capsys, "eval", "--model", run_dir / "iter_0" / "model",
                                "--output", out, "--baseline", start, *common)  # fmt: skip
    assert code == 0, err
    result = json.loads((out / "eval.json").read_text())
    before = json.loads((start / "eval.json").read_text())
    assert result["model"] == "run/iter_0" and before["model"] == f"{workspace.name}/model"
    assert result["reference"] == str(workspace / "model")  # the run's initial model
    assert 0.0 < result["ndcg"] <= 1.0 and -1.0 <= result["kendall_tau"] <= 1.0
    assert "ndcg" not in before and "reference" not in before  # a model outside a run has no reference
    assert result["baseline"]["model"] == before["model"]
    assert result["baseline"]["recall_curve"] == before["recall_curve"]
    assert "Kendall tau" in stdout and "NDCG" in stdout
    assert_real_png(out / "pass_at_n.png")


def test_eval_refuses_a_baseline_that_is_neither_an_eval_nor_a_model(
    monkeypatch, capsys, workspace, tmp_path
):
    code, _, err = run_cli(
        monkeypatch, capsys, "eval", "--model", workspace / "model", "--prompts", workspace / "prompts.jsonl",
        "--reward", REWARD_FILE, "--output", tmp_path / "e", "--baseline", tmp_path,
    )  # fmt: skip
    assert code == 2 and "neither a larpo eval output" in err
    assert not (tmp_path / "e").exists()


def test_eval_fits_the_response_budget_to_the_models_context(workspace):
    from larpo.model_io import fitting_max_new_tokens, load_policy

    model, tokenizer = load_policy(workspace / "model")
    context = model.config.max_position_embeddings
    prompt = "1" * (context - 3)
    assert fitting_max_new_tokens(model, tokenizer, ["1+1=", prompt]) == 3
    assert fitting_max_new_tokens(model, tokenizer, ["1+1="], cap=5) == 5
