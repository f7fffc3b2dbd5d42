"""The ``larpo`` command: each command parses and checks its arguments (:mod:`larpo.cli_parser`), then
imports the parts of the library it needs, so that what needs no model answers without loading torch."""

from __future__ import annotations

import logging
import os
import sys
from argparse import Namespace
from pathlib import Path

from larpo.cli_parser import UsageError, parse
from larpo.errors import InputError, StderrHandler, one_line, user_message


def demo(args: Namespace) -> None:
    from larpo.tasks.arithmetic.demo import DemoSettings, run_demo

    chosen = {"objective": args.objective, "seed": args.seed, "iterations": args.iterations,
              "reward": args.reward, "demonstration_error_rate": args.error_rate}  # fmt: skip
    settings = DemoSettings(**{k: v for k, v in chosen.items() if v is not None})
    settings.check()
    run_demo(args.output, settings)
    print(f"wrote {args.output / 'report.json'}; the SFT model is {args.output / 'sft'}, the aligned one "
          f"{args.output / 'run' / f'iter_{settings.iterations - 1}' / 'model'}")  # fmt: skip


def objectives(args: Namespace) -> None:
    from larpo.losses import OBJECTIVES

    rows = [("name", "kind", "reference", "options", "summary")]
    for name, entry in OBJECTIVES.items():
        options = ", ".join(o for o in entry.options if o not in ("scores", "lengths", "reduction"))
        rows.append((name, entry.kind, "no" if entry.reference_free else "yes", options, entry.summary))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def tiny_model(args: Namespace) -> None:
    from larpo.tiny import char_tokenizer, tiny_llama

    if (args.output / "config.json").exists():
        raise InputError(f"{args.output}: already holds a model; choose another directory")
    tokenizer = char_tokenizer(args.alphabet, args.output)
    model = tiny_llama(len(tokenizer), hidden_size=args.hidden_size, num_layers=args.layers,
                       num_heads=args.heads, seed=args.seed)  # fmt: skip
    model.save_pretrained(args.output)
    print(f"wrote a tiny model and tokenizer to {args.output}")


def import_gguf(args: Namespace) -> None:
    from larpo.gguf_import import import_gguf as convert

    print(f"wrote {convert(args.gguf_file, args.output)}")


def train(args: Namespace) -> None:
    from larpo.adapters import parse_lora, require_peft
    from larpo.chat import check_template_setting
    from larpo.checks import read_yaml_mapping

    check_template_setting(args.chat_template)
    output = args.output
    saved = (output / "config.json").exists() or (output / "adapter_config.json").exists()
    if saved and not args.overwrite:
        raise InputError(f"{output}: already holds a model; pass --overwrite or choose another directory")
    settings = read_yaml_mapping(args.config) if args.config else {}
    lora = parse_lora(settings.pop("peft", None), where=f"{args.config}: peft")
    if lora:
        require_peft()
    flags = {"objective": args.objective, "beta": args.beta, "learning_rate": args.learning_rate,
             "num_train_epochs": args.epochs, "per_device_train_batch_size": args.batch_size,
             "nll_weight": args.nll_weight, "max_length": args.max_length, "seed": args.seed,
             "report_to": args.report_to and args.report_to.split(","), "run_name": args.run_name}  # fmt: skip
    settings.update({key: value for key, value in flags.items() if value is not None})
    from larpo.trainer.inputs import train_on_file

    summary = train_on_file(args.model, args.data, output, settings, lora, args.dtype, args.format,
                            args.rating, args.chat_template)  # fmt: skip
    if summary:
        print(summary)  # by the main process alone under accelerate launch


def run(args: Namespace) -> None:
    from larpo.run.config import load_run_config

    settings = load_run_config(args.config, args.set, output_dir=args.output_dir)  # before torch is imported
    from larpo.distributed import process_state
    from larpo.run import run as run_larpo

    data = run_larpo(settings)
    if process_state().is_main_process:  # under accelerate launch: one report, not one per process
        from rich.console import Console

        from larpo.run.runner import before_after

        run_dir = Path(settings.output_dir)
        table = before_after(run_dir, data)
        if table is not None:
            Console().print(table)
            print(f"held-out results: {run_dir / 'eval'}; `larpo report {run_dir}` gathers every iteration")
        final = run_dir / f"iter_{settings.iterations - 1}" / "model"
        print(f"finished {settings.iterations} iterations; final model: {final}")


def generate(args: Namespace) -> None:
    from larpo.chat import check_template_setting

    check_template_setting(args.chat_template)
    if args.output.exists():
        raise InputError(f"{args.output}: exists; choose another output file")
    for flag in ("num_candidates", "max_new_tokens", "batch_size"):
        _require_positive(args, flag)
    from larpo.generation import SamplingParams
    from larpo.run.generate import sample_prompts_file
    from larpo.store import write_records_atomic

    params = SamplingParams(args.num_candidates, args.temperature, args.top_p, args.max_new_tokens, args.seed)
    items, records = sample_prompts_file(args.model, args.prompts, params, batch_size=args.batch_size,
                                         dtype=args.dtype, chat_template=args.chat_template)  # fmt: skip
    duplicates = len(items) * args.num_candidates - len(records)
    write_records_atomic(args.output, records)
    print(f"wrote {len(records)} candidates for {len(items)} prompts ({duplicates} duplicates removed) "
          f"to {args.output}")  # fmt: skip


