"""``import_gguf`` on a tiny Llama GGUF file written here with the ``gguf`` package (byte-level BPE, ChatML)."""

import importlib.util
import json

import numpy as np
import pytest
import torch

from larpo.chat import ChatFormat
from larpo.errors import InputError
from larpo.gguf_import import import_gguf
from larpo.model_io import load_policy

gguf = pytest.importorskip("gguf")

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
HIDDEN, FFN, HEADS = 16, 32, 2


def byte_level_vocab() -> list[str]:
    """The specials, then GPT-2's byte-level symbols of printable ASCII, space (Ġ) and newline (Ċ), and one merge."""
    return [*SPECIALS, *[chr(c) for c in range(33, 127)], "Ġ", "Ċ", "he"]


def write_tiny_gguf(path, architecture="llama", seed=0, general=None):
    """A one-layer Llama GGUF file; ``general``: extra ``general.*`` string keys (license, organization...)."""
    tokens = byte_level_vocab()
    writer = gguf.GGUFWriter(str(path), architecture)
    for key, value in (general or {}).items():
        writer.add_array(key, value) if isinstance(value, list) else writer.add_string(key, value)
    writer.add_block_count(1)
    writer.add_context_length(64)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS)))
    writer.add_token_merges(["h e"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(0)  # EOS is <|endoftext|>; the template ends a turn with <|im_end|>
    writer.add_pad_token_id(0)
    writer.add_chat_template(TEMPLATE)
    rng = np.random.default_rng(seed)
    shapes = {
        "token_embd.weight": (len(tokens), HIDDEN),
        "output_norm.weight": (HIDDEN,),
        "blk.0.attn_norm.weight": (HIDDEN,),
        "blk.0.ffn_norm.weight": (HIDDEN,),
        "blk.0.attn_q.weight": (HIDDEN, HIDDEN),
        "blk.0.attn_k.weight": (HIDDEN, HIDDEN),
        "blk.0.attn_v.weight": (HIDDEN, HIDDEN),
        "blk.0.attn_output.weight": (HIDDEN, HIDDEN),
        "blk.0.ffn_gate.weight": (FFN, HIDDEN),
        "blk.0.ffn_up.weight": (FFN, HIDDEN),
        "blk.0.ffn_down.weight": (HIDDEN, FFN),
    }
    for name, shape in shapes.items():
        writer.add_tensor(name, rng.normal(0.0, 0.5, shape).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_import_gives_a_plain_model_directory_with_the_same_logits(tmp_path):
    from transformers import AutoModelForCausalLM

    source = write_tiny_gguf(tmp_path / "tiny.gguf")
    out = import_gguf(source, tmp_path / "model")
    assert (out / "config.json").is_file()
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    model, tokenizer = load_policy(out)
    direct = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file="tiny.gguf")
    ids = torch.tensor([tokenizer("hello world!", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, direct(input_ids=ids).logits)
    assert model.generation_config.eos_token_id == [0, 2]  # EOS and the template's end of turn
    assert ChatFormat(tokenizer).render("hi") == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.decode(ids[0]) == "hello world!"
    with pytest.raises(InputError, match="already holds a model"):
        import_gguf(source, out)


def test_import_errors(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="missing.gguf: file not found"):
        import_gguf(tmp_path / "missing.gguf", tmp_path / "out")
    unsupported = write_tiny_gguf(tmp_path / "odd.gguf", architecture="notamodel")
    with pytest.raises(InputError, match="odd.gguf: cannot import this GGUF file"):
        import_gguf(unsupported, tmp_path / "out")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "gguf" else real_find_spec(name)
    )
    with pytest.raises(InputError, match="needs the `gguf` package"):
        import_gguf(unsupported, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_command(tmp_path, monkeypatch, capsys):
    from tests.test_cli import run_cli

    source = write_tiny_gguf(tmp_path / "tiny.gguf")
    code, out, _ = run_cli(monkeypatch, capsys, "import-gguf", source, tmp_path / "model")
    assert (code, out.strip()) == (0, f"wrote {tmp_path / 'model'}")
    for given, message in [
        (tmp_path / "nothing.gguf", f"{tmp_path / 'nothing.gguf'}: file not found"),
        ("", "import-gguf: no GGUF file given (the path is empty)"),  # a "$(...)" that printed nothing
        ("  ", "import-gguf: no GGUF file given (the path is empty)"),
        (tmp_path, f"{tmp_path}: is a directory, not a GGUF file"),
    ]:
        code, _, err = run_cli(monkeypatch, capsys, "import-gguf", given, tmp_path / "other")
        assert (code, err.strip()) == (2, f"larpo: error: {message}")
    code, _, err = run_cli(monkeypatch, capsys, "import-gguf", source, "")
    assert (code, err.strip()) == (
        2,
        "larpo: error: import-gguf: no output directory given (the path is empty)",
    )
    assert not (tmp_path / "other").exists()


def test_the_imported_directory_has_a_card_with_the_files_hub_id_and_license(tmp_path):
    from huggingface_hub import ModelCard

    general = {"general.license": "apache-2.0", "general.name": "Tiny Chat 1M", "general.organization": "TinyOrg",
               "general.languages": ["en"], "general.dataset.0.repo_url": "https://huggingface.co/datasets/org/chats"}  # fmt: skip
    out = import_gguf(
        write_tiny_gguf(tmp_path / "Tiny-Chat-1M.Q4_K_M.gguf", general=general), tmp_path / "model"
    )
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "TinyOrg/Tiny-Chat-1M"  # the organization and the file name, less .Q4_K_M
    assert card.data.license == "apache-2.0" and card.data.pipeline_tag == "text-generation"
    assert card.data.datasets == ["org/chats"] and card.data.language == ["en"]
    assert "| name | Tiny Chat 1M |" in card.text and "`Tiny-Chat-1M.Q4_K_M.gguf`" in card.text


@pytest.mark.parametrize(
    ("general", "expected"),
    [
        ({"general.source.url": "https://huggingface.co/Org/Real-1B/", "general.organization": "Other"},
         ("Org/Real-1B", "general.source.url")),
        ({"general.repo_url": "https://github.com/org/code", "general.organization": "Org"},
         ("Org/model-7B", "general.organization and the file name")),
        ({"general.organization": "Meta Llama"}, (None, "")),  # not a Hub namespace
        ({}, (None, "")),
    ],
)  # fmt: skip
def test_the_hub_id_of_a_gguf_file(general, expected):
    from larpo.gguf_card import source_hub_id

    assert (
        source_hub_id({key: [value] for key, value in general.items()}, "dir/model-7B-IQ3_XS.gguf")
        == expected
    )
