"""The `larpo` command line itself: options and defaults, one-line usage errors, the help, and
`larpo objectives` (all answered without loading a model)."""

import re

import pytest

from larpo.cli import COMMANDS
from larpo.cli_parser import UsageError, build_parser, parse
from tests.helpers import run_cli


def test_every_command_has_a_handler():
    assert list(build_parser().commands) == list(COMMANDS)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["generate", "--model", "m", "--prompts", "p.jsonl", "--output", "o.jsonl"],
         {"num_candidates": 8, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 64, "batch_size": 32,
          "seed": 0, "dtype": "auto", "chat_template": "auto"}),
        (["eval", "--model", "m", "--prompts", "p.jsonl", "--reward", "r.py:f"],
         {"output": "larpo_eval", "num_samples": 16, "temperature": None, "k": None, "threshold": 1.0,
          "batch_size": 64, "best_of": None}),
        (["eval", "--model", "m", "--prompts", "p", "--reward", "r", "--k", "1", "--k=4", "--temperature",
          "0.5", "--temperature", "-0.25"],
         {"k": [1, 4], "temperature": [0.5, -0.25]}),
        (["train", "--model", "m", "--data", "d", "--output", "o"],
         {"overwrite": False, "rating": "rating", "dtype": "auto", "beta": None, "epochs": None}),
        (["train", "--model", "m", "--data", "d", "--output", "o", "--overwrite", "--beta", "-1",
          "--epochs", "0.5"],
         {"overwrite": True, "beta": -1.0, "epochs": 0.5}),
        (["run", "--set", "a=1", "--set", "b=x=y", "--output-dir", "runs/x"],
         {"set": ["a=1", "b=x=y"], "output_dir": "runs/x", "config": None}),
        (["tiny-model", "out"],
         {"output": "out", "alphabet": "0123456789+-*= ", "hidden_size": 128, "layers": 2, "heads": 2}),
        (["import-gguf", "m.gguf", "out"], {"gguf_file": "m.gguf", "output": "out"}),
        (["demo"], {"output": "runs/demo", "objective": None, "seed": 0, "iterations": None,
                    "error_rate": None}),
    ],
)  # fmt: skip
def test_options_and_their_defaults(args, expected):
    parsed = vars(parse(args))
    assert parsed["command"] == args[0]
    got = {key: str(parsed[key]) if key in ("output", "gguf_file") else parsed[key] for key in expected}
    assert got == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["trian"], "unknown command 'trian'; did you mean 'train'? (see `larpo --help`)"),
        (["--bogus"], "unknown option --bogus (see `larpo --help`)"),
        (["run", "--bogus=1"], "unknown option --bogus (see `larpo run --help`)"),
        (["tiny-model", "out", "--hidden", "8"],  # no abbreviations
         "unknown option --hidden; did you mean '--hidden-size'? (see `larpo tiny-model --help`)"),
        (["report", "a", "b"], "unexpected argument 'b' (see `larpo report --help`)"),
        (["objectives", "extra"], "unexpected argument 'extra' (see `larpo objectives --help`)"),
        (["score", "--reward", "r"],
         "the following arguments are required: --candidates, --output (see `larpo score --help`)"),
        (["generate", "--model", "m", "--prompts", "p", "--output", "o", "--num-candidates", "many"],
         "argument --num-candidates: invalid int value: 'many' (see `larpo generate --help`)"),
        (["train", "--model", "m", "--data", "d", "--output", "o", "--overwrite=yes"],
         "argument --overwrite/--no-overwrite: ignored explicit argument 'yes' (see `larpo train --help`)"),
        (["--version", "--help"], None),  # not an error: the first one answers
    ],
)  # fmt: skip
def test_a_bad_command_line_is_one_error_line_with_exit_2(monkeypatch, capsys, args, message):
    code, out, err = run_cli(monkeypatch, capsys, *args)
    if message is None:
        assert (code, out, err) == (0, "larpo 0.1.0\n", "")
        return
    assert (code, out, err) == (2, "", f"larpo: error: {message}\n")


def test_usage_errors_are_raised_not_printed():
    with pytest.raises(UsageError, match="unknown option --out; did you mean '--output'"):
        parse(["score", "--reward", "r", "--candidates", "c", "--output", "o", "--out", "x"])


def test_no_arguments_print_the_help_and_exit_2(monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys)
    assert code == 2 and err == ""
    assert out.startswith("usage: larpo [-h] [--version] COMMAND ...")
    listed = re.findall(r"^    (\S+)", out.split("commands:")[1], flags=re.M)  # names, not wrapped help
    assert listed == list(COMMANDS)


def test_help_of_a_command_shows_defaults(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "generate", "--help")
    assert code == 0 and out.startswith(
        "usage: larpo generate [-h] --model PATH --prompts PATH --output PATH"
    )
    assert " ".join(out.split()).count("(default: 8)") == 1  # --num-candidates only
    assert "--chat-template TEXT" in out and "(default: 'auto')" in out


def test_run_help_lists_the_config_keys_with_their_help_and_defaults(monkeypatch, capsys):
    import dataclasses

    from larpo.run.config import RunConfig

    monkeypatch.setenv("COLUMNS", "400")  # one line per key
    code, out, _ = run_cli(monkeypatch, capsys, "run", "--help")
    assert code == 0 and "examples/configs" in out and "examples/chat" in out
    keys = out.split("config keys")[1]
    for field in dataclasses.fields(RunConfig):
        assert re.search(rf"^  {field.name} +{re.escape(field.metadata['help'])} \(", keys, flags=re.M), (
            field.name
        )
    assert re.search(r"^  prompts_per_iteration +prompts sampled .* \(default: null\)$", keys, flags=re.M)
    assert re.search(r"^  num_candidates +.*\(default: 8\)$", keys, flags=re.M)
    assert re.search(r"^  eval_ks +.*\(default: \[1, 4, 16\]\)$", keys, flags=re.M)
    assert re.search(r"^  model +.*\(required\)$", keys, flags=re.M)


def test_objectives_prints_each_objectives_kind_reference_and_options(monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "objectives")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["name", "kind", "reference", "options", "summary"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert list(rows) == ["pairwise", "contrastive", "lambdarank", "listmle", "simpo", "ipo", "rft"]
    start = lines[0].index("options")
    options = {name: line[start : lines[0].index("summary")].strip() for name, line in rows.items()}
    assert options["lambdarank"] == "length_normalize, nll_weight, nll_min_score, lambda_weights"
    assert options["simpo"] == "gamma, nll_weight, nll_min_score"
    assert rows["simpo"].split()[1:3] == ["baseline", "no"] and rows["rft"].split()[1:3] == ["control", "no"]
    assert rows["listmle"].split()[1:3] == ["ranking", "yes"]
    assert rows["contrastive"].endswith("InfoNCE: best vs all others")
