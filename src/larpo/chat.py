"""Conversational prompts and chat templates: the exact text a chat model sees, and where its turn ends.

A prompt is a string or a list of ``{"role", "content"}`` messages (TRL's conversational format). The
``chat_template`` setting decides how it becomes text:

- ``auto`` (default): the policy tokenizer's own template when it has one, else the text as it is;
- ``none``: the text as it is (message lists are then an error);
- a path to a Jinja file: that template.

A templated prompt ends with the generation prompt (the opening of the assistant's turn), and a string
that already starts with the template's opening markers is taken as rendered, not wrapped twice.
Tokenizers without a template (the tiny character-level models) see their prompts unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from larpo.errors import InputError, first_line

ROLES = ("system", "user", "assistant", "tool")
AUTO, NONE = "auto", "none"
_SENTINEL = "\x02larpo-content\x03"

PromptInput = str | list[dict[str, str]]


def check_prompt(prompt: Any, where: str = "prompt") -> PromptInput:
    """``prompt`` itself when it is a non-empty string or a valid message list.

    Raises:
        InputError: not a string or list, an empty string or list, a message that is not a
            ``{"role", "content"}`` object, an unknown role or non-string content.
    """
    if isinstance(prompt, str):
        if not prompt.strip():
            raise InputError(f"{where}: empty prompt")
        return prompt
    if not isinstance(prompt, list):
        raise InputError(
            f"{where}: 'prompt' must be a string, got {type(prompt).__name__} "
            "(or a list of {'role', 'content'} messages)"
        )
    if not prompt:
        raise InputError(f"{where}: empty message list")
    for number, message in enumerate(prompt, start=1):
        if not isinstance(message, dict) or "role" not in message:
            raise InputError(f"{where}: message {number} must be an object with 'role' and 'content'")
        if message["role"] not in ROLES:
            raise InputError(
                f"{where}: message {number} has unknown role {message['role']!r} (valid: {', '.join(ROLES)})"
            )
        if not isinstance(message.get("content"), str):
            raise InputError(f"{where}: message {number} 'content' must be a string")
    return prompt


def prompt_key(prompt: PromptInput) -> str:
    """A one-line label of a prompt for logs and errors (the text, or the last message's content)."""
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]


def check_template_setting(setting: Any) -> str:
    """``setting`` itself when it is ``auto``, ``none`` or the path of an existing file (checked before any
    model loads).

    Raises:
        InputError: anything else.
    """
    if not isinstance(setting, str):
        raise InputError(f"chat_template must be 'auto', 'none' or a path to a Jinja file, got {setting!r}")
    if setting not in (AUTO, NONE) and not Path(setting).is_file():
        raise InputError(f"chat_template: {setting!r} is not 'auto', 'none' or an existing Jinja file")
    return setting


def resolve_template(tokenizer: Any, setting: str = AUTO) -> str | None:
    """The Jinja template ``setting`` selects for ``tokenizer``, or None for plain text.

    Raises:
        InputError: ``setting`` is neither ``auto``, ``none`` nor a readable file.
    """
    check_template_setting(setting)
    if setting == AUTO:
        template = getattr(tokenizer, "chat_template", None)
        return template if isinstance(template, str) and template.strip() else None
    if setting == NONE:
        return None
    path = Path(setting)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"chat_template: cannot read {path} ({error})") from None


