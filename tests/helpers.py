"""Tiny offline models and candidate lists shared by the tests."""

from pathlib import Path

from larpo.data import tokenize_list
from larpo.tiny import char_tokenizer, tiny_llama

ALPHABET = "0123456789+-*= abcdefghijklmnopqrstuvwxyz"


def tiny_model_and_tokenizer(seed: int = 0, hidden_size: int = 32, num_heads: int = 2):
    tokenizer = char_tokenizer(ALPHABET)
    model = tiny_llama(len(tokenizer), hidden_size=hidden_size, num_heads=num_heads, seed=seed)
    return model, tokenizer


def arithmetic_lists(tokenizer, n_prompts: int = 6, size: int = 4):
    """Prompts `a+b=` with `size` candidates: the right answer and answers off by 1, 2, ...
    scored by closeness, so the list order is the reranker's order."""
    examples = []
    for i in range(n_prompts):
        a, b = 11 + 7 * i, 23 + 3 * i
        answers = [str(a + b + offset) for offset in range(size)]
        scores = [-float(offset) for offset in range(size)]
        examples.append(tokenize_list(tokenizer, f"{a}+{b}=", answers, scores))
    return examples


SMOLLM2_TOKENIZER = Path(__file__).parent / "data" / "smollm2_tokenizer"


def smollm2_tokenizer():
    """The real SmolLM2-135M-Instruct tokenizer (49k BPE, ChatML template, ``<|im_end|>`` = EOS = 2)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(SMOLLM2_TOKENIZER))


def tiny_chat_llama(tokenizer, *, seed: int = 0, hidden_size: int = 32, num_layers: int = 1, scale: float = 0.0):
    """A randomly initialised 1-layer Llama over ``tokenizer``'s vocabulary, whose generation config ends
    a sample at the tokenizer's EOS; ``scale`` > 0 redraws the matrices with that std (a sharper model)."""
    import torch

    model = tiny_llama(
        len(tokenizer),
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=2,
        max_positions=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        seed=seed,
    )
    if scale:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            for parameter in model.parameters():
                if parameter.dim() > 1:
                    parameter.normal_(0.0, scale)
    return model.eval()
