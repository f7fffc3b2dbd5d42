"""The ``larpo`` command line: its commands, options, defaults and help (on the standard library's argparse,
so that ``larpo --help`` or a config check answers in a fraction of a second).

:func:`parse` turns the words after ``larpo`` into a namespace whose ``command`` names the command; a command
line it cannot parse raises :class:`UsageError`, which :func:`larpo.cli.main` prints as one
``larpo: error: ...`` line with exit code 2. The commands themselves are in :mod:`larpo.cli`.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from larpo import __version__

DESCRIPTION = "LarPO: align an LLM as a retriever, with listwise ranking objectives over its own samples."
METAVARS = {Path: "PATH", str: "TEXT", int: "INT", float: "FLOAT"}
REWARD_HELP = "'module:function', 'file.py:function' or a reward model directory"
CHAT_TEMPLATE_HELP = (
    "prompts as the model sees them: auto (the tokenizer's template, if any), none, or a Jinja file"
)
DTYPE_HELP = "auto (fp32 on CPU, bf16 on GPU), float32, bfloat16"
RUN_EXAMPLES = "examples/configs (the demo's task) and examples/chat (a real chat model)"


class UsageError(Exception):
    """A command line that does not parse: an unknown command or option, a missing or malformed value."""


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help, with each option's default (when it has one) after its help text."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)
        self._action_max_length = 20  # a help column wide enough for the command names

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if not action.option_strings or default is None or default is False or default is argparse.SUPPRESS:
            return action.help
        if "default:" in (action.help or ""):  # BooleanOptionalAction adds its own on some Pythons
            return action.help
        shown = repr(default) if isinstance(default, str) else str(default)
        return f"{action.help} (default: {shown.replace('%', '%%')})"


class _KeepLinesFormatter(_HelpFormatter):
    """:class:`_HelpFormatter` that keeps the description's and epilog's own line breaks (a listing)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "".join(indent + line for line in text.splitlines(keepends=True))


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises :class:`UsageError` instead of printing its usage and exiting, and
    takes no abbreviated options (``--out`` is not ``--output``). ``help_epilog``, when set, makes the text
    after the options when the help is asked for (so what it imports loads for ``--help`` alone)."""

    def __init__(self, help_epilog: Callable[[], str] | None = None, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(allow_abbrev=False, **kwargs)
        self.flags = ["-h", "--help"]
        self.commands: dict[str, Parser] = {}
        self.help_epilog = help_epilog

    def format_help(self) -> str:
        if self.help_epilog is not None:
            self.epilog = self.help_epilog()
        return super().format_help()

    def error(self, message: str) -> NoReturn:  # argparse's hook for every parse error
        raise UsageError(f"{message} (see `{self.prog} --help`)")

    def option(self, flag: str, kind: type = str, help: str = "", **options) -> None:
        """Add ``--flag`` taking one value of ``kind`` (repeatable with ``action="append"``)."""
        options.setdefault("metavar", METAVARS[kind])
        self.add_argument(flag, type=kind, help=help, **options)
        self.flags.append(flag)

    def switch(self, flag: str, help: str) -> None:
        """Add ``--flag`` / ``--no-flag``, off by default."""
        self.add_argument(flag, action=argparse.BooleanOptionalAction, default=False, help=help)
        self.flags += [flag, f"--no-{flag[2:]}"]


def build_parser() -> Parser:
    """The ``larpo`` parser with every command; ``parser.commands`` maps each name to its subparser."""
    parser = Parser(prog="larpo", description=DESCRIPTION)
    parser.add_argument(
        "--version", action="version", version=f"larpo {__version__}", help="print the version and exit"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for add_command in (_demo, _objectives, _tiny_model, _import_gguf, _train, _run, _generate, _score,
                        _eval, _report):  # fmt: skip
        add_command(sub)
    parser.commands = sub.choices
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """The parsed command line ``larpo ARGV``. No words print the help and exit with code 2."""
    parser = build_parser()
    if not argv:
        parser.print_help()
        raise SystemExit(2)
    word = next((a for a in argv if not a.startswith("-")), None)  # `larpo` itself takes only flags
    if word is not None and word not in parser.commands:
        raise UsageError(f"unknown command {word!r}{_suggestion(word, parser.commands)} (see `larpo --help`)")
    args, extra = parser.parse_known_args(argv)
    command = parser.commands.get(args.command, parser)
    if extra and extra[0].startswith("-"):
        unknown = extra[0].split("=")[0]
        command.error(f"unknown option {unknown}{_suggestion(unknown, command.flags)}")
    if extra:
        command.error(f"unexpected argument {extra[0]!r}")
    if args.command is None:
        parser.error("a command is required")
    return args


def _suggestion(word: str, known) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _command(sub, name: str, summary: str, details: str = "", **kwargs) -> Parser:
    description = f"{summary}\n\n{details}" if details else summary
    return sub.add_parser(name, help=summary, description=description, **kwargs)


def _demo(sub) -> None:
    demo = _command(
        sub,
        "demo",
        "Built-in demo: a tiny model learns arithmetic, then LarPO aligns it (CPU, a few minutes).",
    )
    demo.option(
        "--output", Path, "directory for the SFT model, the run and the report", default=Path("runs/demo")
    )
    demo.option("--objective", help="objective name (see `larpo objectives`; default: contrastive)")
    demo.option("--seed", int, "random seed", default=0)
    demo.option("--iterations", int, "LarPO iterations (default: the demo's)")
    demo.option("--reward", help="exact (default; exact match) or graded (orders wrong answers too)")
    demo.option(
        "--error-rate", float, "share of SFT demonstrations with a carry/borrow bug (default 0.6; 0 = clean)"
    )


def _objectives(sub) -> None:
    _command(sub, "objectives", "List the registered objectives and their options.")


def _tiny_model(sub) -> None:
    tiny = _command(
        sub,
        "tiny-model",
        "Write a small random Llama model with a character tokenizer (for trying larpo offline).",
    )
    tiny.add_argument(
        "output", type=Path, metavar="OUTPUT", help="directory to write the model and tokenizer to"
    )
    tiny.option("--alphabet", help="characters of the tokenizer", default="0123456789+-*= ")
    tiny.option("--hidden-size", int, "width of the model", default=128)
    tiny.option("--layers", int, "transformer layers", default=2)
    tiny.option("--heads", int, "attention heads", default=2)
    tiny.option("--seed", int, "random seed of the weights", default=0)


def _import_gguf(sub) -> None:
    gguf = _command(
        sub,
        "import-gguf",
        "Turn a GGUF checkpoint into an ordinary Hugging Face model directory (float32, with its tokenizer).",
    )
    # strings, not Paths: Path("") is ".", and an empty path (a `"$(...)"` that printed nothing) is an error
    gguf.add_argument("gguf_file", metavar="GGUF_FILE", help="a GGUF checkpoint of a Llama-family model")
    gguf.add_argument(
        "output", metavar="OUTPUT", help="directory to write the Hugging Face model (and its card) to"
    )


def _train(sub) -> None:
    train = _command(
        sub,
        "train",
        "Train a policy on fixed ranked candidate lists with a ranking objective.",
        "Runs as one process, or as several under `accelerate launch -m larpo.cli train ...`.",
    )
    train.option("--model", Path, "local Hugging Face model directory (the policy)", required=True)
    train.option(
        "--data",
        Path,
        "JSONL (or datasets folder) of ranked lists, preference pairs, rated completions or scored candidates (larpo score); see --format",
        required=True,
    )
    train.option("--output", Path, "directory for the trained model and its logs", required=True)
    train.option("--config", Path, "YAML of ListwiseConfig fields, plus an optional peft section (LoRA)")
    train.option("--objective", help="objective name (see `larpo objectives`)")
    train.option("--beta", float, "strength of the implicit reward (default: the config's)")
    train.option("--learning-rate", float, "optimizer learning rate (default: the config's)")
    train.option("--epochs", float, "passes over the lists")
    train.option("--batch-size", int, "lists per device per step")
    train.option("--nll-weight", float, "weight of the NLL of the best candidate (default: the config's)")
    train.option("--max-length", int, "longest prompt + response in tokens (default: the config's)")
    train.option("--seed", int, "random seed (default: the config's)")
    train.option("--dtype", help=DTYPE_HELP, default="auto")
    train.option(
        "--format",
        help="format of --data: lists, ranked, pairs, rated or candidates (default: from its columns)",
    )
    train.option("--rating", help="rated format: the completion field to rank by", default="rating")
    train.option(
        "--report-to",
        help="trackers, as TrainingArguments.report_to: tensorboard, wandb, ... (comma-separated)",
    )
    train.option("--run-name", help="the run's name in the trackers")
    train.switch("--overwrite", "write into an output directory that holds a model")
    train.option("--chat-template", help=CHAT_TEMPLATE_HELP, default="auto")


def _run(sub) -> None:
    run = _command(
        sub,
        "run",
        "Run (or resume) iterative LarPO: sample, rerank, merge lists, train, repeat.",
        "Runs as one process, or as several under `accelerate launch -m larpo.cli run ...` (DDP).",
        formatter_class=_KeepLinesFormatter,
        help_epilog=config_keys_help,
    )
    run.option("--config", Path, f"YAML run config with the keys listed below; examples in {RUN_EXAMPLES}")
    run.option(
        "--set",
        help="override a config key: --set learning_rate=1e-6 (repeatable)",
        action="append",
        metavar="KEY=VALUE",
    )
    run.option("--output-dir", help="run directory (overrides the config)")


def config_keys_help() -> str:
    """The keys of a ``larpo run`` config, each with its one-line help and default, from the field metadata
    of :class:`larpo.run.config.RunConfig`, wrapped to the terminal's width as argparse wraps its help."""
    import dataclasses
    import json
    import shutil
    import textwrap

    from larpo.run.config import RunConfig

    fields = dataclasses.fields(RunConfig)
    column = max(len(f.name) for f in fields) + 4
    width = max(shutil.get_terminal_size().columns - 2, column + 40)
    lines = textwrap.wrap(
        f"config keys (of the --config YAML, or --set KEY=VALUE; examples in {RUN_EXAMPLES}):", width
    )
    for f in fields:
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        value = default if isinstance(default, str) else json.dumps(default)  # as YAML writes it: null, true
        shown = "required" if default == "" else f"default: {value}"
        lines += textwrap.wrap(f"{f.metadata['help']} ({shown})", width, initial_indent=f"  {f.name:<{column - 2}}",
                               subsequent_indent=" " * column, break_on_hyphens=False)  # fmt: skip
    return "\n".join(lines)