class ChatFormat:
    """How prompts and responses of one tokenizer are framed under one ``chat_template`` setting.

    Args:
        tokenizer: the policy's tokenizer.
        setting: ``auto``, ``none`` or a path to a Jinja file (see the module docstring).
    """

    def __init__(self, tokenizer: Any, setting: str = AUTO) -> None:
        self.tokenizer = tokenizer
        self.setting = setting
        self.template = resolve_template(tokenizer, setting)

    def render(self, prompt: PromptInput, where: str = "prompt") -> str:
        """The exact text the model sees for ``prompt``, ending with the generation prompt when templated.

        Raises:
            InputError: an invalid prompt, a message list without a template, or a template that fails.
        """
        prompt = check_prompt(prompt, where)
        if self.template is None:
            if isinstance(prompt, list):
                raise InputError(
                    f"{where}: a message-list prompt needs a chat template, but chat_template is "
                    f"{self.setting!r} and {'the tokenizer has none' if self.setting == AUTO else 'disables it'}"
                )
            return prompt
        if isinstance(prompt, str):
            if self.opening and prompt.startswith(self.opening):
                return prompt
            prompt = [{"role": "user", "content": prompt}]
        return self._apply(prompt, where, generation_prompt=True)

    @cached_property
    def opening(self) -> str:
        """The special token a rendered conversation starts with ('' when none): a string prompt that
        starts with it is already rendered."""
        rendered = self._apply(
            [{"role": "user", "content": _SENTINEL}], "chat_template", generation_prompt=False
        )
        return _leading_special_token(self.tokenizer, rendered.split(_SENTINEL)[0])

    @cached_property
    def end_token_id(self) -> int | None:
        """The token ending a response: the one the template closes an assistant turn with (e.g.
        ``<|im_end|>`` for ChatML), else the tokenizer's EOS (no template, or a template that ends the
        turn with plain text)."""
        if self.template is None:
            return self.tokenizer.eos_token_id
        conversation = [{"role": "user", "content": "?"}, {"role": "assistant", "content": _SENTINEL}]
        rendered = self._apply(conversation, "chat_template", generation_prompt=False)
        after = rendered.split(_SENTINEL, 1)[1] if _SENTINEL in rendered else ""
        token = _leading_special_token(self.tokenizer, after.lstrip(" "))
        if not token:
            return self.tokenizer.eos_token_id
        return self.tokenizer.convert_tokens_to_ids(token)

    def stop_token_ids(self, model: Any = None) -> list[int]:
        """Every id that ends a sample: ``model.generation_config.eos_token_id`` (an int or a list), the
        tokenizer's EOS and :attr:`end_token_id`, without repeats, in that order."""
        ids: list[int] = []
        config = getattr(model, "generation_config", None)
        configured = getattr(config, "eos_token_id", None)
        candidates = configured if isinstance(configured, list | tuple) else [configured]
        for token_id in [*candidates, self.tokenizer.eos_token_id, self.end_token_id]:
            if isinstance(token_id, int) and token_id not in ids:
                ids.append(token_id)
        return ids

    def conversation(self, messages: list[dict[str, str]], where: str = "conversation") -> str:
        """A whole conversation (e.g. prompt and response, for a reward model) in the template, without a
        generation prompt.

        Raises:
            InputError: no template applies, a message is invalid or the template fails.
        """
        check_prompt(messages, where)
        if self.template is None:
            raise InputError(f"{where}: no chat template applies (chat_template is {self.setting!r})")
        return self._apply(messages, where, generation_prompt=False)

    def _apply(self, messages: list[dict[str, str]], where: str, *, generation_prompt: bool) -> str:
        try:
            text = self.tokenizer.apply_chat_template(
                messages, chat_template=self.template, add_generation_prompt=generation_prompt, tokenize=False
            )
        except Exception as error:  # jinja2 errors, raise_exception() in templates, bad message shapes
            raise InputError(f"{where}: the chat template failed to render ({first_line(error)})") from None
        if not isinstance(text, str):
            raise InputError(f"{where}: the chat template rendered {type(text).__name__}, not text")
        return text


def _leading_special_token(tokenizer: Any, text: str) -> str:
    """The longest special or added token ``text`` starts with, '' when none."""
    specials = set(getattr(tokenizer, "all_special_tokens", []))
    specials |= {str(token) for token in getattr(tokenizer, "added_tokens_decoder", {}).values()}
    matches = [token for token in specials if token and text.startswith(token)]
    return max(matches, key=len, default="")


def render_prompts(tokenizer: Any, prompts: Sequence[PromptInput], setting: str = AUTO) -> list[str]:
    """:meth:`ChatFormat.render` of each prompt under one setting."""
    chat = ChatFormat(tokenizer, setting)
    return [chat.render(prompt, f"prompt {i}") for i, prompt in enumerate(prompts)]


def stop_token_ids(model: Any, tokenizer: Any, setting: str = AUTO) -> list[int]:
    """:meth:`ChatFormat.stop_token_ids` of ``model`` and ``tokenizer`` under ``setting``."""
    return ChatFormat(tokenizer, setting).stop_token_ids(model)
