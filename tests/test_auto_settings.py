"""``shared_prefix: auto`` and ``logprob_chunk_size: auto``: the decisions at and around each measured
crossover (larpo.auto_settings), their parsing, and what the trainer resolves them to."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from transformers import HfArgumentParser

from larpo.auto_settings import (
    LogprobSettings,
    choose_chunk_size,
    choose_shared_prefix,
    chunk_positions,
    chunk_size_setting,
    model_bytes,
    shared_prefix_saving,
    shared_prefix_setting,
)
from larpo.errors import InputError
from larpo.logprobs import auto_chunk_size
from larpo.tiny import tiny_llama
from larpo.trainer import ListwiseConfig, ListwiseTrainer
from larpo.trainer.trainer import resolve_logprob_settings
from tests.helpers import arithmetic_lists, tiny_model_and_tokenizer

H200_STATE = 167_003_136 * 16  # the H200 benchmark's Llama 1024 x 8: fp32 weights, gradients, AdamW moments


def test_shared_prefix_saving_is_the_prompt_share_of_all_but_one_candidate():
    assert shared_prefix_saving(2, 16, 64) == pytest.approx(16 / 160)  # one of two prompts of 80 tokens
    assert shared_prefix_saving(8, 128, 256) == pytest.approx(7 * 128 / (8 * 384))
    assert shared_prefix_saving(1, 500, 10) == 0.0  # one candidate: nothing to share
    assert shared_prefix_saving(4, 0, 0) == 0.0


@pytest.mark.parametrize(
    ("m", "prompt", "response", "on"),
    [
        (2, 16, 64, True),  # measured: saves 0.100, 1.07x (the smallest measured win)
        (2, 15, 64, False),  # saves 0.095: below it
        (8, 512, 64, True),  # measured: 5.47x
        (2, 128, 256, True),  # the H200's losing workload wins on a CPU
        (1, 512, 64, False),  # nothing shared
    ],
)
def test_shared_prefix_on_a_cpu_where_it_saves_a_tenth_of_the_tokens(m, prompt, response, on):
    assert choose_shared_prefix("cpu", m, prompt, response) is on


@pytest.mark.parametrize("device", ["cuda", "mps"])
@pytest.mark.parametrize(
    ("m", "prompt", "response", "on"),
    [
        (2, 128, 256, False),  # measured: 0.58x a step, 0.57x TRL's tokens/s
        (8, 128, 256, True),  # measured: the tie (saves 0.292) with 15% less peak memory
        (7, 128, 256, False),  # one candidate short of the measured m
        (8, 128, 320, False),  # m = 8 but saves 0.25: less than at the tie
        (2, 4096, 16, False),  # saves 0.498 at m = 2: the launch-bound loss was not measured away
        (16, 64, 64, True),
    ],
)
def test_shared_prefix_on_a_gpu_only_at_the_measured_tie_or_beyond(device, m, prompt, response, on):
    assert choose_shared_prefix(device, m, prompt, response) is on


@pytest.mark.parametrize(
    ("vocab", "positions"),
    [(32_000, 4096), (32_004, 3840), (49_152, 2560), (151_936, 768), (10_000_000, 256), (16, 8_192_000)],
)
def test_chunks_hold_the_measured_chunks_logits(vocab, positions):
    """4,096 positions x 32,000 fp32 logits per chunk, rounded down to a multiple of 256 (at least 256)."""
    assert chunk_positions(vocab) == positions


@pytest.mark.parametrize(
    ("positions", "state", "chunk"),
    [
        (4096, H200_STATE, 0),  # measured at m = 2: one chunk, nothing saved
        (8191, 10**6, 0),  # just under two chunks, however small the model
        (8192, 10**6, 4096),  # two chunks
        (8192, H200_STATE, 0),  # two chunks, but logits 0.39 x the model's bytes
        (16_384, H200_STATE, 4096),  # measured at m = 8: logits 0.78 x, 27% less peak memory
        (32_768, H200_STATE, 4096),  # measured at m = 16: 32% less
        (16_384, 4 * 16_384 * 32_000 * 4, 0),  # a model four times the logits: too small a share
        (16_384, 2 * 16_384 * 32_000 * 4, 4096),  # exactly half
    ],
)
def test_chunking_only_where_it_splits_the_logits_and_they_weigh(positions, state, chunk):
    assert choose_chunk_size(positions, 32_000, state) == chunk


def test_settings_parse_their_spellings():
    assert [shared_prefix_setting(v) for v in (True, False, "auto", "true", "False")] == [
        True, False, "auto", True, False,
    ]  # fmt: skip
    assert [chunk_size_setting(v) for v in ("auto", 0, 4096, "512")] == ["auto", 0, 4096, 512]


@pytest.mark.parametrize("value", ["maybe", 1, None, "on"])
def test_shared_prefix_rejects_other_values(value):
    with pytest.raises(InputError, match=f"'shared_prefix' must be true, false or auto, got {value!r}"):
        shared_prefix_setting(value)


@pytest.mark.parametrize("value", [-1, True, 1.5, "big", "-3", None])
def test_chunk_size_rejects_other_values(value):
    with pytest.raises(InputError, match="'logprob_chunk_size' must be auto or an integer >= 0"):
        chunk_size_setting(value)


def test_model_bytes_count_training_state_of_trainable_parameters_only():
    layer = nn.Linear(3, 2)  # 6 weights + 2 biases, fp32
    assert model_bytes(layer, training=False) == 8 * 4
    assert model_bytes(layer, training=True) == 8 * 16
    layer.bias.requires_grad_(False)
    assert model_bytes(layer, training=True) == 6 * 16 + 2 * 4
    assert model_bytes(layer.to(torch.bfloat16), training=False) == 8 * 2


def test_config_defaults_to_auto_and_parses_flags(tmp_path):
    args = ListwiseConfig(output_dir=str(tmp_path), report_to="none")
    assert (args.shared_prefix, args.logprob_chunk_size) == ("auto", "auto")
    (parsed,) = HfArgumentParser(ListwiseConfig).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--shared_prefix", "false", "--logprob_chunk_size", "64"]
    )
    assert (parsed.shared_prefix, parsed.logprob_chunk_size) == (False, 64)


def _args(device: str, **settings):
    defaults = {"shared_prefix": "auto", "logprob_chunk_size": "auto", "max_length": None}
    return SimpleNamespace(
        device=torch.device(device), per_device_train_batch_size=4, **{**defaults, **settings}
    )


def test_the_trainer_decides_from_its_lists_and_device(tmp_path):
    """Arithmetic lists (prompts `a+b=` of 6 characters, answers of 2 digits and an end token): on a CPU the
    shared prefix saves enough at m = 2; on a GPU not below m = 8. A tiny vocabulary needs no chunks."""
    model, tokenizer = tiny_model_and_tokenizer()
    pairs = ListwiseTrainer.as_dataset(arithmetic_lists(tokenizer, 6, 2))
    eights = ListwiseTrainer.as_dataset(arithmetic_lists(tokenizer, 6, 8))
    assert resolve_logprob_settings(model, _args("cpu"), pairs) == LogprobSettings(True, 0)
    assert resolve_logprob_settings(model, _args("cuda"), pairs) == LogprobSettings(False, 0)
    assert resolve_logprob_settings(model, _args("cuda"), eights).shared_prefix is True
    explicit = _args("cuda", shared_prefix=True, logprob_chunk_size=5)
    assert resolve_logprob_settings(model, explicit, pairs) == LogprobSettings(True, 5)
    trainer = ListwiseTrainer(model, ListwiseConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True),
                              pairs, processing_class=tokenizer)  # fmt: skip
    assert trainer.logprob_settings == LogprobSettings(True, 0)


def test_auto_chunks_a_large_vocabulary_unless_the_logits_are_more_than_the_head_of_the_hidden_state():
    model = tiny_llama(32_000, hidden_size=8, num_layers=1, num_heads=2, seed=0)  # ~0.26M parameters
    assert auto_chunk_size(model, 8192, training=True) == 4096
    assert auto_chunk_size(model, 8191, training=True) == 0  # under two chunks

    def scale(_module, _inputs, output):  # as Cohere's logit_scale
        output.logits = 2.0 * output.logits
        return output

    model.register_forward_hook(scale)  # chunks would score unscaled logits: auto stays unchunked
    assert auto_chunk_size(model, 8192, training=True) == 0
