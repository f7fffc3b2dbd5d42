"""Property tests (hypothesis) over every registered objective."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from larpo.losses import OBJECTIVES, pairwise_loss

ALL = sorted(OBJECTIVES)
RANKING = sorted(n for n, e in OBJECTIVES.items() if e.kind == "ranking")

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def lists(draw, max_batch=3, max_size=6):
    """Random candidate lists: values, lengths, descending scores with ties, and row counts."""
    batch = draw(st.integers(1, max_batch))
    size = draw(st.integers(2, max_size))
    values = st.lists(finite, min_size=batch * size, max_size=batch * size)
    policy = torch.tensor(draw(values)).view(batch, size)
    reference = torch.tensor(draw(values)).view(batch, size)
    lengths = torch.tensor(draw(st.lists(st.integers(1, 50), min_size=batch * size, max_size=batch * size)))
    raw_scores = draw(st.lists(st.integers(0, 3), min_size=batch * size, max_size=batch * size))
    scores = (
        torch.tensor(raw_scores, dtype=torch.float32).view(batch, size).sort(dim=1, descending=True).values
    )
    counts = torch.tensor(draw(st.lists(st.integers(2, size), min_size=batch, max_size=batch)))
    mask = torch.arange(size).unsqueeze(0) < counts.unsqueeze(1)
    beta = draw(st.sampled_from([0.01, 0.1, 1.0]))
    return policy, reference, lengths.float().view(batch, size), scores, mask, beta


def call(name, policy, reference, beta, mask, **options):
    return OBJECTIVES[name](policy, reference, beta, mask, **options)


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=60, deadline=None)
@given(data=lists(), use_scores=st.booleans())
def test_finite_loss_and_gradient_for_any_finite_input(name, data, use_scores):
    policy, reference, lengths, scores, mask, beta = data
    policy = policy.clone().requires_grad_()
    extra = {"scores": scores} if use_scores else {}
    loss = call(name, policy, reference, beta, mask, lengths=lengths, nll_weight=0.1, **extra)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(policy.grad).all()
    assert (policy.grad[~mask] == 0).all()


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=40, deadline=None)
@given(data=lists(), garbage=st.one_of(finite, st.just(float("nan")), st.just(float("inf"))))
def test_padded_values_never_matter(name, data, garbage):
    policy, reference, lengths, scores, mask, beta = data
    clean = call(name, policy, reference, beta, mask, lengths=lengths, scores=scores)
    dirty = call(
        name, torch.where(mask, policy, garbage), torch.where(mask, reference, garbage), beta, mask,
        lengths=torch.where(mask, lengths, garbage), scores=torch.where(mask, scores, garbage),
    )  # fmt: skip
    assert torch.equal(clean, dirty) or torch.allclose(clean, dirty, rtol=0, atol=0)


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=40, deadline=None)
@given(data=lists(max_batch=1), seed=st.integers(0, 1000))
def test_order_of_tied_candidates_does_not_matter(name, data, seed):
    policy, reference, lengths, scores, mask, beta = data
    size = int(mask.sum())
    policy, reference, scores = policy[:, :size], reference[:, :size], scores[:, :size]
    # shuffle within each group of tied scores (the list stays sorted best-first)
    gen = torch.Generator().manual_seed(seed)
    order = torch.arange(size)
    for value in scores[0].unique():
        group = (scores[0] == value).nonzero().flatten()
        order[group] = group[torch.randperm(len(group), generator=gen)]
    lengths = lengths[:, :size]
    original = call(name, policy, reference, beta, None, scores=scores, lengths=lengths)
    shuffled = call(
        name,
        policy[:, order],
        reference[:, order],
        beta,
        None,
        scores=scores[:, order],
        lengths=lengths[:, order],
    )
    torch.testing.assert_close(original, shuffled, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", RANKING)
@settings(max_examples=60, deadline=None)
@given(data=lists(max_size=2))
def test_two_candidates_equal_dpo(name, data):
    policy, reference, _, _, _, beta = data
    policy, reference = policy.double(), reference.double()  # float32 rounding of |g| ~ 500 differs by path
    torch.testing.assert_close(
        call(name, policy, reference, beta, None), pairwise_loss(policy, reference, beta)
    )


@pytest.mark.parametrize("name", RANKING)
@settings(max_examples=60, deadline=None)
@given(data=lists(), step=st.floats(0.01, 10.0))
def test_moving_toward_the_reranker_order_lowers_the_loss(name, data, step):
    """Adding a reward that strictly decreases along each list never raises the loss (and lowers it
    unless the loss is already saturated at float precision)."""
    policy, reference, _, _, mask, beta = data
    policy, reference = policy / 1e4, reference / 1e4  # keep the loss away from float saturation
    size = policy.shape[1]
    toward = step * torch.linspace(1.0, -1.0, size).unsqueeze(0) / beta
    before = call(name, policy, reference, beta, mask)
    after = call(name, policy + toward, reference, beta, mask)
    assert after <= before + 1e-6
    if before > 1e-3:
        assert after < before
