"""Chat templates with the real SmolLM2 tokenizer: rendered prompts, end-of-turn and stop ids, prompt files."""

import json

import pytest

from larpo.chat import ChatFormat, render_prompts, stop_token_ids
from larpo.errors import InputError
from larpo.prompts import load_prompts, with_chat_template
from larpo.tiny import char_tokenizer
from tests.helpers import ALPHABET, smollm2_tokenizer, tiny_chat_llama

IM_START, IM_END, ENDOFTEXT = 1, 2, 0
SYSTEM = [{"role": "system", "content": "You add numbers."}]


@pytest.fixture(scope="module")
def tokenizer():
    return smollm2_tokenizer()


def expected(tokenizer, messages):
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


@pytest.mark.parametrize(
    "prompt",
    ["What is 41 + 93? Reply with the number only.", "  spaces and\nnewlines\n", "héllo 🙂"],
)
def test_string_prompt_renders_as_a_user_message_byte_identical(tokenizer, prompt):
    rendered = ChatFormat(tokenizer).render(prompt)
    assert rendered == expected(tokenizer, [{"role": "user", "content": prompt}])
    assert rendered.startswith("<|im_start|>system\n") and rendered.endswith("<|im_start|>assistant\n")


def test_message_list_renders_byte_identical(tokenizer):
    messages = [
        *SYSTEM,
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "and 3+3?"},
    ]
    assert ChatFormat(tokenizer).render(messages) == expected(tokenizer, messages)
    assert "You are a helpful AI assistant" not in ChatFormat(tokenizer).render(messages)  # own system prompt


def test_already_rendered_string_is_not_wrapped_twice(tokenizer):
    chat = ChatFormat(tokenizer)
    once = chat.render([*SYSTEM, {"role": "user", "content": "2+2?"}])
    assert chat.render(once) == once
    assert render_prompts(tokenizer, [once, "2+2?"]) == [once, chat.render("2+2?")]


def test_template_from_a_jinja_file(tokenizer, tmp_path):
    path = tmp_path / "plain.jinja"
    path.write_text(
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant] {% endif %}"
    )
    chat = ChatFormat(tokenizer, str(path))
    assert chat.render("hi") == "[user] hi\n[assistant] "
    assert chat.end_token_id == tokenizer.eos_token_id  # the turn ends with plain text: EOS it is


def test_none_keeps_strings_and_refuses_message_lists(tokenizer):
    chat = ChatFormat(tokenizer, "none")
    assert chat.render("What is 2+2?") == "What is 2+2?"
    with pytest.raises(InputError, match="message-list prompt needs a chat template"):
        chat.render([{"role": "user", "content": "hi"}])


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ([], "empty message list"),
        ([{"role": "robot", "content": "hi"}], "unknown role 'robot'"),
        ([{"role": "user", "content": 3}], "'content' must be a string"),
        ([{"content": "hi"}], "must be an object with 'role' and 'content'"),
        (["hi"], "must be an object with 'role' and 'content'"),
        (7, "'prompt' must be a string, got int"),
        ("   ", "empty prompt"),
    ],
)
def test_bad_prompts_are_input_errors(tokenizer, prompt, message):
    with pytest.raises(InputError, match=message):
        ChatFormat(tokenizer).render(prompt)


def test_a_failing_template_is_an_input_error(tokenizer, tmp_path):
    broken = tmp_path / "broken.jinja"
    broken.write_text("{{ raise_exception('system messages are not supported') }}")
    with pytest.raises(InputError, match="chat template failed to render.*system messages are not supported"):
        ChatFormat(tokenizer, str(broken)).render("hi")
    syntax = tmp_path / "syntax.jinja"
    syntax.write_text("{% for m in messages %}")
    with pytest.raises(InputError, match="chat template failed to render"):
        ChatFormat(tokenizer, str(syntax)).render("hi")
    with pytest.raises(InputError, match="not 'auto', 'none' or an existing Jinja file"):
        ChatFormat(tokenizer, str(tmp_path / "missing.jinja"))


def test_end_of_turn_is_im_end_even_when_eos_is_another_token(tokenizer):
    other = smollm2_tokenizer()
    other.eos_token = "<|endoftext|>"
    chat = ChatFormat(other)
    assert chat.end_token_id == IM_END
    model = tiny_chat_llama(other)
    model.generation_config.eos_token_id = [7, ENDOFTEXT]
    assert chat.stop_token_ids(model) == [7, ENDOFTEXT, IM_END]
    model.generation_config.eos_token_id = ENDOFTEXT
    assert stop_token_ids(model, other) == [ENDOFTEXT, IM_END]
    assert stop_token_ids(model, other, "none") == [ENDOFTEXT]


def test_tokenizer_without_template_is_unchanged():
    tokenizer = char_tokenizer(ALPHABET)
    chat = ChatFormat(tokenizer)
    assert chat.template is None
    assert chat.render("12+3=") == "12+3="
    assert chat.end_token_id == tokenizer.eos_token_id
    assert stop_token_ids(None, tokenizer) == [tokenizer.eos_token_id]
    with pytest.raises(InputError, match="the tokenizer has none"):
        chat.render([{"role": "user", "content": "12+3="}])


def test_prompt_file_with_strings_and_message_lists(tokenizer, tmp_path):
    messages = [*SYSTEM, {"role": "user", "content": "2+2?"}]
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        json.dumps({"prompt": "1+1?"}) + "\n" + json.dumps({"id": "m", "prompt": messages}) + "\n"
    )
    raw = load_prompts(path)
    assert [(p.prompt_id, p.text, p.original) for p in raw] == [("p1", "1+1?", "1+1?"), ("m", None, messages)]
    rendered = load_prompts(path, tokenizer)
    assert rendered == with_chat_template(raw, tokenizer)
    assert [p.text for p in rendered] == [
        expected(tokenizer, [{"role": "user", "content": "1+1?"}]),
        expected(tokenizer, messages),
    ]
    assert [p.original for p in rendered] == ["1+1?", messages]
    with pytest.raises(InputError, match="prompt 'm': a message-list prompt needs a chat template"):
        load_prompts(path, tokenizer, "none")


def test_prompt_file_with_a_bad_role_names_the_record(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        json.dumps({"prompt": "ok"}) + "\n" + json.dumps({"prompt": [{"role": "bot", "content": "x"}]})
    )
    with pytest.raises(InputError, match=r"prompts.jsonl: record 2: message 1 has unknown role 'bot'"):
        load_prompts(path)


def test_dataset_folder_with_message_lists(tokenizer, tmp_path):
    datasets = pytest.importorskip("datasets")
    messages = [{"role": "user", "content": "2+2?"}]
    datasets.Dataset.from_list(
        [{"prompt": messages}, {"prompt": messages[:0] + [{"role": "user", "content": "3"}]}]
    ).save_to_disk(str(tmp_path / "ds"))
    prompts = load_prompts(tmp_path / "ds", tokenizer)
    assert prompts[0].text == expected(tokenizer, messages)
    assert prompts[1].original == [{"role": "user", "content": "3"}]
