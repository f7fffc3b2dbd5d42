"""Sequence log-probabilities of candidate lists under a causal LM.

The retriever score of the paper (Section 2): ``log p(y | x) = sum_t log p(y_t | x, y_<t)``, computed
for all ``N`` candidates of a batch in one forward pass, with prompt and padding tokens masked out.
"""

from __future__ import annotations

import functools
import inspect

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from larpo.auto_settings import choose_chunk_size, model_bytes
from larpo.errors import InputError


def sequence_logps(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    response_mask: Tensor,
    chunk_size: int = 0,
) -> tuple[Tensor, Tensor]:
    """Summed log-probs of the response tokens of each sequence.

    Logits are only computed from the position before the batch's earliest response token on (via the
    model's ``logits_to_keep`` where it has one): prompt positions would cost LM-head compute and
    ``[N, T, V]`` memory and are never scored.

    Args:
        model: a causal LM returning ``.logits`` of shape ``[N, T, V]``.
        input_ids, attention_mask: ``[N, T]`` right-padded prompt+response sequences.
        response_mask: ``[N, T]`` bool, True on response tokens.
        chunk_size: if > 0, the LM head and log-softmax run on this many token positions at a time and
            are recomputed in backward (:func:`chunked_token_logps`), so ``[N, T, V]`` logits are never
            held; 0 computes them at once.

    Returns:
        ``([N] summed log-probs, [N] response token counts)``.
    """
    scored = response_mask[:, 1:].bool()  # (N, T-1): position t predicts token t+1
    first = _first_scored_position(model, scored)
    keep = input_ids.shape[1] - first  # positions first..T-1; the last one predicts nothing
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
    token_logps = _forward_token_logps(
        model, inputs, keep, input_ids[:, first + 1 :], chunk_size, takes_logits_to_keep(model)
    )  # (N, T-1-first)
    scored = scored[:, first:]
    token_logps = torch.where(scored, token_logps, token_logps.new_zeros(()))
    return token_logps.sum(dim=-1), scored.sum(dim=-1).to(token_logps.dtype)


def _forward_token_logps(
    model: nn.Module, inputs: dict, keep: int, targets: Tensor, chunk_size: int, takes_keep: bool
) -> Tensor:
    """Run ``model(**inputs)`` and return the log-probs ``[N, keep-1]`` of ``targets`` ``[N, keep-1]``,
    predicted at its last ``keep`` positions but the final one."""
    if chunk_size > 0 and takes_keep:
        out = model(**inputs, logits_to_keep=1, output_hidden_states=True)
        hidden = out.hidden_states[-1][:, -keep:]  # (N, keep, H) after the final norm
        head = _unwrap(model).get_output_embeddings()
        _check_logits_are_head_of_hidden(head, hidden[:, -1:], out.logits)
        return chunked_token_logps(head, hidden[:, :-1], targets, chunk_size)
    out = model(**inputs, **({"logits_to_keep": keep} if takes_keep else {}))
    return token_logps_of(out.logits[:, -keep:-1], targets)


def token_logps_of(logits: Tensor, targets: Tensor) -> Tensor:
    """``log softmax(logits)`` at ``targets``: ``[..., V]`` logits, ``[...]`` ids -> ``[...]`` float32."""
    logits = logits.float()
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(dim=-1)


def chunked_token_logps(head: nn.Module, hidden: Tensor, targets: Tensor, chunk_size: int) -> Tensor:
    """:func:`token_logps_of` ``(head(hidden), targets)`` for ``chunk_size`` positions at a time.

    Each chunk's logits are recomputed in backward (activation checkpointing), so at most
    ``chunk_size x V`` logits exist at once instead of ``N x T x V``, for one extra LM-head matmul.

    Args:
        head: the LM head, ``[..., H] -> [..., V]``.
        hidden: ``[N, T, H]`` final hidden states; targets: ``[N, T]`` next-token ids.
    """
    flat_hidden, flat_targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    score = functools.partial(_head_token_logps, head)
    pieces = [
        checkpoint(score, h, t, use_reentrant=False) if torch.is_grad_enabled() else score(h, t)
        for h, t in zip(flat_hidden.split(chunk_size), flat_targets.split(chunk_size), strict=True)
    ]
    return torch.cat(pieces).reshape(targets.shape)


def _head_token_logps(head: nn.Module, hidden: Tensor, targets: Tensor) -> Tensor:
    return token_logps_of(head(hidden), targets)


@torch.no_grad()
def _check_logits_are_head_of_hidden(head: nn.Module, last_hidden: Tensor, last_logits: Tensor) -> None:
    """Chunked scoring applies ``head`` to the final hidden state itself; refuse models whose logits are
    more than that (soft-capped or scaled logits, e.g. Gemma 2, Cohere, Granite): an InputError, which
    ``larpo run`` reports as one line with exit code 2 (the run resumes with ``logprob_chunk_size: 0``)."""
    if not _logits_are_head_of_hidden(head, last_hidden, last_logits):
        raise InputError(
            "logprob_chunk_size needs logits = lm_head(last hidden state), and this model transforms them "
            "further (e.g. soft-capping or scaling); set logprob_chunk_size to 0"
        )


