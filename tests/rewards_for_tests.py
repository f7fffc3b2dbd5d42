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
