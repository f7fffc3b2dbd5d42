"""The ``larpo`` command."""

from __future__ import annotations

import dataclasses
import difflib
import errno
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from larpo.errors import InputError

try:  # typer >= 0.20 vendors click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException

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


@app.command("import-gguf")
def import_gguf_command(
    gguf_file: Annotated[Path, typer.Argument(help="a GGUF checkpoint of a Llama-family model")],
    output: Annotated[Path, typer.Argument(help="directory to write the Hugging Face model to")],
) -> None:
    """Turn a GGUF checkpoint into an ordinary Hugging Face model directory (float32, with its tokenizer)."""
    from larpo.gguf_import import import_gguf

    print(f"wrote {import_gguf(gguf_file, output)}")


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
    from larpo.distributed import check_launch
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
    check_launch(args.world_size, " or set use_cpu: true in --config")
    rows = read_training_lists(data)
    policy, tokenizer = load_policy(model, dtype)
    if lora:
        policy = add_lora(policy, lora, seed=args.seed)
    examples = [tokenize_list(tokenizer, r["prompt"], r["responses"], r.get("scores")) for r in rows]
    check_list_lengths(
        examples, args.max_length, getattr(policy.config, "max_position_embeddings", None), data
    )
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
    """Run (or resume) iterative LarPO: sample, rerank, merge lists, train, repeat.

    Runs as one process, or as several under ``accelerate launch -m larpo.cli run ...`` (DDP).
    """
    from larpo.loop import LarpoRun
    from larpo.run_config import load_run_config

    settings = load_run_config(config, set_, output_dir=output_dir)
    runner = LarpoRun(settings)
    runner.execute()
    if runner.is_main:  # under accelerate launch: one line, not one per process
        final = Path(settings.output_dir) / f"iter_{settings.iterations - 1}" / "model"
        print(f"finished {settings.iterations} iterations; final model: {final}")


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
    from larpo.model_io import check_prompt_lengths, load_policy
    from larpo.prompts import load_prompts
    from larpo.store import CandidateRecord, write_records_atomic

    if output.exists():
        raise InputError(f"{output}: exists; choose another output file")
    for flag, value in (("--num-candidates", num_candidates), ("--max-new-tokens", max_new_tokens),
                        ("--batch-size", batch_size)):  # fmt: skip
        if value < 1:
            raise InputError(f"{flag} must be >= 1, got {value}")
    params = SamplingParams(num_candidates, temperature, top_p, max_new_tokens, seed)
    items = load_prompts(prompts)
    policy, tokenizer = load_policy(model, dtype)
    check_prompt_lengths(policy, tokenizer, [(repr(p.prompt_id), p.text) for p in items],
                         max_new_tokens=max_new_tokens, where=f"{prompts}: ")  # fmt: skip
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
    from larpo.store import group_by_prompt, write_records_atomic

    if output.exists():
        raise InputError(f"{output}: exists; choose another output file")
    if not candidates.is_file():
        raise InputError(f"{candidates}: file not found")
    records = read_candidates(candidates)
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
    from larpo.model_io import check_prompt_lengths, load_policy
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
    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    items = load_prompts(prompts)
    reranker = load_reranker(reward)
    policy, tokenizer = load_policy(model, dtype)
    check_prompt_lengths(policy, tokenizer, [(repr(p.prompt_id), p.text) for p in items],
                         max_new_tokens=max_new_tokens, where=f"{prompts}: ")  # fmt: skip
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

    first = read_jsonl(path)[0]
    if "responses" in first:
        return read_ranked_lists(path)
    records = read_candidates(path)
    if any(r.score is None for r in records):
        raise InputError(f"{path}: candidates without a score; run `larpo score` first")
    lists, stats = build_lists(records, max(r.iteration for r in records), ListSettings(memorization="all"))
    if not lists:
        raise InputError(f"{path}: no prompt has 2 differently scored candidates to rank")
    return [{"prompt": x.prompt, "responses": x.responses, "scores": x.scores} for x in lists]


