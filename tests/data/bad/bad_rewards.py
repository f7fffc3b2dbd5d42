"""Reward functions that misbehave, one way each (used as `bad_rewards:NAME` with this folder on PYTHONPATH)."""

import math


def returns_nan(prompt, responses):
    return [math.nan for _ in responses]


def returns_inf(prompt, responses):
    return [-math.inf for _ in responses]


def returns_strings(prompt, responses):
    return ["1.0" for _ in responses]


def returns_bools(prompt, responses):
    return [response.isdigit() for response in responses]


def returns_one_extra(prompt, responses):
    return [0.0] * (len(responses) + 1)


def returns_none(prompt, responses):
    return None


def returns_a_number(prompt, responses):
    return 1.0


def raises_on_some(prompt, responses):
    if prompt.startswith("13+"):
        raise KeyError(f"no reference answer for {prompt}")
    return [float(len(r)) for r in responses]


def takes_one_argument(prompt):
    return [0.0]


not_a_function = 3


def needs_answer(prompt, responses, answer):
    """Declares a field the good prompts file does not have."""
    return [float(response == str(answer)) for response in responses]


def takes_every_field(prompt, responses, **fields):
    """Takes every field of a prompt's row, so a field named `responses` would clash with its own argument."""
    return [float(len(fields)) for _ in responses]
