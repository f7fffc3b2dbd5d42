"""The ``larpo`` command."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from larpo.errors import InputError, StderrHandler, one_line, user_message

try:  # typer >= 0.20 vendors click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException

app = typer.Typer(  # its help is the docstring of _options
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        from larpo import __version__

        print(f"larpo {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", help="print the version and exit", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """LarPO: align an LLM as a retriever, with listwise ranking objectives over its own samples."""


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
    from larpo.tasks.arithmetic.demo import DemoSettings, run_demo

    chosen = {"objective": objective, "seed": seed, "iterations": iterations, "reward": reward,
              "demonstration_error_rate": error_rate}  # fmt: skip
    settings = DemoSettings(**{k: v for k, v in chosen.items() if v is not None})
    settings.check()
    run_demo(output, settings)
    print(f"wrote {output / 'report.json'}; the SFT model is {output / 'sft'}, the aligned one "
          f"{output / 'run' / f'iter_{settings.iterations - 1}' / 'model'}")  # fmt: skip


@app.command()
def objectives() -> None:
    """List the registered objectives and their options."""
    from rich.console import Console
    from rich.table import Table

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


ChatTemplate = Annotated[
    str,
    typer.Option(
        help="prompts as the model sees them: auto (the tokenizer's template, if any), none, or a Jinja file"
    ),
]


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
            help="JSONL (or datasets folder) of ranked lists, preference pairs, rated completions or scored "
            "candidates (larpo score); see --format"
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
    format: Annotated[
        str | None,
        typer.Option(
            help="format of --data: lists, ranked, pairs, rated or candidates (default: from its columns)"
        ),
    ] = None,
    rating: Annotated[str, typer.Option(help="rated format: the completion field to rank by")] = "rating",
    report_to: Annotated[
        str | None,
        typer.Option(
            help="trackers, as TrainingArguments.report_to: tensorboard, wandb, ... (comma-separated)"
        ),
    ] = None,
    run_name: Annotated[str | None, typer.Option(help="the run's name in the trackers")] = None,
    overwrite: Annotated[
        bool, typer.Option(help="write into an output directory that holds a model")
    ] = False,
    chat_template: ChatTemplate = "auto",
) -> None:
    """Train a policy on fixed ranked candidate lists with a ranking objective.

    Runs as one process, or as several under ``accelerate launch -m larpo.cli train ...``.
    """
    from larpo.adapters import parse_lora, require_peft
    from larpo.chat import check_template_setting
    from larpo.checks import read_yaml_mapping

    check_template_setting(chat_template)

    saved = (output / "config.json").exists() or (output / "adapter_config.json").exists()
    if saved and not overwrite:
        raise InputError(f"{output}: already holds a model; pass --overwrite or choose another directory")
    settings = read_yaml_mapping(config) if config else {}
    lora = parse_lora(settings.pop("peft", None), where=f"{config}: peft")
    if lora:
        require_peft()
    flags = {"objective": objective, "beta": beta, "learning_rate": learning_rate, "num_train_epochs": epochs,
             "per_device_train_batch_size": batch_size, "nll_weight": nll_weight, "max_length": max_length,
             "seed": seed, "report_to": report_to and report_to.split(","), "run_name": run_name}  # fmt: skip
    settings.update({key: value for key, value in flags.items() if value is not None})
    from larpo.trainer.inputs import train_on_file

    if summary := train_on_file(model, data, output, settings, lora, dtype, format, rating, chat_template):
        print(summary)  # by the main process alone under accelerate launch


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
    from larpo.run.config import load_run_config

    settings = load_run_config(config, set_, output_dir=output_dir)  # checked before torch is imported
    from larpo.distributed import process_state
    from larpo.run import run as run_larpo

    run_larpo(settings)
    if process_state().is_main_process:  # under accelerate launch: one line, not one per process
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
    chat_template: ChatTemplate = "auto",
) -> None:
    """Sample candidates for prompts (one stage of `larpo run`, for your own pipelines)."""
    from larpo.chat import check_template_setting

    check_template_setting(chat_template)
    if output.exists():
        raise InputError(f"{output}: exists; choose another output file")
    for flag, value in (("--num-candidates", num_candidates), ("--max-new-tokens", max_new_tokens),
                        ("--batch-size", batch_size)):  # fmt: skip
        if value < 1:
            raise InputError(f"{flag} must be >= 1, got {value}")
    from larpo.generation import SamplingParams
    from larpo.run.generate import sample_prompts_file
    from larpo.store import write_records_atomic

    params = SamplingParams(num_candidates, temperature, top_p, max_new_tokens, seed)
    items, records = sample_prompts_file(
        model, prompts, params, batch_size=batch_size, dtype=dtype, chat_template=chat_template
    )
    duplicates = len(items) * num_candidates - len(records)
    write_records_atomic(output, records)
    print(
        f"wrote {len(records)} candidates for {len(items)} prompts ({duplicates} duplicates removed) to {output}"
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
    from larpo.store import read_candidates, write_records_atomic

    if output.exists():
        raise InputError(f"{output}: exists; choose another output file")
    if not candidates.is_file():
        raise InputError(f"{candidates}: file not found")
    records = read_candidates(candidates)
    from larpo.rewards import load_reranker
    from larpo.run.score import score_records

    scored = score_records(load_reranker(reward), records)
    write_records_atomic(output, scored)
    prompts = len({r.prompt_id for r in records})
    print(f"scored {len(records)} candidates of {prompts} prompts; wrote {output}")


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
    max_new_tokens: Annotated[
        int | None,
        typer.Option(help="longest response in tokens (default: 64, or less to fit the model's context)"),
    ] = None,
    threshold: Annotated[float, typer.Option(help="a response is correct when its reward is >= this")] = 1.0,
    best_of: Annotated[int | None, typer.Option(help="also evaluate best-of-N reranking with this N")] = None,
    baseline_model: Annotated[
        Path | None, typer.Option(help="model whose greedy outputs the win rate is against")
    ] = None,
    alpaca_eval: Annotated[
        Path | None, typer.Option(help="also write AlpacaEval model_outputs.json here")
    ] = None,
    baseline: Annotated[
        Path | None, typer.Option(help="another `larpo eval` output or a model directory to compare with")
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(help="reference model of the implicit reward (default: the run's initial model)"),
    ] = None,
    batch_size: int = 64,
    seed: int = 0,
    dtype: str = "auto",
    chat_template: ChatTemplate = "auto",
) -> None:
    """Evaluate a policy as a retriever: greedy accuracy, pass@k curves, reward, best-of-N, win rate."""
    from larpo.chat import check_template_setting
    from larpo.evaluation.held_out import EvalSettings, evaluate_model_dir

    check_template_setting(chat_template)

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
    result = evaluate_model_dir(
        model, prompts, reward, output, settings, batch_size=batch_size, dtype=dtype,
        baseline_model=baseline_model, alpaca_eval=alpaca_eval, chat_template=chat_template,
        baseline=baseline, reference=reference,
    )  # fmt: skip
    from rich.console import Console
    from rich.table import Table

    table = Table("metric", "value")
    table.add_row("greedy accuracy", f"{result['greedy_accuracy']:.4f}")
    table.add_row("mean reward (greedy)", f"{result['mean_reward']:.4f}")
    for key, value in result["pass_at_k"].items():
        table.add_row(f"pass@{key} (T={settings.temperatures[0]})", f"{value:.4f}")
    if "best_of_n" in result:
        table.add_row(f"best-of-{best_of} accuracy", f"{result['best_of_n']['accuracy']:.4f}")
    if "win_rate" in result:
        table.add_row("win rate vs baseline", f"{result['win_rate']:.4f}")
    for key, label in (("ndcg", "NDCG (implicit reward vs reranker)"), ("kendall_tau", "Kendall tau")):
        if result.get(key) is not None:
            table.add_row(label, f"{result[key]:.4f}")
    if "baseline" in result:
        table.add_row(
            f"greedy accuracy of {result['baseline']['model']}",
            f"{result['baseline']['greedy_accuracy']:.4f}",
        )
    Console().print(table)
    print(f"wrote {output / 'eval.json'} and {output / 'pass_at_n.png'}")


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a larpo run directory")]) -> None:
    """Gather every iteration of a run into report.md with plots."""
    from larpo.evaluation.report import write_report

    print(f"wrote {write_report(run_dir)}")


def main() -> None:
    """Entry point. Every error the user can fix prints one line ``larpo: error: ...`` on stderr and
    exits with code 2: bad input (InputError), a bad command line (unknown option, missing or invalid
    value) and an operating-system error (disk full, read-only or missing directory)."""
    _disable_download_progress_bars()
    logger = logging.getLogger("larpo")  # warnings print as one `larpo: warning: ...` line
    if not any(isinstance(h, StderrHandler) for h in logger.handlers):
        logger.addHandler(StderrHandler())
    try:
        code = app(prog_name="larpo", standalone_mode=False)
    except ClickException as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # typer has printed the help
            sys.exit(error.exit_code)
        context = getattr(error, "ctx", None)
        hint = f" (see `{context.command_path} --help`)" if context is not None else ""
        _fail(error.format_message() + hint, error.exit_code)
    except Exception as error:
        message = user_message(error)
        if message is None:
            raise
        _fail(message)
    sys.exit(code if isinstance(code, int) else 0)


def _disable_download_progress_bars() -> None:
    """No download/loading progress bars from huggingface_hub and transformers (larpo prints its own),
    without importing transformers: the environment variable covers a later import."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def _fail(message: str, code: int = 2) -> None:
    print(f"larpo: error: {one_line(message)}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
