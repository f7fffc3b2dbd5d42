"""Turning a GGUF checkpoint (llama.cpp's format) into an ordinary Hugging Face model directory.

transformers reads GGUF files itself (dequantized to float32) but refuses to ``save_pretrained`` such a
model; :func:`import_gguf` copies its weights into a plain model of the same config and saves that, with
the tokenizer, a generation config whose EOS ids include the chat template's end-of-turn token, and a
model card (:mod:`larpo.gguf_card`) carrying the file's Hub id and license.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from larpo.errors import InputError, first_line

logger = logging.getLogger(__name__)


def import_gguf(gguf_file: str | Path, out_dir: str | Path) -> Path:
    """Convert ``gguf_file`` into a Hugging Face model directory ``out_dir`` and return ``out_dir``.

    The directory gets ``config.json``, the float32 weights, the tokenizer (with its chat template) and
    ``generation_config.json`` whose ``eos_token_id`` lists the tokenizer's EOS and the template's
    end-of-turn token (:func:`larpo.chat.stop_token_ids`), and a README.md model card
    (:func:`larpo.gguf_card.write_import_card`).

    Raises:
        InputError: a path is empty, the ``gguf`` package is missing, the file does not exist or is not a
            GGUF file, its architecture is one transformers cannot read, or ``out_dir`` already holds a model.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from larpo.gguf_card import write_import_card

    gguf_file, out_dir = _given(gguf_file, "GGUF file"), _given(out_dir, "output directory")
    if importlib.util.find_spec("gguf") is None:
        raise InputError("reading GGUF files needs the `gguf` package; install it with `pip install gguf`")
    if gguf_file.is_dir():
        raise InputError(f"{gguf_file}: is a directory, not a GGUF file")
    if not gguf_file.is_file():
        raise InputError(f"{gguf_file}: file not found")
    if (out_dir / "config.json").exists():
        raise InputError(f"{out_dir}: already holds a model (config.json); choose an empty directory")
    location = {"pretrained_model_name_or_path": str(gguf_file.parent), "gguf_file": gguf_file.name}
    try:
        tokenizer = AutoTokenizer.from_pretrained(**location)
        loaded = AutoModelForCausalLM.from_pretrained(**location)
    except (ValueError, KeyError, OSError, RuntimeError) as error:
        raise InputError(f"{gguf_file}: cannot import this GGUF file ({first_line(error)})") from None
    plain = _plain_copy(loaded)
    plain.generation_config.eos_token_id = _generation_eos(plain, tokenizer)
    if tokenizer.pad_token_id is not None:
        plain.generation_config.pad_token_id = tokenizer.pad_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    write_import_card(gguf_file, out_dir, type(plain).__name__)
    logger.info("imported %s (%s) into %s", gguf_file, type(plain).__name__, out_dir)
    return out_dir


def _given(path: str | Path, what: str) -> Path:
    """``path`` as a Path; an empty one (as a shell's ``"$(...)"`` gives when its command printed nothing)
    is an error naming what was missing, not the current directory ``Path("")`` would be."""
    if not str(path).strip():
        raise InputError(f"import-gguf: no {what} given (the path is empty)")
    return Path(path)


def _plain_copy(loaded):
    """A model of ``loaded``'s class and config, not marked as GGUF-quantized, holding its weights."""
    config = loaded.config
    for attribute in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attribute):
            delattr(config, attribute)
    plain = type(loaded)(config)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    tied = set(getattr(plain, "_tied_weights_keys", None) or ())
    missing = [name for name in missing if name not in tied and not name.endswith("lm_head.weight")]
    if missing or unexpected:
        raise InputError(
            f"GGUF weights do not match {type(plain).__name__}: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    plain.tie_weights()
    plain.generation_config = loaded.generation_config
    return plain.eval()


def _generation_eos(model, tokenizer) -> list[int] | int | None:
    from larpo.chat import stop_token_ids

    ids = stop_token_ids(model, tokenizer)
    if not ids:
        return None
    return ids[0] if len(ids) == 1 else ids
