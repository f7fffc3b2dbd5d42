"""The ``larpo`` command."""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from larpo.errors import InputError

app = typer.Typer(
    help="LarPO: align an LLM as a retriever, with listwise ranking objectives over its own samples.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command()
def demo(
    output: Annotated[Path, typer.Option(help="directory for the SFT model, the run and the report")] = Path(
        "runs/demo"
    ),
    objective: Annotated[
        str | None, typer.Option(help="objective name (see `larpo objectives`; default: contrastive)")
    ] = None,
    seed: int = 0,
    iterations: Annotated[int | None, typer.Option(help="LarPO iterations (default: the demo's)")] = None,
    reward: Annotated[
        str | None, typer.Option(help="graded (default; orders wrong answers too) or exact (exact match)")
    ] = None,
    error_rate: Annotated[
        float | None,
        typer.Option(help="share of SFT demonstrations with a carry/borrow bug (default 0.6; 0 = clean)"),
    ] = None,
) -> None:
    """Built-in demo: a tiny model learns arithmetic, then LarPO aligns it (CPU, a few minutes)."""
    from larpo.demo import DemoSettings, run_demo
    from larpo.losses import get_objective

    chosen = {"objective": objective, "seed": seed, "iterations": iterations, "reward": reward,
              "demonstration_error_rate": error_rate}  # fmt: skip
    settings = DemoSettings(**{k: v for k, v in chosen.items() if v is not None})
    try:
        get_objective(settings.objective)
    except ValueError as error:
        raise InputError(str(error)) from None
    if settings.reward not in ("graded", "exact"):
        raise InputError(f"unknown demo reward {settings.reward!r}; valid: graded, exact")
    if not 0.0 <= settings.demonstration_error_rate <= 1.0:
        raise InputError(f"--error-rate must be in [0, 1], got {settings.demonstration_error_rate}")
    if settings.iterations < 1:
        raise InputError(f"--iterations must be at least 1, got {settings.iterations}")
    run_demo(output, settings)
    print(f"wrote {output / 'report.json'}; the SFT model is {output / 'sft'}, the aligned one "
          f"{output / 'run' / f'iter_{settings.iterations - 1}' / 'model'}")  # fmt: skip


@app.command()
def objectives() -> None:
    """List the registered objectives and their options."""
    from larpo.losses import OBJECTIVES

    table = Table("name", "kind", "reference", "options", "summary")
    for name, entry in OBJECTIVES.items():
        options = ", ".join(o for o in entry.options if o not in ("scores", "lengths", "reduction"))
        table.add_row(name, entry.kind, "no" if entry.reference_free else "yes", options, entry.summary)
    Console().print(table)


@app.command("tiny-model")
def tiny_model(
    output: Annotated[Path, typer.Argument(help="directory to write the model and tokenizer to")],
    alphabet: Annotated[str, typer.Option(help="characters of the tokenizer")] = "0123456789+-*= ",
    hidden_size: int = 128,
    layers: int = 2,
    heads: int = 2,
    seed: int = 0,
) -> None:
    """Write a small random Llama model with a character tokenizer (for trying larpo offline)."""
    from larpo.tiny import char_tokenizer, tiny_llama

    if (output / "config.json").exists():
        raise InputError(f"{output}: already holds a model; choose another directory")
    tokenizer = char_tokenizer(alphabet, output)
    tiny_llama(
        len(tokenizer), hidden_size=hidden_size, num_layers=layers, num_heads=heads, seed=seed
    ).save_pretrained(output)
    print(f"wrote a tiny model and tokenizer to {output}")


@app.command()
def train(
    model: Annotated[Path, typer.Option(help="local Hugging Face model directory (the policy)")],
    data: Annotated[
        Path,
        typer.Option(
            help="JSONL of ranked lists (prompt, responses, scores) or scored candidates (larpo score)"
        ),
    ],
    output: Annotated[Path, typer.Option(help="directory for the trained model and its logs")],
    config: Annotated[
        Path | None, typer.Option(help="YAML of ListwiseConfig fields, plus an optional peft section (LoRA)")
    ] = None,
    objective: Annotated[str | None, typer.Option(help="objective name (see `larpo objectives`)")] = None,
    beta: float | None = None,
    learning_rate: float | None = None,
    epochs: Annotated[float | None, typer.Option(help="passes over the lists")] = None,
    batch_size: Annotated[int | None, typer.Option(help="lists per device per step")] = None,
    nll_weight: float | None = None,
    max_length: int | None = None,
    seed: int | None = None,
    dtype: Annotated[str, typer.Option(help="auto (fp32 on CPU, bf16 on GPU), float32, bfloat16")] = "auto",
    overwrite: Annotated[
        bool, typer.Option(help="write into an output directory that holds a model")
    ] = False,
) -> None:
    """Train a policy on fixed ranked candidate lists with a ranking objective.

    Runs as one process, or as several under ``accelerate launch -m larpo.cli train ...``.
    """
    from larpo.adapters import add_lora, parse_lora, require_peft, save_merged
    from larpo.data import tokenize_list
    from larpo.model_io import load_policy
    from larpo.run_config import read_yaml_mapping
    from larpo.trainer import ListwiseTrainer

    saved = (output / "config.json").exists() or (output / "adapter_config.json").exists()
    if saved and not overwrite:
        raise InputError(f"{output}: already holds a model; pass --overwrite or choose another directory")
    settings = read_yaml_mapping(config) if config else {}
    lora = parse_lora(settings.pop("peft", None), where=f"{config}: peft")
    if lora:
        require_peft()
    flags = {
        "objective": objective,
        "beta": beta,
        "learning_rate": learning_rate,
        "num_train_epochs": epochs,
        "per_device_train_batch_size": batch_size,
        "nll_weight": nll_weight,
        "max_length": max_length,
        "seed": seed,
    }
    settings.update({key: value for key, value in flags.items() if value is not None})
    args = listwise_config(output_dir=str(output), **settings)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > args.world_size:  # e.g. accelerate launch on a machine without GPUs
        raise InputError(
            f"launched as {launched} processes, but each would train alone (no GPU found): on CPU "
            "export ACCELERATE_USE_CPU=true or set use_cpu: true in --config"
        )
    rows = read_training_lists(data)
    policy, tokenizer = load_policy(model, dtype)
    if lora:
        policy = add_lora(policy, lora, seed=args.seed)
    examples = [tokenize_list(tokenizer, r["prompt"], r["responses"], r.get("scores")) for r in rows]
    trainer = ListwiseTrainer(policy, args, examples, processing_class=tokenizer)
    trainer.train()
    trainer.save_model(str(output))  # a peft model saves its adapter only
    if not trainer.is_world_process_zero():
        return
    (output / "train_log.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    what = "LoRA adapter" if lora else "model"
    if lora and lora.merge_export != "no":
        save_merged(trainer.accelerator.unwrap_model(trainer.model), tokenizer, output / "merged")
        what += f" (merged model in {output / 'merged'})"
    processes = trainer.accelerator.num_processes
    print(
        f"trained on {len(examples)} lists with {args.objective} in {processes} process(es); {what} saved to {output}"
    )


@app.command()
def run(
    config: Annotated[Path | None, typer.Option(help="YAML run config (see examples/configs)")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="override a config key: --set learning_rate=1e-6 (repeatable)"),
    ] = None,
    output_dir: Annotated[str | None, typer.Option(help="run directory (overrides the config)")] = None,
) -> None:
    """Run (or resume) iterative LarPO: sample, rerank, merge lists, train, repeat."""
    from larpo.loop import LarpoRun
    from larpo.run_config import load_run_config

    settings = load_run_config(config, set_, output_dir=output_dir)
    LarpoRun(settings).execute()
    print(
        f"finished {settings.iterations} iterations; final model: {Path(settings.output_dir) / f'iter_{settings.iterations - 1}' / 'model'}"
    )


@app.command()
def generate(
    model: Annotated[Path, typer.Option(help="local Hugging Face model directory")],
    prompts: Annotated[Path, typer.Option(help="JSONL with a 'prompt' field (and optional 'id')")],
    output: Annotated[Path, typer.Option(help="candidate JSONL to write (one record per response)")],
    num_candidates: int = 8,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 64,
    batch_size: int = 32,
    seed: int = 0,
    dtype: str = "auto",
) -> None:
    """Sample candidates for prompts (one stage of `larpo run`, for your own pipelines)."""
    from larpo.generation import SamplingParams, TransformersGenerator
    from larpo.model_io import load_policy
    from larpo.prompts import load_prompts
    from larpo.store import CandidateRecord, write_records_atomic

    if output.exists():
        raise InputError(f"{output}: exists; choose another output file")
    params = SamplingParams(num_candidates, temperature, top_p, max_new_tokens, seed)
    items = load_prompts(prompts)
    policy, tokenizer = load_policy(model, dtype)
    generations = TransformersGenerator(policy, tokenizer, batch_size=batch_size).generate(
        [p.text for p in items], params
    )
    records = [
        CandidateRecord(p.prompt_id, p.text, response, None, 0, temperature, source="policy")
        for p, responses in zip(items, generations.responses, strict=True)
        for response in responses
    ]
    write_records_atomic(output, records)
    print(
        f"wrote {len(records)} candidates for {len(items)} prompts ({generations.duplicates} duplicates removed) to {output}"
    )


@app.command()
def score(
    reward: Annotated[
        str, typer.Option(help="'module:function', 'file.py:function' or a reward model directory")
    ],
    candidates: Annotated[Path, typer.Option(help="candidate JSONL (from larpo generate)")],
    output: Annotated[Path, typer.Option(help="scored candidate JSONL to write")],
) -> None:
    """Score candidates with a reranker (one stage of `larpo run`)."""
    import dataclasses as dc

    from larpo.rewards import load_reranker
    from larpo.store import group_by_prompt, read_records, write_records_atomic

    if output.exists():
        raise InputError(f"{output}: exists; choose another output file")
    if not candidates.is_file():
        raise InputError(f"{candidates}: file not found")
    records = read_records(candidates)
    reranker = load_reranker(reward)
    groups = group_by_prompt(records)
    scores = reranker.score(
        [records[g[0]].prompt for g in groups.values()],
        [[records[i].response for i in g] for g in groups.values()],
    )
    scored = list(records)
    for group, values in zip(groups.values(), scores, strict=True):
        for position, value in zip(group, values, strict=True):
            scored[position] = dc.replace(records[position], score=value)
    write_records_atomic(output, scored)
    print(f"scored {len(records)} candidates of {len(groups)} prompts; wrote {output}")


@app.command("eval")
def evaluate(
    model: Annotated[Path, typer.Option(help="local Hugging Face model directory to evaluate")],
    prompts: Annotated[Path, typer.Option(help="held-out prompts: JSONL with a 'prompt' field")],
    reward: Annotated[
        str, typer.Option(help="'module:function', 'file.py:function' or a reward model directory")
    ],
    output: Annotated[Path, typer.Option(help="directory for eval.json and the plots")] = Path("larpo_eval"),
    num_samples: Annotated[int, typer.Option(help="samples per prompt for pass@k")] = 16,
    temperature: Annotated[list[float] | None, typer.Option(help="sampling temperature (repeatable)")] = None,
    k: Annotated[list[int] | None, typer.Option(help="k of pass@k (repeatable)")] = None,
    max_new_tokens: int = 64,
    threshold: Annotated[float, typer.Option(help="a response is correct when its reward is >= this")] = 1.0,
    best_of: Annotated[int | None, typer.Option(help="also evaluate best-of-N reranking with this N")] = None,
    baseline_model: Annotated[
        Path | None, typer.Option(help="model whose greedy outputs the win rate is against")
    ] = None,
    alpaca_eval: Annotated[
        Path | None, typer.Option(help="also write AlpacaEval model_outputs.json here")
    ] = None,
    batch_size: int = 64,
    seed: int = 0,
    dtype: str = "auto",
) -> None:
    """Evaluate a policy as a retriever: greedy accuracy, pass@k curves, reward, best-of-N, win rate."""
    from larpo.evaluation import EvalSettings, evaluate_policy, export_alpaca_eval
    from larpo.generation import TransformersGenerator
    from larpo.model_io import load_policy
    from larpo.plots import plot_recall_curves
    from larpo.prompts import load_prompts
    from larpo.rewards import load_reranker
    from larpo.store import atomic_write_json

    settings = EvalSettings(
        num_samples=num_samples,
        temperatures=temperature or [1.0],
        ks=k or [x for x in (1, 4, 16) if x <= num_samples],
        max_new_tokens=max_new_tokens,
        correct_threshold=threshold,
        best_of=best_of,
        seed=seed,
    )
    items = load_prompts(prompts)
    reranker = load_reranker(reward)
    policy, tokenizer = load_policy(model, dtype)
    baseline = None
    if baseline_model is not None:
        baseline = TransformersGenerator(*load_policy(baseline_model, dtype), batch_size=batch_size)
    texts = [p.text for p in items]
    result = evaluate_policy(TransformersGenerator(policy, tokenizer, batch_size=batch_size), reranker, texts, settings,
                             baseline=baseline)  # fmt: skip
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output / "eval.json", result)
    plot_recall_curves(result["recall_curve"], output / "pass_at_n.png", f"{model.name}")
    if alpaca_eval is not None:
        export_alpaca_eval(alpaca_eval, texts, result["greedy_outputs"], model.name)
    table = Table("metric", "value")
    table.add_row("greedy accuracy", f"{result['greedy_accuracy']:.4f}")
    table.add_row("mean reward (greedy)", f"{result['mean_reward']:.4f}")
    for key, value in result["pass_at_k"].items():
        table.add_row(f"pass@{key} (T={settings.temperatures[0]})", f"{value:.4f}")
    if "best_of_n" in result:
        table.add_row(f"best-of-{best_of} accuracy", f"{result['best_of_n']['accuracy']:.4f}")
    if "win_rate" in result:
        table.add_row("win rate vs baseline", f"{result['win_rate']:.4f}")
    Console().print(table)
    print(f"wrote {output / 'eval.json'} and {output / 'pass_at_n.png'}")


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a larpo run directory")]) -> None:
    """Gather every iteration of a run into report.md with plots."""
    from larpo.report import write_report

    print(f"wrote {write_report(run_dir)}")