def score(args: Namespace) -> None:
    from larpo.store import read_candidates, write_records_atomic

    if args.output.exists():
        raise InputError(f"{args.output}: exists; choose another output file")
    if not args.candidates.is_file():
        raise InputError(f"{args.candidates}: file not found")
    records = read_candidates(args.candidates)
    from larpo.rewards import load_reranker
    from larpo.run.score import score_records

    write_records_atomic(
        args.output, score_records(load_reranker(args.reward), records, f"{args.candidates}: ")
    )
    prompts = len({r.prompt_id for r in records})
    print(f"scored {len(records)} candidates of {prompts} prompts; wrote {args.output}")


def evaluate(args: Namespace) -> None:
    from larpo.chat import check_template_setting
    from larpo.evaluation.held_out import EvalSettings
    from larpo.evaluation.model_dir import evaluate_model_dir

    check_template_setting(args.chat_template)
    settings = EvalSettings(
        num_samples=args.num_samples,
        temperatures=args.temperature or [1.0],
        ks=args.k or [x for x in (1, 4, 16) if x <= args.num_samples],
        max_new_tokens=args.max_new_tokens,
        correct_threshold=args.threshold,
        best_of=args.best_of,
        seed=args.seed,
    )
    _require_positive(args, "batch_size")
    result = evaluate_model_dir(
        args.model, args.prompts, args.reward, args.output, settings, batch_size=args.batch_size,
        dtype=args.dtype, baseline_model=args.baseline_model, alpaca_eval=args.alpaca_eval,
        chat_template=args.chat_template, baseline=args.baseline, reference=args.reference,
    )  # fmt: skip
    _print_eval_table(result, settings)
    print(f"wrote {args.output / 'eval.json'} and {args.output / 'pass_at_n.png'}")


def _print_eval_table(result: dict, settings) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("metric", "value")
    table.add_row("greedy accuracy", f"{result['greedy_accuracy']:.4f}")
    table.add_row("mean reward (greedy)", f"{result['mean_reward']:.4f}")
    for key, value in result["pass_at_k"].items():
        table.add_row(f"pass@{key} (T={settings.temperatures[0]})", f"{value:.4f}")
    if "best_of_n" in result:
        table.add_row(f"best-of-{settings.best_of} accuracy", f"{result['best_of_n']['accuracy']:.4f}")
    if "win_rate" in result:
        table.add_row("win rate vs baseline", f"{result['win_rate']:.4f}")
    for key, label in (("ndcg", "NDCG (implicit reward vs reranker)"), ("kendall_tau", "Kendall tau")):
        if result.get(key) is not None:
            table.add_row(label, f"{result[key]:.4f}")
    for key, value in result.get("instruction_following", {}).items():  # IFEval's four accuracies
        table.add_row(f"IFEval {key.replace('_', ' ')} (greedy)", f"{value:.4f}")
    if "baseline" in result:
        baseline = result["baseline"]
        table.add_row(f"greedy accuracy of {baseline['model']}", f"{baseline['greedy_accuracy']:.4f}")
    Console().print(table)


def report(args: Namespace) -> None:
    from larpo.evaluation.report import write_report

    print(f"wrote {write_report(args.run_dir)}")


COMMANDS = {"demo": demo, "objectives": objectives, "tiny-model": tiny_model, "import-gguf": import_gguf,
            "train": train, "run": run, "generate": generate, "score": score, "eval": evaluate,
            "report": report}  # fmt: skip
"""Each command of :func:`larpo.cli_parser.build_parser` -> the function that carries it out."""


def _require_positive(args: Namespace, name: str) -> None:
    value = getattr(args, name)
    if value < 1:
        raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def main(argv: list[str] | None = None) -> None:
    """Run ``larpo ARGV`` (default: ``sys.argv[1:]``) and exit. Every error the user can fix prints one
    line ``larpo: error: ...`` on stderr and exits with code 2: a bad command line (unknown command or
    option, missing or malformed value), bad input (InputError) and an operating-system error (disk full,
    read-only or missing directory)."""
    _disable_download_progress_bars()
    logger = logging.getLogger("larpo")  # warnings print as one `larpo: warning: ...` line
    if not any(isinstance(h, StderrHandler) for h in logger.handlers):
        logger.addHandler(StderrHandler())
    try:
        args = parse(sys.argv[1:] if argv is None else [str(a) for a in argv])
        COMMANDS[args.command](args)
    except UsageError as error:
        _fail(str(error))
    except Exception as error:
        message = user_message(error)
        if message is None:
            raise
        _fail(message)
    if "torch.distributed" in sys.modules:  # under accelerate launch: leave the group and end cleanly
        from larpo.distributed import end_launched_process

        end_launched_process()
    sys.exit(0)


def _disable_download_progress_bars() -> None:
    """No download/loading progress bars from huggingface_hub and transformers (larpo prints its own),
    without importing transformers: the environment variable covers a later import."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def _fail(message: str) -> None:
    print(f"larpo: error: {one_line(message)}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