def _sampling_run_options(command, batch_size: int) -> None:
    """The options every command that loads a policy and samples from it takes, in their help order."""
    command.option("--batch-size", int, "prompts per generation batch", default=batch_size)
    command.option("--seed", int, "random seed", default=0)
    command.option("--dtype", help=DTYPE_HELP, default="auto")
    command.option("--chat-template", help=CHAT_TEMPLATE_HELP, default="auto")


def _generate(sub) -> None:
    generate = _command(
        sub, "generate", "Sample candidates for prompts (one stage of `larpo run`, for your own pipelines)."
    )
    generate.option("--model", Path, "local Hugging Face model directory", required=True)
    generate.option("--prompts", Path, "JSONL with a 'prompt' field (and optional 'id')", required=True)
    generate.option("--output", Path, "candidate JSONL to write (one record per response)", required=True)
    generate.option("--num-candidates", int, "samples per prompt", default=8)
    generate.option("--temperature", float, "sampling temperature", default=1.0)
    generate.option("--top-p", float, "nucleus sampling threshold", default=1.0)
    generate.option("--max-new-tokens", int, "longest response in tokens", default=64)
    _sampling_run_options(generate, batch_size=32)


def _score(sub) -> None:
    score = _command(sub, "score", "Score candidates with a reranker (one stage of `larpo run`).")
    score.option("--reward", help=REWARD_HELP, required=True)
    score.option("--candidates", Path, "candidate JSONL (from larpo generate)", required=True)
    score.option("--output", Path, "scored candidate JSONL to write", required=True)


