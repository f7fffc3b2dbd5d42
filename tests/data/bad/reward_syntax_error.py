def score(prompt, responses)
    return [0.0] * len(responses)
