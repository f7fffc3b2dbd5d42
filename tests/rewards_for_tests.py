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