def _logits_are_head_of_hidden(head: nn.Module, last_hidden: Tensor, last_logits: Tensor) -> bool:
    return torch.allclose(head(last_hidden).float(), last_logits.float(), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def chunking_applies(model: nn.Module) -> bool:
    """Whether ``logprob_chunk_size`` > 0 scores ``model`` by chunks: it takes ``logits_to_keep`` and its
    logits are its LM head applied to the final hidden state (checked on 8 tokens in eval mode)."""
    head = _unwrap(model).get_output_embeddings()
    if head is None or not takes_logits_to_keep(model):
        return False
    was_training = model.training
    tokens = torch.arange(min(8, head.weight.shape[0]), device=head.weight.device).unsqueeze(0)  # (1, 8)
    model.eval()  # no dropout: it would draw from the random generator
    out = model(input_ids=tokens, use_cache=False, logits_to_keep=1, output_hidden_states=True)
    model.train(was_training)
    return _logits_are_head_of_hidden(head, out.hidden_states[-1][:, -1:], out.logits)


def auto_chunk_size(model: nn.Module, positions: int, training: bool) -> int:
    """``logprob_chunk_size: auto`` for batches of ``positions`` LM-head positions
    (:func:`larpo.auto_settings.choose_chunk_size`; ``training``: the model's gradients and optimizer
    moments count in its memory), 0 where chunking does not apply to ``model``."""
    head = _unwrap(model).get_output_embeddings()
    if head is None:
        return 0
    chunk = choose_chunk_size(positions, head.weight.shape[0], model_bytes(model, training))
    return chunk if chunk and chunking_applies(model) else 0


def _first_scored_position(model: nn.Module, scored: Tensor) -> int:
    """First column of ``scored`` with a scored token when ``model`` takes ``logits_to_keep``, else 0."""
    if not takes_logits_to_keep(model):
        return 0
    columns = scored.any(dim=0).nonzero()
    return int(columns[0]) if len(columns) else 0


def shared_prefix_logps(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    response_mask: Tensor,
    rows: Tensor,
    chunk_size: int = 0,
) -> tuple[Tensor, Tensor] | None:
    """:func:`sequence_logps` with each list's prompt run through the model once, not once per candidate.

    The prompt minus its last token (the *prefix*) of each of the ``B`` lists is encoded once; its
    key/value cache is indexed out to the ``N`` candidates, which then run only ``last prompt token +
    response``. Attention and positions are those of the full sequence, so the log-probs equal
    :func:`sequence_logps`'s up to float rounding, at ``B*P + N*S`` token positions instead of
    ``N*(P+S)``: a listwise batch of m candidates spends its prompt compute once instead of m times.

    Args:
        input_ids, attention_mask, response_mask: ``[N, T]`` as for :func:`sequence_logps`.
        rows: ``[N]`` list index (``0..B-1``) of each sequence, non-decreasing; a list's sequences
            share their prompt.
        chunk_size: as for :func:`sequence_logps`.

    Returns:
        ``([N] summed log-probs, [N] response token counts)``, or ``None`` where the model cannot take
        the shortcut (no ``logits_to_keep`` or KV cache, gradient checkpointing, a one-token prompt):
        then use :func:`sequence_logps`.
    """
    inner = _unwrap(model)
    checkpointing = getattr(inner, "is_activation_checkpointing", None)  # transformers >= 5.24
    if checkpointing is None:
        checkpointing = getattr(inner, "is_gradient_checkpointing", False)
    if checkpointing or not takes_logits_to_keep(model):
        return None
    if not bool(response_mask.any(dim=1).all()):
        return None  # an empty response has no suffix to run
    starts = response_mask.int().argmax(dim=1)  # (N,) first response column = prompt length
    ends = attention_mask.sum(dim=1)  # (N,) real tokens per sequence (right padding)
    first = torch.zeros_like(rows, dtype=torch.bool)
    first[0], first[1:] = True, rows[1:] != rows[:-1]
    prefix_lengths = starts[first] - 1  # (B,)
    if len(prefix_lengths) == len(rows) or int(prefix_lengths.min()) < 1:
        return None  # nothing shared, or a list without a prefix token to cache
    width = int(prefix_lengths.max())
    prefix_ids = input_ids[first, :width]  # (B, P)
    prefix_mask = (torch.arange(width, device=rows.device) < prefix_lengths.unsqueeze(1)).long()
    cache_name = _cache_argument(inner)
    out = model(input_ids=prefix_ids, attention_mask=prefix_mask, use_cache=True, logits_to_keep=1)
    cache = getattr(out, cache_name, None)
    if cache is None or not hasattr(cache, "batch_select_indices"):
        return None
    _expand_cache_to_candidates(cache, rows)  # (B, ...) -> (N, ...): each candidate sees its list's prefix

    suffix_lengths = ends - starts + 1  # last prompt token + response
    offsets = torch.arange(int(suffix_lengths.max()), device=rows.device)  # (S,)
    suffix_mask = offsets < suffix_lengths.unsqueeze(1)  # (N, S)
    # (N, S) column of each suffix token in input_ids; padded slots are clamped inside the sequence so
    # that their (masked, unused) positions stay within what the model was built for
    columns = ((starts - 1).unsqueeze(1) + offsets).clamp_max(input_ids.shape[1] - 1)
    suffix_ids = input_ids.gather(1, columns)
    inputs = {
        "input_ids": suffix_ids,
        "attention_mask": torch.cat([prefix_mask[rows], suffix_mask.long()], dim=1),
        "position_ids": columns,
        "use_cache": True,
        cache_name: cache,
    }
    # suffix position j predicts suffix token j+1
    token_logps = _forward_token_logps(
        model, inputs, suffix_ids.shape[1], suffix_ids[:, 1:], chunk_size, True
    )
    scored = suffix_mask[:, 1:]
    token_logps = torch.where(scored, token_logps, token_logps.new_zeros(()))
    return token_logps.sum(dim=-1), scored.sum(dim=-1).to(token_logps.dtype)


def _expand_cache_to_candidates(cache, rows: Tensor) -> None:
    """Replace each cache layer's ``[B, ...]`` keys and values by ``[N, ...]`` ones, row ``rows[i]`` for
    candidate i, in place.

    Deterministic where ``cache.batch_select_indices(rows)`` is not: advanced indexing with repeated rows
    scatter-adds its gradient, whose order varies between runs on a multi-threaded CPU (and on CUDA), so
    two trainings on the same lists drifted apart at 1e-7 and then by a point of accuracy. Here the
    gradient of a list's prefix is a sum over an expanded axis, in a fixed order. Layers that keep other
    per-row state (their own ``batch_select_indices``) and caches without ``layers`` use the library's.
    """
    try:
        from transformers.cache_utils import DynamicLayer
    except ImportError:  # transformers without cache layers
        DynamicLayer = None  # noqa: N806
    layers = getattr(cache, "layers", None)
    if DynamicLayer is None or layers is None:
        cache.batch_select_indices(rows)
        return
    positions = torch.arange(len(rows), device=rows.device) - torch.searchsorted(rows, rows)  # (N,) j in list
    width = int(positions.max()) + 1  # M, the longest list
    flat = rows * width + positions  # (N,) distinct slots of the [B * M] expansion
    for layer in layers:
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        plain = type(layer).batch_select_indices is DynamicLayer.batch_select_indices
        if not plain or not isinstance(keys, Tensor) or not isinstance(values, Tensor) or keys.numel() == 0:
            layer.batch_select_indices(rows)
        else:
            layer.keys, layer.values = _repeat_rows(keys, width, flat), _repeat_rows(values, width, flat)


def _repeat_rows(tensor: Tensor, width: int, flat: Tensor) -> Tensor:
    """``[B, ...]`` -> ``[N, ...]``: slot ``flat[i]`` of ``tensor`` expanded to ``[B * width, ...]``."""
    expanded = tensor.unsqueeze(1).expand(tensor.shape[0], width, *tensor.shape[1:])
    return expanded.reshape(-1, *tensor.shape[1:]).index_select(0, flat)


def _unwrap(model: nn.Module) -> nn.Module:
    """The Hugging Face model inside DDP/DeepSpeed wrappers and PEFT."""
    inner = model
    while hasattr(inner, "module"):  # DDP, DataParallel, DeepSpeed engines
        inner = inner.module
    if hasattr(inner, "get_base_model"):  # PEFT passes extra keyword arguments to the base model
        inner = inner.get_base_model()
    return inner


def _cache_argument(model: nn.Module) -> str:
    """The KV-cache keyword of ``model.forward`` and of its output: ``cache`` (transformers >= 5.24)
    or ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def takes_logits_to_keep(model: nn.Module) -> bool:
    """Whether the model's forward can compute the logits of its last positions only (``logits_to_keep``)."""
    return "logits_to_keep" in inspect.signature(_unwrap(model).forward).parameters


def list_logps(
    model: nn.Module, batch: dict[str, Tensor], shared_prefix: bool = False, chunk_size: int = 0
) -> tuple[Tensor, Tensor]:
    """Log-probs of a collated batch of lists (see :class:`larpo.data.ListCollator`).

    With ``shared_prefix``, each list's prompt is encoded once (:func:`shared_prefix_logps`) where the
    model allows it; ``chunk_size`` > 0 scores that many positions at a time (:func:`sequence_logps`).

    Returns:
        ``([B, m] summed log-probs, [B, m] response token counts)``, 0 in padded slots.
    """
    mask = batch["list_mask"].to(batch["input_ids"].device)
    args = (model, batch["input_ids"], batch["attention_mask"], batch["response_mask"])
    result = shared_prefix_logps(*args, mask.nonzero()[:, 0], chunk_size) if shared_prefix else None
    logps, lengths = result if result is not None else sequence_logps(*args, chunk_size)
    return (
        logps.new_zeros(mask.shape).masked_scatter(mask, logps),
        lengths.new_zeros(mask.shape).masked_scatter(mask, lengths),
    )
