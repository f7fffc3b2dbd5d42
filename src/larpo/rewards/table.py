"""A fixed score table, for tests and toy runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from larpo.rewards.base import Reranker, RewardError


class TableReranker(Reranker):
    """Scores ``table[prompt][response]``.

    A missing entry scores ``default`` (a number, or ``default(prompt, response)`` when callable);
    without a default it is a :class:`RewardError`.
    """

    def __init__(
        self,
        table: Mapping[str, Mapping[str, float]],
        default: float | Callable[[str, str], float] | None = None,
    ) -> None:
        self.table = table
        self.default = default

    def _lookup(self, prompt: str, response: str) -> float:
        entry = self.table.get(prompt, {})
        if response in entry:
            return entry[response]
        if self.default is None:
            raise RewardError(f"no score for prompt {prompt[:60]!r}, response {response[:60]!r}")
        return self.default(prompt, response) if callable(self.default) else self.default

    def _score(self, prompts: list[str], responses: list[list[str]]) -> list[list[float]]:
        return [
            [self._lookup(p, r) for r in candidates] for p, candidates in zip(prompts, responses, strict=True)
        ]
