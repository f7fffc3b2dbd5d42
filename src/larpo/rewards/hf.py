"""A local Hugging Face sequence-classification reward model (one logit per text)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from larpo.chat import ChatFormat, PromptInput
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
    """Scores each ``(prompt, response)`` conversation by the model's single logit.

    With a chat template (``chat_template="auto"`` and a tokenizer that has one) the conversation is
    rendered in the reward model's own template: the prompt as a user message (a message-list prompt
    contributes its messages), then the response as the assistant message; the rendered text carries its
    special tokens, so none are added when tokenizing it. Otherwise (no template, or
    ``chat_template="none"``) the text is the plain concatenation ``prompt + response``, tokenized with
    the tokenizer's default special tokens. Prompts should be the user's prompts, not text already
    rendered in the policy's template.

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
        chat_template: str = "auto",
    ) -> None:
        if batch_size < 1:
            raise RewardError(f"batch_size must be >= 1, got {batch_size}")
        if chat_template not in ("auto", "none"):
            raise RewardError(
                f"the reward model's chat_template must be 'auto' or 'none', got {chat_template!r}"
            )
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
        self.chat = ChatFormat(self.tokenizer, chat_template)

    def format(self, prompt: PromptInput, response: str) -> str:
        """The text the reward model scores for ``response`` to ``prompt`` (see the class docstring)."""
        if self.chat.template is None:
            if not isinstance(prompt, str):
                raise RewardError("a message-list prompt needs a reward model with a chat template")
            return prompt + response
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        return self.chat.conversation([*messages, {"role": "assistant", "content": response}], "reward model")

    @torch.no_grad()
    def score_texts(self, texts: list[str]) -> list[float]:
        """The reward logit of each full text (templated texts are tokenized without added special tokens)."""
        scores: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                texts[start : start + self.batch_size],
                add_special_tokens=self.chat.template is None,
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
        flat = self.score_texts(
            [self.format(p, r) for p, cands in zip(prompts, responses, strict=True) for r in cands]
        )
        out, start = [], 0
        for cands in responses:
            out.append(flat[start : start + len(cands)])
            start += len(cands)
        return out
