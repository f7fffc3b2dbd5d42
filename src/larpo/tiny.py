"""Tiny models built locally from a config: for tests, the demo and trying larpo offline.

Nothing is downloaded: the tokenizer is a character-level vocabulary built with the ``tokenizers``
library and the model is a randomly initialised Llama-style causal LM.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"


def char_tokenizer(alphabet: str, directory: str | Path | None = None) -> PreTrainedTokenizerFast:
    """A character-level tokenizer over ``alphabet`` with pad, bos, eos and unk tokens.

    Every character is one token; no BOS or EOS is added automatically (the prompt and the response
    are tokenized separately and larpo appends EOS to responses itself). Saved with
    ``save_pretrained`` when ``directory`` is given.
    """
    chars = sorted(set(alphabet))
    vocab = {token: index for index, token in enumerate([PAD, BOS, EOS, UNK, *chars])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK, padding_side="left"
    )
    if directory is not None:
        tokenizer.save_pretrained(str(directory))
    return tokenizer


def tiny_llama(
    vocab_size: int,
    *,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 2,
    max_positions: int = 128,
    pad_token_id: int = 0,
    bos_token_id: int = 1,
    eos_token_id: int = 2,
    seed: int = 0,
) -> LlamaForCausalLM:
    """A randomly initialised Llama-style causal LM (head_dim = hidden_size / num_heads, 64 by default,
    which vLLM's CPU kernels need). Initialisation is seeded and reproducible on CPU."""
    import torch

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_positions,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)
