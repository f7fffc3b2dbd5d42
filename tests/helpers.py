"""Tiny offline models and candidate lists shared by the tests."""

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
