"""Rule-based rewards used by the loop tests (imported as `tests.rewards_for_tests:NAME`)."""


def target(prompt: str) -> str:
    left, right = prompt.rstrip("=").split("+")
    return str(int(left) + int(right))


def digit_overlap(prompt: str, responses: list[str]) -> list[float]:
    """Graded: right digits in the right places, minus a length penalty; varies even for random text."""
    answer = target(prompt)
    return [
        sum(a == b for a, b in zip(answer, response, strict=False)) - 0.25 * abs(len(response) - len(answer))
        for response in responses
    ]


def wrong_count(prompt: str, responses: list[str]) -> list[float]:
    return [0.0] * (len(responses) + 1)


def not_finite(prompt: str, responses: list[str]) -> list[float]:
    return [float("nan")] * len(responses)


def chat_length(prompt: list[dict[str, str]], responses: list[str]) -> list[float]:
    """For message-list prompts, which a run must pass as the prompts file holds them (a string, e.g. the
    rendered prompt, raises); graded by response length, so random text gets varied scores."""
    if not isinstance(prompt, list) or prompt[-1]["role"] != "user":
        raise TypeError(f"expected the prompt as its message list, got {prompt!r}")
    return [float(len(response) % 7) for response in responses]


def weighted_overlap(prompt: str, responses: list[str], weight: float, offset: float = 0.0) -> list[float]:
    """``digit_overlap`` times the prompt row's ``weight`` field, plus its ``offset`` (0 without one):
    shows which prompt's fields reached which call."""
    return [weight * score + offset for score in digit_overlap(prompt, responses)]


def field_count(prompt, responses: list[str], **fields) -> list[float]:
    """Takes every field (TRL's convention): the number of fields, plus the ``weight`` field if any."""
    return [len(fields) + fields.get("weight", 0.0) for _ in responses]


def all_wrong(prompt: str, responses: list[str]) -> list[float]:
    """A verifier that never accepts a reply: every list all tied at 0.0."""
    return [0.0] * len(responses)


def odd_only(prompt: str, responses: list[str]) -> list[float]:
    """``digit_overlap`` for a prompt whose first operand is odd; every reply 0.0 (all tied) otherwise."""
    if int(prompt.split("+")[0]) % 2 == 0:
        return [0.0] * len(responses)
    return digit_overlap(prompt, responses)
