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


def write_tiny_gguf(path, architecture="llama", seed=0):
    tokens = byte_level_vocab()
    writer = gguf.GGUFWriter(str(path), architecture)
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
    code, _, err = run_cli(monkeypatch, capsys, "import-gguf", tmp_path / "nothing.gguf", tmp_path / "other")
    assert code == 2 and err.strip() == f"larpo: error: {tmp_path / 'nothing.gguf'}: file not found"
