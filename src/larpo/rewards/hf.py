"""A local Hugging Face sequence-classification reward model (one logit per text)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from larpo.rewards.base import Reranker, RewardError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def _load(model_dir: Path) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not (model_dir / "config.json").is_file():
        raise RewardError(f"{model_dir} is not a Hugging Face model directory (no config.json)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise RewardError(
            f"cannot load reward model from {model_dir}: {type(err).__name__}: {first}"
        ) from err
    if model.config.num_labels != 1:
        raise RewardError(f"{model_dir}: a reward model needs num_labels=1, got {model.config.num_labels}")
    return tokenizer, model


class HFRewardModel(Reranker):
    """Scores the text ``prompt + response`` (plain concatenation) by the model's single logit.

    Texts are scored in batches of ``batch_size`` under ``torch.no_grad()``, right-padded with the
    tokenizer's pad token (its eos token when it has none; ``model.config.pad_token_id`` follows),
    and truncated to ``max_length`` tokens when that is given.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        *,
        batch_size: int = 16,
        device: str | torch.device | None = None,
        max_length: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise RewardError(f"batch_size must be >= 1, got {batch_size}")
        self.model_dir = Path(model_dir)
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer, self.model = _load(self.model_dir)
        if self.tokenizer.pad_token is None:
            if self.tokenizer.eos_token is None:
                raise RewardError(f"{self.model_dir}: the tokenizer has neither a pad nor an eos token")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # Right padding keeps the real tokens' positions as in an unpadded pass.
        self.tokenizer.padding_side = "right"
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.to(self.device).eval()

    @torch.no_grad()
    def score_texts(self, texts: list[str]) -> list[float]:
        """The reward logit of each full text."""
        scores: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                texts[start : start + self.batch_size],
                padding=True,
                truncation=self.max_length is not None,
                max_length=self.max_length,
                return_tensors="pt",
            )
            logits = self.model(
                input_ids=batch["input_ids"].to(self.device),
                attention_mask=batch["attention_mask"].to(self.device),
            ).logits
            scores.extend(logits[:, 0].float().cpu().tolist())
        return scores

    def _score(self, prompts: list[str], responses: list[list[str]]) -> list[list[float]]:
        flat = self.score_texts([p + r for p, cands in zip(prompts, responses, strict=True) for r in cands])
        out, start = [], 0
        for cands in responses:
            out.append(flat[start : start + len(cands)])
            start += len(cands)
        return out