def read_training_lists(path: Path) -> list[dict[str, Any]]:
    """Ranked lists from ``path``: a lists file, or a scored candidate file grouped by prompt."""
    from larpo.candidates import ListSettings, build_lists
    from larpo.jsonl import read_jsonl, read_ranked_lists
    from larpo.store import read_records

    first = read_jsonl(path)[0]
    if "responses" in first:
        return read_ranked_lists(path)
    records = read_records(path)
    if any(r.score is None for r in records):
        raise InputError(f"{path}: candidates without a score; run `larpo score` first")
    lists, stats = build_lists(records, max(r.iteration for r in records), ListSettings(memorization="all"))
    if not lists:
        raise InputError(f"{path}: no prompt has 2 differently scored candidates to rank")
    return [{"prompt": x.prompt, "responses": x.responses, "scores": x.scores} for x in lists]


def listwise_config(**settings: Any):
    """A ListwiseConfig from plain settings; unknown keys and invalid values become InputError."""
    from larpo.config import ListwiseConfig

    valid = {f.name for f in dataclasses.fields(ListwiseConfig) if f.init}
    for key in settings:
        if key not in valid:
            close = difflib.get_close_matches(key, sorted(valid), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(f"unknown training setting {key!r}{hint}")
    defaults = {"report_to": "none", "logging_steps": 10}
    try:
        return ListwiseConfig(**{**defaults, **settings})
    except (ValueError, TypeError) as error:
        raise InputError(str(error).splitlines()[0]) from None


def main() -> None:
    """Entry point: user errors print one line and exit with code 2."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        app()
    except InputError as error:
        print(f"larpo: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
