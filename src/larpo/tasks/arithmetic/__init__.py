"""The built-in arithmetic demo task: problems, rewards, a tiny policy and its SFT warm-up.

Prompts look like ``37+85=`` and the completion is the decimal answer followed by EOS. Rewards are
named in configs as ``larpo.tasks.arithmetic:exact_match`` or ``larpo.tasks.arithmetic:graded_reward``.

Measured recipe (2-core CPU, fp32): 12,000 ``mixed`` training prompts, ``sft`` with batch 64, learning
rate 4e-4, ``target_accuracy`` 0.5 on 200 held-out prompts checked every 25 steps: it stops after
1,000-1,250 steps (45-55 s) at 48-58% held-out greedy accuracy, with pass@8 around 0.7.
"""

from larpo.tasks.arithmetic.model import ALPHABET, build_model, build_tokenizer
from larpo.tasks.arithmetic.problems import (
    DEFAULT_KIND,
    KINDS,
    answer,
    demonstrations,
    flawed_answer,
    make_problems,
    train_and_heldout_splits,
    validation_split,
)
from larpo.tasks.arithmetic.rewards import exact_match, graded_reward
from larpo.tasks.arithmetic.supervised import SFTRecord, answer_budget, greedy_accuracy, sft

__all__ = [
    "ALPHABET",
    "DEFAULT_KIND",
    "KINDS",
    "SFTRecord",
    "answer",
    "answer_budget",
    "build_model",
    "build_tokenizer",
    "demonstrations",
    "exact_match",
    "flawed_answer",
    "graded_reward",
    "greedy_accuracy",
    "make_problems",
    "sft",
    "train_and_heldout_splits",
    "validation_split",
]
