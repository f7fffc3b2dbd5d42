"""A reward module whose import fails (a missing credential, say)."""

raise RuntimeError("REWARD_API_KEY is not set")


def score(prompt, responses):
    return [0.0] * len(responses)