def _eval(sub) -> None:
    evaluate = _command(
        sub,
        "eval",
        "Evaluate a policy as a retriever: greedy accuracy, pass@k curves, reward, best-of-N, win rate.",
    )
    evaluate.option("--model", Path, "local Hugging Face model directory to evaluate", required=True)
    evaluate.option("--prompts", Path, "held-out prompts: JSONL with a 'prompt' field", required=True)
    evaluate.option("--reward", help=REWARD_HELP, required=True)
    evaluate.option("--output", Path, "directory for eval.json and the plots", default=Path("larpo_eval"))
    evaluate.option("--num-samples", int, "samples per prompt for pass@k", default=16)
    evaluate.option(
        "--temperature", float, "sampling temperature (repeatable; default: 1.0)", action="append"
    )
    evaluate.option(
        "--k", int, "k of pass@k (repeatable; default: 1, 4, 16 up to --num-samples)", action="append"
    )
    evaluate.option(
        "--max-new-tokens",
        int,
        "longest response in tokens (default: 64, or less to fit the model's context)",
    )
    evaluate.option("--threshold", float, "a response is correct when its reward is >= this", default=1.0)
    evaluate.option("--best-of", int, "also evaluate best-of-N reranking with this N")
    evaluate.option("--baseline-model", Path, "model whose greedy outputs the win rate is against")
    evaluate.option("--alpaca-eval", Path, "also write AlpacaEval model_outputs.json here")
    evaluate.option("--baseline", Path, "another `larpo eval` output or a model directory to compare with")
    evaluate.option(
        "--reference", Path, "reference model of the implicit reward (default: the run's initial model)"
    )
    _sampling_run_options(evaluate, batch_size=64)


def _report(sub) -> None:
    report = _command(sub, "report", "Gather every iteration of a run into report.md with plots.")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a larpo run directory")