def check_list_lengths(
    examples: list[dict[str, Any]], max_length: int | None, context: int | None, where: Path
) -> None:
    """Every list fits: its prompt is shorter than ``max_length`` (responses are cut to fit it, prompts
    never are), and its longest prompt + response, after that cut, fits the model's context."""
    for number, example in enumerate(examples, start=1):
        prompt = len(example["prompt_ids"])
        if max_length is not None and prompt >= max_length:
            raise InputError(
                f"{where}: record {number}: the prompt has {prompt} tokens, which does not fit max_length={max_length}"
            )
        longest = prompt + max(len(r) for r in example["response_ids"])
        if max_length is not None:
            longest = min(longest, max_length)
        if context is not None and longest > context:
            raise InputError(
                f"{where}: record {number}: prompt + response is {longest} tokens, more than the model's "
                f"context of {context} (max_position_embeddings); shorten it or set --max-length"
            )


def read_candidates(path: Path) -> list:
    """The candidate records of a user's file: at least one, and one prompt text per prompt id."""
    from larpo.store import read_records

    records = read_records(path)
    if not records:
        raise InputError(f"{path}: no records")
    prompts: dict[str, str] = {}
    for number, record in enumerate(records, start=1):
        if prompts.setdefault(record.prompt_id, record.prompt) != record.prompt:
            raise InputError(f"{path}:{number}: prompt id {record.prompt_id!r} was used for another prompt")
    return records


def listwise_config(**settings: Any):
    """A ListwiseConfig from plain settings; unknown keys and invalid values become InputError."""
    from larpo.config import ListwiseConfig

    fields = {f.name: f for f in dataclasses.fields(ListwiseConfig) if f.init}
    for key in settings:
        if key not in fields:
            close = difflib.get_close_matches(key, sorted(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(f"unknown training setting {key!r}{hint}")
        settings[key] = _number_if_numeric(key, settings[key], fields[key].default)
    defaults = {"report_to": "none", "logging_steps": 10}
    try:
        return ListwiseConfig(**{**defaults, **settings})
    except (ValueError, TypeError) as error:
        raise InputError(str(error).splitlines()[0]) from None


def _number_if_numeric(key: str, value: Any, default: Any) -> Any:
    """``value`` of a setting whose default is a number, as a number (YAML reads ``1e-5`` as a string);
    a value that is no number is an InputError. Other settings pass through unchanged."""
    if isinstance(default, bool) or not isinstance(default, int | float):
        return value
    if isinstance(value, str):
        try:
            value = float(value) if isinstance(default, float) else int(value)
        except ValueError:
            raise InputError(f"{key} must be a number, got str {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{key} must be a number, got {type(value).__name__} {value!r}")
    return value


def main() -> None:
    """Entry point. Every error the user can fix prints one line ``larpo: error: ...`` on stderr and
    exits with code 2: bad input (InputError), a bad command line (unknown option, missing or invalid
    value) and an operating-system error (disk full, read-only or missing directory)."""
    from safetensors import SafetensorError
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    logger = logging.getLogger("larpo")  # warnings print as one `larpo: warning: ...` line
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
    try:
        code = app(prog_name="larpo", standalone_mode=False)
    except InputError as error:
        _fail(str(error))
    except ClickException as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # typer has printed the help
            sys.exit(error.exit_code)
        context = getattr(error, "ctx", None)
        hint = f" (see `{context.command_path} --help`)" if context is not None else ""
        _fail(error.format_message() + hint, error.exit_code)
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        name = f" (errno {errno.errorcode.get(error.errno, error.errno)})" if error.errno else ""
        _fail(f"{where}{error.strerror or error}{name}; {_RETRY}")
    except SafetensorError as error:
        if "I/O error" not in str(error):
            raise
        _fail(f"cannot write the model weights ({error}); {_RETRY}")
    sys.exit(code if isinstance(code, int) else 0)


_RETRY = "fix the cause and run the same command again (a run resumes)"


def _fail(message: str, code: int = 2) -> None:
    print(f"larpo: error: {_one_line(message)}", file=sys.stderr)
    sys.exit(code)


class _StderrHandler(logging.Handler):
    """``larpo: warning: ...`` on whatever ``sys.stderr`` is at the time."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"larpo: {record.levelname.lower()}: {_one_line(record.getMessage())}", file=sys.stderr)


def _one_line(message: str) -> str:
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


if __name__ == "__main__":
    main()
